//! The report's pictures as SVG text, drawn with plotters: the learning curves (one panel each
//! for loss, accuracy and learning rate, per epoch) and a classifier's confusion matrix.
//!
//! Every curve is one `<polyline>` two pixels wide (axes and ticks are one pixel wide) and every
//! matrix cell one `<rect>`; legends mark series with small squares, so the pictures can be
//! checked by counting elements.

use std::collections::BTreeMap;

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

/// Why a picture could not be drawn (plotters' error, as text).
pub type PlotError = String;

fn plot_error<E: std::fmt::Display>(e: E) -> PlotError {
    e.to_string()
}

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const LR: RGBColor = RGBColor(44, 160, 44);
const PANEL_WIDTH: u32 = 440;
const PANEL_HEIGHT: u32 = 320;
const FONT: &str = "sans-serif";
/// Up to this many epochs, each epoch's value is also marked with a dot.
const MARKED_EPOCHS: usize = 40;

/// One curve of a panel.
struct Series<'a> {
    label: &'static str,
    color: RGBColor,
    values: &'a [f64],
}

/// One chart of the learning curves.
struct Panel<'a> {
    title: &'static str,
    legend: SeriesLabelPosition,
    series: Vec<Series<'a>>,
}

/// The panels the history has metrics for: loss (train and validation), accuracy (when the
/// task has one) and learning rate.
fn panels(history: &BTreeMap<String, Vec<f64>>) -> Vec<Panel<'_>> {
    let series = |specs: &[(&'static str, &str, RGBColor)]| -> Vec<Series<'_>> {
        specs
            .iter()
            .filter_map(|(label, key, color)| {
                let values = history.get(*key).filter(|v| v.iter().any(|x| x.is_finite()))?;
                Some(Series { label, color: *color, values })
            })
            .collect()
    };
    let all = [
        Panel {
            title: "loss",
            legend: SeriesLabelPosition::UpperRight,
            series: series(&[("train", "train_loss", TRAIN), ("validation", "val_loss", VAL)]),
        },
        Panel {
            title: "accuracy",
            legend: SeriesLabelPosition::LowerRight,
            series: series(&[("train", "train_accuracy", TRAIN), ("validation", "val_accuracy", VAL)]),
        },
        Panel {
            title: "learning rate",
            legend: SeriesLabelPosition::UpperRight,
            series: series(&[("learning rate", "lr", LR)]),
        },
    ];
    all.into_iter().filter(|p| !p.series.is_empty()).collect()
}

/// How many curves [`learning_curves`] draws for `history`.
pub fn curve_count(history: &BTreeMap<String, Vec<f64>>) -> usize {
    panels(history).iter().map(|p| p.series.len()).sum()
}

/// The learning curves of a run's per-epoch history, or `None` when it has no epoch yet.
pub fn learning_curves(history: &BTreeMap<String, Vec<f64>>) -> Result<Option<String>, PlotError> {
    let panels = panels(history);
    if panels.is_empty() {
        return Ok(None);
    }
    let mut svg = String::new();
    {
        let size = (PANEL_WIDTH * panels.len() as u32, PANEL_HEIGHT);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel<'_>) -> Result<(), PlotError> {
    let epochs = panel.series.iter().map(|s| s.values.len()).max().unwrap_or(1).max(1) as i32;
    let finite = || panel.series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite());
    let low = finite().fold(f64::INFINITY, f64::min);
    let high = finite().fold(f64::NEG_INFINITY, f64::max);
    let pad = if high > low { (high - low) * 0.08 } else { low.abs().max(1e-3) * 0.1 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1..epochs.max(2), (low - pad)..(high + pad))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .axis_desc_style((FONT, 17))
        .x_labels(epochs.clamp(2, 10) as usize)
        .y_labels(6)
        .y_label_formatter(&|v| axis_number(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FONT, 16))
        .draw()
        .map_err(plot_error)?;
    for series in &panel.series {
        let points: Vec<(i32, f64)> =
            series.values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, v)| (i as i32 + 1, *v)).collect();
        let color = series.color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(series.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        if points.len() <= MARKED_EPOCHS {
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 17))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// An axis tick: short, scientific for small rates.
fn axis_number(v: f64) -> String {
    let size = v.abs();
    if v == 0.0 || (1e-2..1e4).contains(&size) {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// The confusion matrix (`matrix[true][predicted]`) with its class names, or `None` for an
/// empty one. Each cell is shaded by its share of its row (the true class), so that small
/// classes read as well as large ones, and shows its count.
pub fn confusion_matrix(matrix: &[Vec<i64>], class_names: &[String]) -> Result<Option<String>, PlotError> {
    let n = matrix.len();
    if n == 0 {
        return Ok(None);
    }
    let names: Vec<String> = (0..n)
        .map(|i| {
            let name = class_names.get(i).filter(|_| class_names.len() == n).cloned().unwrap_or_else(|| i.to_string());
            shorten(&name, 18)
        })
        .collect();
    let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(1) as i32;
    let cell = (480 / n as i32).clamp(28, 72);
    let rotate = longest * 8 > cell;
    let left = 40 + longest * 8 + 10;
    let top = 44;
    let bottom = if rotate { longest * 7 + 44 } else { 64 };
    let (width, height) = (left + cell * n as i32 + 20, top + cell * n as i32 + bottom);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let text = |size: i32, h: HPos, v: VPos| (FONT, size).into_font().color(&BLACK).pos(Pos::new(h, v));
        let draw_text = |s: &str, at: (i32, i32), style: TextStyle<'_>| {
            root.draw(&Text::new(s.to_string(), at, style)).map_err(plot_error)
        };
        draw_text("confusion matrix (test)", (width / 2, 8), text(22, HPos::Center, VPos::Top))?;
        let grid_mid_y = top + cell * n as i32 / 2;
        let grid_mid_x = left + cell * n as i32 / 2;
        draw_text(
            "true class",
            (12, grid_mid_y),
            text(17, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
        )?;
        draw_text("predicted class", (grid_mid_x, height - 8), text(17, HPos::Center, VPos::Bottom))?;
        for (t, row) in matrix.iter().enumerate() {
            let total: i64 = row.iter().sum();
            let y = top + cell * t as i32;
            draw_text(&names[t], (left - 8, y + cell / 2), text(15, HPos::Right, VPos::Center))?;
            for p in 0..n {
                let count = row.get(p).copied().unwrap_or(0);
                let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
                let x = left + cell * p as i32;
                root.draw(&Rectangle::new([(x + 1, y + 1), (x + cell - 1, y + cell - 1)], shade(share).filled()))
                    .map_err(plot_error)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style =
                    (FONT, (cell / 3).clamp(12, 20)).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                draw_text(&count.to_string(), (x + cell / 2, y + cell / 2), style)?;
            }
        }
        let label_y = top + cell * n as i32 + 6;
        for (p, name) in names.iter().enumerate() {
            let x = left + cell * p as i32 + cell / 2;
            if rotate {
                let style = text(15, HPos::Left, VPos::Center).transform(FontTransform::Rotate90);
                draw_text(name, (x, label_y), style)?;
            } else {
                draw_text(name, (x, label_y), text(15, HPos::Center, VPos::Top))?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

/// From near white (0) to dark blue (1).
fn shade(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    RGBColor(mix(247, 8), mix(251, 48), mix(255, 107))
}

fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let mut short: String = name.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(svg: &str, tag: &str) -> usize {
        svg.matches(&format!("<{tag} ")).count()
    }

    fn curves(svg: &str) -> usize {
        svg.lines().filter(|l| l.starts_with("<polyline ") && l.contains("stroke-width=\"2\"")).count()
    }

    fn history(epochs: usize, with_accuracy: bool) -> BTreeMap<String, Vec<f64>> {
        let curve = |start: f64, step: f64| (0..epochs).map(|i| start + step * i as f64).collect::<Vec<_>>();
        let mut h = BTreeMap::from([
            ("train_loss".to_string(), curve(1.0, -0.1)),
            ("val_loss".to_string(), curve(1.1, -0.08)),
            ("lr".to_string(), vec![0.01; epochs]),
            ("epoch_seconds".to_string(), vec![0.5; epochs]),
        ]);
        if with_accuracy {
            h.insert("train_accuracy".into(), curve(0.5, 0.05));
            h.insert("val_accuracy".into(), curve(0.45, 0.05));
        }
        h
    }

    #[test]
    fn one_polyline_per_curve_and_a_panel_per_metric() {
        let h = history(8, true);
        let svg = learning_curves(&h).unwrap().unwrap();
        assert_eq!(curve_count(&h), 5);
        assert_eq!(curves(&svg), 5, "{svg}");
        assert_eq!(count(&svg, "circle"), 5 * 8);
        for title in ["loss", "accuracy", "learning rate", "validation", "epoch"] {
            assert!(svg.contains(&format!(">\n{title}\n</text>")), "{title}");
        }
        assert!(svg.starts_with("<svg width=\"1320\" height=\"320\""));
        assert!(svg.trim_end().ends_with("</svg>"));

        // Regression: no accuracy panel. One epoch still draws its points.
        let h = history(1, false);
        let svg = learning_curves(&h).unwrap().unwrap();
        assert_eq!(curves(&svg), 3);
        assert!(!svg.contains(">\naccuracy\n</text>"));
        assert!(learning_curves(&BTreeMap::new()).unwrap().is_none());

        // Values that are not finite (a diverged run) are left out, not drawn.
        let mut h = history(4, false);
        h.get_mut("train_loss").unwrap()[2] = f64::NAN;
        let svg = learning_curves(&h).unwrap().unwrap();
        assert_eq!(curves(&svg), 3);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn a_cell_per_class_pair_with_its_count() {
        let matrix = vec![vec![10, 2, 0], vec![1, 7, 3], vec![0, 0, 12]];
        let names = vec!["class_0".to_string(), "class_1".into(), "a <long> & odd class name".into()];
        let svg = confusion_matrix(&matrix, &names).unwrap().unwrap();
        // The background, then the cells.
        assert_eq!(count(&svg, "rect"), 1 + 9);
        for n in ["10", "2", "7", "12", "class_0", "a &lt;long&gt; &amp; odd cl…"] {
            assert!(svg.contains(&format!(">\n{n}\n</text>")), "{n}: {svg}");
        }
        assert!(confusion_matrix(&[], &[]).unwrap().is_none());
        // Names that do not match the matrix are replaced by indices.
        let svg = confusion_matrix(&[vec![1, 0], vec![0, 1]], &["x".to_string()]).unwrap().unwrap();
        assert!(svg.contains(">\n0\n</text>") && !svg.contains(">\nx\n</text>"));
    }

    #[test]
    fn ticks_read_well() {
        assert_eq!(axis_number(0.5), "0.5");
        assert_eq!(axis_number(1.0), "1");
        assert_eq!(axis_number(0.001), "1.0e-3");
        assert_eq!(axis_number(0.0), "0");
        assert_eq!(shade(0.0), RGBColor(247, 251, 255));
        assert_eq!(shade(1.0), RGBColor(8, 48, 107));
    }
}
