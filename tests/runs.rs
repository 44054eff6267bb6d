//! `gymnos-host runs list|show|compare|report`, end to end on two trainings of the wine table
//! that differ in learning rate, and the report the engine writes into a completed run's
//! folder, checked as files and as headless Chromium renders the page.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use gymnos_tests::{read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

fn wine(name: &str, lr: f64) -> Value {
    let mut experiment = wine_experiment(name);
    experiment["training"]["optimizer"]["lr"] = json!(lr);
    experiment.as_object_mut().unwrap().remove("tracking");
    experiment
}

/// A sandbox with two completed wine runs: `wine-fast` (lr 0.01) and `wine-slow` (lr 0.001).
struct TwoRuns {
    sandbox: Sandbox,
    fast: PathBuf,
    slow: PathBuf,
}

impl TwoRuns {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        sandbox.install_builtins();
        for (name, lr) in [("wine-fast", 0.01), ("wine-slow", 0.001)] {
            let exp = sandbox.experiment(name, &wine(name, lr));
            sandbox.host(&["run", exp.to_str().unwrap(), "--no-progress"]).ok();
        }
        let one = |name: &str| {
            let runs = sandbox.runs(name);
            assert_eq!(runs.len(), 1, "{name}: {runs:?}");
            runs[0].clone()
        };
        let (fast, slow) = (one("wine-fast"), one("wine-slow"));
        TwoRuns { sandbox, fast, slow }
    }

    fn host(&self, args: &[&str]) -> String {
        self.sandbox.host(args).ok().to_string()
    }

    fn host_json(&self, args: &[&str]) -> Value {
        let out = self.host(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn accuracy(&self, run: &Path) -> f64 {
        read_json(&run.join("metrics.json"))["test"]["accuracy"].as_f64().unwrap()
    }
}

/// The version `training_config.json` pinned for a plugin section (`/model`, `/dataset`, ...).
fn version(run: &Path, section: &str) -> String {
    let config = read_json(&run.join("training_config.json"));
    config.pointer(&format!("{section}/resolved/version")).and_then(Value::as_str).unwrap().to_string()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn runs_list_shows_every_run_filters_sorts_and_survives_damaged_folders() {
    let t = TwoRuns::new();
    let root = t.sandbox.dir.path();

    // The default root is ./trainings.
    let rows = t.host_json(&["runs", "list", "--json"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, run, name) in [(&rows[0], &t.fast, "wine-fast"), (&rows[1], &t.slow, "wine-slow")] {
        assert_eq!(row["experiment"], name);
        assert_eq!(root.join(row["path"].as_str().unwrap()), *run);
        assert_eq!(row["timestamp"], run.file_name().unwrap().to_str().unwrap());
        assert_eq!(row["status"], "completed");
        assert_eq!(row["epochs_completed"], 8);
        assert_eq!(row["model"], format!("mlp@{}", version(run, "/model")));
        assert_eq!(row["test"]["accuracy"].as_f64().unwrap(), t.accuracy(run));
        assert_eq!(row["best"]["metric"], "val_loss");
        assert!(row["duration_seconds"].as_f64().unwrap() > 0.0);
        assert!(row.get("reason").is_none());
    }

    // The table: a header and one line per run with its cells.
    let table = t.host(&["runs", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["experiment", "timestamp", "status", "epochs", "best", "test", "duration", "model", "path"]);
    for (line, run, name) in [(lines[1], &t.fast, "wine-fast"), (lines[2], &t.slow, "wine-slow")] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], name);
        assert_eq!(&cells[2..4], ["completed", "8"]);
        assert!(cells[4].starts_with("val_loss="), "{line}");
        assert_eq!(cells[5], format!("accuracy={:.4}", t.accuracy(run)));
        assert!(cells[6].ends_with('s'), "{line}");
        assert_eq!(cells[7], format!("mlp@{}", version(run, "/model")));
        assert_eq!(root.join(cells[8]), *run);
    }

    // Filters and orders.
    let only = t.host_json(&["runs", "list", "--json", "--experiment", "wine-slow"]);
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["experiment"], "wine-slow");
    assert_eq!(t.host_json(&["runs", "list", "--json", "--status", "failed"]), json!([]));
    let by_test = t.host_json(&["runs", "list", "--json", "--sort", "test"]);
    let scores: Vec<f64> =
        by_test.as_array().unwrap().iter().map(|r| r["test"]["accuracy"].as_f64().unwrap()).collect();
    assert!(scores[0] >= scores[1], "{scores:?}");
    let by_experiment =
        t.host_json(&["runs", "list", "--json", "--sort", "experiment", "--root", s(&root.join("trainings"))]);
    assert_eq!(by_experiment[0]["experiment"], "wine-fast");
    let refused = t.sandbox.host(&["runs", "list", "--sort", "size"]);
    assert_ne!(refused.code, 0);

    // Damaged folders are rows with status `unreadable` and the reason, never a crash.
    let broken = root.join("trainings/broken/executions/2026-01-01_00-00-00");
    fs::create_dir_all(&broken).unwrap();
    fs::write(broken.join("training_config.json"), "{ \"experiment\": ").unwrap();
    let half = root.join("trainings/wine-fast/executions/2026-01-01_00-00-00");
    fs::create_dir_all(&half).unwrap();
    fs::copy(t.fast.join("training_config.json"), half.join("training_config.json")).unwrap();
    fs::write(half.join("metrics.json"), "{ \"status\": \"compl").unwrap();
    let rows = t.host_json(&["runs", "list", "--json", "--status", "unreadable"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let reason = |row: &Value| row["reason"].as_str().unwrap().to_string();
    assert_eq!(rows[0]["experiment"], "broken");
    assert!(reason(&rows[0]).contains("training_config.json: not valid JSON"), "{}", reason(&rows[0]));
    assert_eq!(rows[1]["experiment"], "wine-fast");
    assert!(reason(&rows[1]).contains("metrics.json: not a valid run record"), "{}", reason(&rows[1]));
    let run = t.sandbox.host(&["runs", "list"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().filter(|l| l.contains(" unreadable ")).count(), 2, "{}", run.stdout);
    assert!(run.stderr.contains("2 run folder(s) cannot be read"), "{}", run.stderr);

    // A sweep's folder: the runs one level deeper are found.
    let sweep_runs = root.join("sweeps/lr/runs/trial-0000");
    fs::create_dir_all(&sweep_runs).unwrap();
    let trial = sweep_runs.join("executions");
    fs::create_dir_all(&trial).unwrap();
    let copied = trial.join(t.slow.file_name().unwrap());
    fs::create_dir_all(&copied).unwrap();
    for file in ["training_config.json", "metrics.json"] {
        fs::copy(t.slow.join(file), copied.join(file)).unwrap();
    }
    for dir in [root.join("sweeps"), root.join("sweeps/lr"), root.join("sweeps/lr/runs")] {
        let rows = t.host_json(&["runs", "list", "--json", "--root", s(&dir)]);
        assert_eq!(rows.as_array().unwrap().len(), 1, "{}: {rows}", dir.display());
        assert_eq!(rows[0]["path"], s(&copied));
    }

    // A root that does not exist is one error line; a closed pipe ends quietly.
    let missing = t.sandbox.host(&["runs", "list", "--root", "nowhere"]);
    assert!(missing.one_line_error().contains("nowhere"), "{}", missing.stderr);
    let piped = t.sandbox.host_into_closed_pipe(&["runs", "list"]);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
}

#[test]
fn runs_show_and_compare_name_what_differs() {
    let t = TwoRuns::new();
    let accuracy = t.accuracy(&t.fast);

    let shown = t.host(&["runs", "show", s(&t.fast)]);
    let words = |first: &str| -> Vec<&str> {
        let line = shown.lines().find(|l| l.split_whitespace().next() == Some(first));
        line.unwrap_or_else(|| panic!("no `{first}` line in:\n{shown}")).split_whitespace().collect()
    };
    let data = &read_json(&t.fast.join("metrics.json"))["data"];
    assert_eq!(words("experiment"), ["experiment", "wine-fast"]);
    assert_eq!(words("status"), ["status", "completed"]);
    assert_eq!(words("epochs"), ["epochs", "8"]);
    assert_eq!(words("best")[1].split('=').next(), Some("val_loss"));
    let samples =
        format!("{} train / {} validation / {} test", data["train_samples"], data["val_samples"], data["test_samples"]);
    assert!(words("data").join(" ").starts_with(&format!("data classification, {samples} samples")), "{shown}");
    assert!(words("hardware").len() > 3, "{shown}");
    assert!(shown.contains(&format!("accuracy {accuracy:.4}")), "{shown}");
    assert_eq!(words("class"), ["class", "precision", "recall", "f1", "support"]);
    assert_eq!(words("class_2").len(), 5);
    assert!(shown.contains("confusion matrix (rows: true class, columns: predicted)"), "{shown}");
    assert_eq!(words("train")[0], "train");
    assert_eq!(words("total").len(), 2);
    let (mlp, csv) = (version(&t.fast, "/model"), version(&t.fast, "/dataset"));
    assert_eq!(words("model"), ["model", &format!("mlp@{mlp}"), "gymnos-mlp", &mlp]);
    assert_eq!(words("dataset"), ["dataset", &format!("csv@{csv}"), "gymnos-csv-dataset", &csv]);
    let details = t.host_json(&["runs", "show", s(&t.fast), "--json"]);
    assert_eq!(details["experiment"], "wine-fast");
    assert_eq!(details["status"], "completed");
    assert_eq!(details["test"]["accuracy"].as_f64().unwrap(), accuracy);
    assert_eq!(details["test"]["per_class"].as_array().unwrap().len(), 3);
    assert_eq!(details["hardware"]["device"].as_str().map(str::is_empty), Some(false));
    let plugins: Vec<String> = details["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}@{}",
                p["kind"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    let standardize = version(&t.fast, "/preprocessors/0");
    assert_eq!(
        plugins,
        [format!("dataset csv@{csv}"), format!("preprocessor standardize@{standardize}"), format!("model mlp@{mlp}")]
    );
    let not_a_run = t.sandbox.host(&["runs", "show", s(t.sandbox.dir.path())]);
    assert!(not_a_run.one_line_error().contains("not a run folder"), "{}", not_a_run.stderr);

    // compare: exactly the paths that differ, one value per run.
    let comparison = t.host_json(&["runs", "compare", s(&t.fast), s(&t.slow), "--json"]);
    let params = comparison["parameters"].as_array().unwrap();
    let paths: Vec<&str> = params.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["experiment.name", "training.optimizer.lr"], "{comparison}");
    assert_eq!(params[0]["values"], json!(["wine-fast", "wine-slow"]));
    assert_eq!(params[1]["values"], json!([0.01, 0.001]));
    let labels: Vec<&str> =
        comparison["runs"].as_array().unwrap().iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["wine-fast", "wine-slow"]);
    let metric = |name: &str| -> Value {
        let rows = comparison["metrics"].as_array().unwrap();
        rows.iter().find(|m| m["metric"] == name).unwrap_or_else(|| panic!("{name}: {comparison}"))["values"].clone()
    };
    assert_eq!(metric("status"), json!(["completed", "completed"]));
    assert_eq!(metric("epochs_completed"), json!([8, 8]));
    assert_eq!(metric("test.accuracy"), json!([accuracy, t.accuracy(&t.slow)]));
    assert_eq!(metric("final.lr"), json!([0.01, 0.001]));
    assert!(metric("best.val_loss")[0].is_f64());

    let text = t.host(&["runs", "compare", s(&t.fast), s(&t.slow)]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("wine-fast: {}", t.fast.display()));
    assert_eq!(lines[1], format!("wine-slow: {}", t.slow.display()));
    let row = |first: &str| -> Vec<&str> {
        let line = lines.iter().find(|l| l.split_whitespace().next() == Some(first));
        line.unwrap_or_else(|| panic!("no `{first}` row in:\n{text}")).split_whitespace().collect()
    };
    assert_eq!(row("parameter"), ["parameter", "wine-fast", "wine-slow"]);
    assert_eq!(row("experiment.name"), ["experiment.name", "wine-fast", "wine-slow"]);
    assert_eq!(row("training.optimizer.lr"), ["training.optimizer.lr", "0.01", "0.001"]);
    let parameter_rows = lines.iter().skip_while(|l| !l.starts_with("parameter")).take_while(|l| !l.is_empty()).count();
    assert_eq!(parameter_rows, 3, "a header and the two differing paths:\n{text}");
    assert_eq!(row("test.accuracy")[1], format!("{accuracy:.4}"));
    assert_eq!(row("epochs_completed"), ["epochs_completed", "8", "8"]);

    // A run against itself differs nowhere; one run is not a comparison.
    let same = t.host(&["runs", "compare", s(&t.fast), s(&t.fast)]);
    assert!(same.contains("no parameter differs"), "{same}");
    assert_ne!(t.sandbox.host(&["runs", "compare", s(&t.fast)]).code, 0);
}

/// An element of an SVG document.
struct Element {
    tag: String,
    attributes: Vec<(String, String)>,
    text: String,
}

impl Element {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The elements of the SVG document in `path`, parsed as XML.
fn svg_elements(path: &Path) -> Vec<Element> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| Element {
            tag: n.tag_name().name().to_string(),
            attributes: n.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect(),
            text: n.text().unwrap_or_default().trim().to_string(),
        })
        .collect()
}

fn texts(elements: &[Element]) -> Vec<&str> {
    elements.iter().filter(|e| e.tag == "text").map(|e| e.text.as_str()).collect()
}

/// Headless Chromium, which the test needs to look at the page as a person would.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name)))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is needed to render report.html and was not found on PATH: \
             install Debian's `chromium` package (`apt-get install -y chromium`; scripts/setup.sh does)"
        )
    })
}

/// Runs Chromium headless on `page` with `args`, with a profile of its own; returns stdout.
fn render(page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("Chromium cannot start: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "Chromium failed on {}: {stderr}", page.display());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_completed_run_has_pictures_and_a_page_a_browser_renders() {
    let t = TwoRuns::new();
    let run = &t.fast;
    let metrics = read_json(&run.join("metrics.json"));
    let accuracy = format!("{:.4}", metrics["test"]["accuracy"].as_f64().unwrap());

    // The engine wrote the report when the run completed.
    for file in ["learning_curves.svg", "confusion_matrix.svg", "report.html"] {
        assert!(run.join(file).is_file(), "{file} missing in {}", run.display());
    }
    let log = fs::read_to_string(run.join("execution.log")).unwrap();
    assert!(!log.contains("report was not written"), "{log}");

    // Learning curves: loss, accuracy (train and validation each) and the learning rate.
    let curves = svg_elements(&run.join("learning_curves.svg"));
    let series: Vec<&Element> =
        curves.iter().filter(|e| e.tag == "polyline" && e.attribute("stroke-width") == Some("2")).collect();
    assert_eq!(series.len(), 5, "train/val loss, train/val accuracy, lr");
    let points = |e: &Element| e.attribute("points").map_or(0, |v| v.split_whitespace().count());
    assert!(series.iter().all(|e| points(e) == 8), "one point per epoch");
    let texts = texts(&curves);
    for title in ["loss", "accuracy", "learning rate", "train", "validation", "epoch"] {
        assert!(texts.contains(&title), "{title}: {texts:?}");
    }

    // Confusion matrix: 3 × 3 cells (after the background) with the test counts.
    let matrix = svg_elements(&run.join("confusion_matrix.svg"));
    assert_eq!(matrix.iter().filter(|e| e.tag == "rect").count(), 1 + 9);
    let texts = self::texts(&matrix);
    let counts: Vec<i64> = metrics["test"]["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .collect();
    assert_eq!(counts.len(), 9);
    for count in &counts {
        assert!(texts.contains(&count.to_string().as_str()), "{count}: {texts:?}");
    }
    for class in ["class_0", "class_1", "class_2", "true class", "predicted class"] {
        assert!(texts.contains(&class), "{class}: {texts:?}");
    }

    // The page: self-contained, with the summary and both pictures inlined.
    let html = fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains(&accuracy), "the test accuracy {accuracy} is not on the page");
    assert_eq!(html.matches("<svg ").count(), 2);
    for external in ["src=", "href=", "<script", "url("] {
        assert!(!html.contains(external), "report.html refers to something outside it ({external})");
    }

    // As Chromium renders it.
    let page = run.join("report.html");
    let dom = render(&page, &["--dump-dom".to_string()]);
    assert!(dom.contains("<h1>wine-fast"), "{dom}");
    assert!(dom.contains(&format!("<td class=\"num\">{accuracy}</td>")), "accuracy {accuracy} not rendered");
    assert_eq!(dom.matches("<svg ").count(), 2, "both pictures are in the rendered page");
    let mlp = format!("mlp@{}", version(run, "/model"));
    for needle in ["class_2", "Learning curves", "Confusion matrix", "Hardware", "Time per stage", &mlp] {
        assert!(dom.contains(needle), "{needle} not rendered");
    }
    let shot = t.sandbox.dir.path().join("report.png");
    render(&page, &[format!("--screenshot={}", shot.display()), "--window-size=1280,2400".to_string()]);
    let png = fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}"));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 60_000, "the screenshot is nearly empty ({} bytes)", png.len());

    // `runs report` writes them again, for any run.
    for file in ["learning_curves.svg", "confusion_matrix.svg", "report.html"] {
        fs::remove_file(run.join(file)).unwrap();
    }
    let written = t.host(&["runs", "report", s(run)]);
    let written: Vec<&str> = written.lines().collect();
    assert_eq!(written.len(), 3, "{written:?}");
    for (line, file) in written.iter().zip(["learning_curves.svg", "confusion_matrix.svg", "report.html"]) {
        assert_eq!(Path::new(line), run.join(file));
    }
    assert_eq!(fs::read_to_string(run.join("report.html")).unwrap(), html, "the report is a function of the record");
    let refused = t.sandbox.host(&["runs", "report", s(t.sandbox.dir.path())]);
    assert!(refused.one_line_error().contains("not a run folder"), "{}", refused.stderr);
}
