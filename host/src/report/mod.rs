//! A run's report, written into its folder: `learning_curves.svg`, `confusion_matrix.svg` (for
//! a classifier with a test evaluation) and `report.html`, a self-contained page with the run's
//! summary and both pictures inlined. The engine writes it when a run completes;
//! `gymnos-host runs report RUN_DIR` (re)writes it for any run.

pub mod html;
pub mod plots;

use std::path::{Path, PathBuf};

use crate::{
    record::EvaluationReport,
    runs::{Run, RunsError},
};

pub const LEARNING_CURVES: &str = "learning_curves.svg";
pub const CONFUSION_MATRIX: &str = "confusion_matrix.svg";
pub const REPORT: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] RunsError),
    #[error("{}: cannot draw {picture}: {message}", run_dir.display())]
    Draw { run_dir: PathBuf, picture: &'static str, message: String },
    #[error("{}: cannot write: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
}

/// Writes the report of the run in `run_dir` from its `training_config.json` and
/// `metrics.json`, each file whole (a temporary file renamed), and returns the files written:
/// the pictures the record has data for, then `report.html`.
pub fn write_report(run_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let run = Run::load(run_dir)?;
    let draw_error = |picture| move |message| ReportError::Draw { run_dir: run_dir.to_path_buf(), picture, message };
    let curves = plots::learning_curves(&run.summary.history).map_err(draw_error(LEARNING_CURVES))?;
    let matrix = match &run.summary.test {
        Some(EvaluationReport::Classification(report)) => {
            let names = run.summary.data.as_ref().map(|d| d.class_names.as_slice()).unwrap_or_default();
            plots::confusion_matrix(&report.confusion_matrix, names).map_err(draw_error(CONFUSION_MATRIX))?
        }
        _ => None,
    };

    let mut written = Vec::new();
    let mut pictures = Vec::new();
    for (file, title, svg) in
        [(LEARNING_CURVES, "Learning curves", &curves), (CONFUSION_MATRIX, "Confusion matrix", &matrix)]
    {
        if let Some(svg) = svg {
            written.push(write(&run_dir.join(file), svg)?);
            pictures.push(html::Picture { title, svg });
        }
    }
    written.push(write(&run_dir.join(REPORT), &html::render(&run, &pictures))?);
    Ok(written)
}

fn write(path: &Path, text: &str) -> Result<PathBuf, ReportError> {
    crate::fsio::write_atomically(path, text.as_bytes(), 0o644)
        .map_err(|cause| ReportError::Write { path: path.to_path_buf(), cause })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::{
        ClassMetrics, ClassificationReport, DataDescription, DataMode, Hardware, RegressionReport, RunStatus,
        RunSummary, TaskName,
    };

    fn run_dir(summary: &RunSummary) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "experiment": { "name": "wine <&> test" },
            "model": { "plugin": "mlp@=1.0.0", "resolved": { "version": "1.0.0", "package": "gymnos-mlp 1.0.0" } }
        });
        std::fs::write(dir.path().join("training_config.json"), config.to_string()).unwrap();
        summary.save(dir.path()).unwrap();
        dir
    }

    fn classified() -> RunSummary {
        let mut s = RunSummary { status: RunStatus::Completed, started_at: "then".into(), ..RunSummary::default() };
        for i in 0..4 {
            let f = i as f64;
            s.add_epoch(&BTreeMap::from([
                ("train_loss".to_string(), 1.0 - f * 0.2),
                ("val_loss".to_string(), 1.1 - f * 0.2),
                ("train_accuracy".to_string(), 0.5 + f * 0.1),
                ("val_accuracy".to_string(), 0.4 + f * 0.1),
                ("lr".to_string(), 0.01),
            ]));
        }
        s.add_elapsed("train", 1.5);
        s.add_elapsed("load_dataset", 0.25);
        let class = |name: &str| ClassMetrics { class: name.into(), precision: 0.9, recall: 0.8, f1: 0.85, support: 5 };
        s.test = Some(EvaluationReport::Classification(ClassificationReport {
            loss: 0.2,
            accuracy: 0.94286,
            f1_macro: 0.9,
            per_class: vec![class("red"), class("white")],
            confusion_matrix: vec![vec![5, 0], vec![1, 4]],
        }));
        s.data = Some(DataDescription {
            task: TaskName::Classification,
            mode: DataMode::InMemory,
            train_samples: 10,
            val_samples: 5,
            test_samples: 10,
            feature_shape: vec![13],
            input_shape: vec![13],
            num_outputs: 2,
            class_names: vec!["red".into(), "white".into()],
            dataset_notes: None,
        });
        s.hardware = Some(Hardware { cpu: "Some CPU".into(), cpu_cores: 2, ..Hardware::default() });
        s
    }

    #[test]
    fn a_classifier_gets_both_pictures_and_the_page() {
        let dir = run_dir(&classified());
        let written = write_report(dir.path()).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, [LEARNING_CURVES, CONFUSION_MATRIX, REPORT]);
        let html = std::fs::read_to_string(dir.path().join(REPORT)).unwrap();
        assert_eq!(html.matches("<svg ").count(), 2);
        for needle in ["wine &lt;&amp;&gt; test", "0.9429", "<td>red</td>", "Some CPU (2 cores)", "mlp@1.0.0", "1.75s"]
        {
            assert!(html.contains(needle), "{needle}");
        }
        assert!(!html.contains("wine <&> test"), "the name is escaped");
        // Self-contained: nothing is fetched.
        for external in ["src=", "href=", "<script", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        let curves = std::fs::read_to_string(dir.path().join(LEARNING_CURVES)).unwrap();
        let lines = curves.lines().filter(|l| l.starts_with("<polyline ") && l.contains("stroke-width=\"2\""));
        assert_eq!(lines.count(), 5);
        // Rewriting replaces the files and leaves no temporary behind.
        write_report(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_regression_or_a_run_without_epochs_gets_what_it_has_data_for() {
        let mut s = classified();
        s.test = Some(EvaluationReport::Regression(RegressionReport { loss: 0.1, mse: 0.1, mae: 0.2, r2: 0.8 }));
        let dir = run_dir(&s);
        let names: Vec<_> =
            write_report(dir.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, [LEARNING_CURVES, REPORT]);
        assert!(std::fs::read_to_string(dir.path().join(REPORT)).unwrap().contains("0.8000"));

        let failed = RunSummary { status: RunStatus::Failed, error: Some("boom".into()), ..RunSummary::default() };
        let dir = run_dir(&failed);
        let written = write_report(dir.path()).unwrap();
        assert_eq!(written, [dir.path().join(REPORT)]);
        let html = std::fs::read_to_string(&written[0]).unwrap();
        assert!(html.contains("boom") && html.contains("No test evaluation"));
    }

    #[test]
    fn an_unreadable_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(write_report(dir.path()), Err(ReportError::Read(_))));
        std::fs::write(dir.path().join("training_config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("metrics.json"), "{").unwrap();
        let err = write_report(dir.path()).unwrap_err().to_string();
        assert!(err.contains("metrics.json"), "{err}");
    }
}
