//! `report.html`: one self-contained page (inline style and pictures, no script, nothing
//! fetched) with a run's summary, test metrics, pictures, data, hardware, durations and plugins.

use std::fmt::Write;

use crate::{
    record::{EvaluationReport, RunSummary},
    runs::{self, human_duration, number, Run},
};

/// A picture for the page: its title and its SVG text.
pub struct Picture<'a> {
    pub title: &'a str,
    pub svg: &'a str,
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1.5rem; color: #1f2328; background: #fff; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d8dee4; padding-bottom: 0.3rem; }
.path { color: #57606a; font-family: ui-monospace, monospace; font-size: 0.9rem; word-break: break-all; }
.status { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 1rem; font-weight: 600; color: #fff; }
.status.completed { background: #1a7f37; } .status.failed { background: #cf222e; }
.status.interrupted { background: #9a6700; } .status.running { background: #0969da; }
.error { color: #cf222e; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { padding: 0.25rem 0.9rem 0.25rem 0; text-align: left; vertical-align: top; }
table.grid th, table.grid td { border-bottom: 1px solid #eaeef2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { color: #57606a; font-weight: 500; }
.cards { display: flex; flex-wrap: wrap; gap: 2rem; }
figure { margin: 1rem 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A two-column table of names and values (values already escaped).
fn key_values(rows: &[(&str, String)]) -> String {
    let mut html = String::from("<table class=\"kv\">\n");
    for (key, value) in rows {
        let _ = writeln!(html, "<tr><th>{}</th><td>{value}</td></tr>", escape(key));
    }
    html.push_str("</table>\n");
    html
}

/// A table with a header; cells already escaped, `num` columns right-aligned.
fn grid(header: &[&str], rows: &[Vec<String>], num: &[usize]) -> String {
    let mut html = String::from("<table class=\"grid\">\n<tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>\n");
    for row in rows {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if num.contains(&i) { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

fn shape(dims: &[i64]) -> String {
    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn summary_section(run: &Run) -> String {
    let s = &run.summary;
    let mut rows: Vec<(&str, String)> =
        vec![("experiment", escape(&run.experiment())), ("status", escape(s.status.name()))];
    if let Some(error) = &s.error {
        rows.push(("error", format!("<span class=\"error\">{}</span>", escape(error))));
    }
    if let Some(why) = &s.stopped_early {
        rows.push(("stopped early", escape(why)));
    }
    rows.push(("started", escape(&s.started_at)));
    rows.push(("finished", escape(s.finished_at.as_deref().unwrap_or("-"))));
    rows.push(("epochs completed", s.epochs_completed.to_string()));
    if !s.resumed_at_epochs.is_empty() {
        let epochs: Vec<String> = s.resumed_at_epochs.iter().map(u32::to_string).collect();
        rows.push(("resumed at epochs", epochs.join(", ")));
    }
    if let Some(best) = &s.best {
        rows.push(("best checkpoint", escape(&runs::best_text(best))));
    }
    rows.push(("duration", escape(&human_duration(s.total_seconds()))));
    if let Some(model) = runs::model(&run.config) {
        rows.push(("model", escape(&model)));
    }
    if let Some(sweep) = &s.sweep {
        rows.push(("sweep", escape(&format!("{}, trial {}", sweep.sweep, sweep.trial))));
    }
    for failure in &s.tracker_errors {
        rows.push(("tracker error", format!("<span class=\"error\">{}</span>", escape(failure))));
    }
    format!("<h2>Summary</h2>\n{}", key_values(&rows))
}

fn test_section(summary: &RunSummary) -> String {
    let Some(test) = &summary.test else {
        return "<h2>Test</h2>\n<p>No test evaluation was recorded.</p>\n".into();
    };
    let headline: Vec<(String, String)> = test.headline().into_iter().map(|(k, v)| (k, number(v))).collect();
    let mut html = String::from("<h2>Test</h2>\n<table class=\"kv\" id=\"test-metrics\">\n");
    for (name, value) in &headline {
        let _ = writeln!(html, "<tr><th>{}</th><td class=\"num\">{value}</td></tr>", escape(name));
    }
    html.push_str("</table>\n");
    if let EvaluationReport::Classification(report) = test {
        let rows: Vec<Vec<String>> = report
            .per_class
            .iter()
            .map(|c| vec![escape(&c.class), number(c.precision), number(c.recall), number(c.f1), c.support.to_string()])
            .collect();
        html.push_str("<h3>Per class</h3>\n");
        html.push_str(&grid(&["class", "precision", "recall", "f1", "support"], &rows, &[1, 2, 3, 4]));
    }
    html
}

fn data_section(summary: &RunSummary) -> String {
    let Some(d) = &summary.data else { return String::new() };
    let task = serde_json::to_value(d.task).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mode = serde_json::to_value(d.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut rows = vec![
        ("task", escape(&task)),
        ("loading", escape(&mode)),
        ("samples", format!("{} train, {} validation, {} test", d.train_samples, d.val_samples, d.test_samples)),
        ("features", shape(&d.feature_shape)),
        ("model input", shape(&d.input_shape)),
        ("outputs", d.num_outputs.to_string()),
    ];
    if !d.class_names.is_empty() {
        rows.push(("classes", escape(&d.class_names.join(", "))));
    }
    format!("<div><h2>Data</h2>\n{}</div>\n", key_values(&rows))
}

fn hardware_section(summary: &RunSummary) -> String {
    let Some(h) = &summary.hardware else { return String::new() };
    let mut rows = vec![
        ("CPU", escape(&format!("{} ({} cores)", h.cpu, h.cpu_cores))),
        ("memory", format!("{:.1} GiB", h.memory_gib)),
        ("torch threads", h.torch_threads.to_string()),
        ("device", escape(&h.device)),
        ("CUDA", if h.cuda_available { format!("yes, {} devices", h.cuda_devices) } else { "no".into() }),
    ];
    if !h.gpus.is_empty() {
        rows.push(("GPUs", escape(&h.gpus.join(", "))));
    }
    rows.push(("libtorch", escape(&format!("{} ({})", h.libtorch, h.libtorch_build))));
    rows.push(("system", escape(&h.os)));
    format!("<div><h2>Hardware</h2>\n{}</div>\n", key_values(&rows))
}

fn stages_section(summary: &RunSummary) -> String {
    let mut rows: Vec<Vec<String>> = runs::stages(summary)
        .into_iter()
        .map(|(stage, secs)| vec![escape(&stage), escape(&human_duration(secs)), format!("{secs:.3}")])
        .collect();
    let total = summary.total_seconds();
    rows.push(vec!["<strong>total</strong>".into(), escape(&human_duration(total)), format!("{total:.3}")]);
    format!("<div><h2>Time per stage</h2>\n{}</div>\n", grid(&["stage", "duration", "seconds"], &rows, &[1, 2]))
}

fn plugins_section(run: &Run) -> String {
    let rows: Vec<Vec<String>> = run
        .plugins()
        .iter()
        .map(|p| vec![escape(p.kind), escape(&p.to_string()), escape(p.package.as_deref().unwrap_or("-"))])
        .collect();
    format!("<div><h2>Plugins</h2>\n{}</div>\n", grid(&["kind", "plugin", "package"], &rows, &[]))
}

/// The page for `run` with `pictures` inlined.
pub fn render(run: &Run, pictures: &[Picture<'_>]) -> String {
    let experiment = escape(&run.experiment());
    let status = run.summary.status.name();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{experiment} — {stamp}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{experiment} <span class=\"status {status}\">{status}</span></h1>\n\
         <p class=\"path\">{path}</p>\n",
        stamp = escape(&run.timestamp()),
        path = escape(&run.dir.display().to_string()),
    );
    html.push_str(&summary_section(run));
    html.push_str(&test_section(&run.summary));
    for picture in pictures {
        let _ = write!(
            html,
            "<h2>{title}</h2>\n<figure>\n{svg}\n</figure>\n",
            title = escape(picture.title),
            svg = picture.svg.trim(),
        );
    }
    html.push_str("<div class=\"cards\">\n");
    html.push_str(&data_section(&run.summary));
    html.push_str(&hardware_section(&run.summary));
    html.push_str(&stages_section(&run.summary));
    html.push_str(&plugins_section(run));
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }
}
