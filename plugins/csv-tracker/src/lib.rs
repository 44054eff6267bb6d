//! `csv` (a tracker): writes a run's epoch metrics and test metrics as CSV tables in the run folder.
//!
//! - `epochs.csv`: one row per epoch, columns `epoch` then the metrics: the first epoch's in
//!   name order, then any metric first seen later, at the end (earlier rows leave its cell
//!   empty). The file is rewritten whole after each epoch (a temporary file renamed over it), so
//!   a reader never sees half a row. A resumed run keeps the rows of the epochs before the
//!   checkpoint it resumes from and writes the others again.
//! - `test.csv`: a header and one row, `epoch` (the epochs completed) then the test metrics in
//!   name order.
//!
//! Fields are quoted as RFC 4180 says when they hold a comma, a quote or a line break; lines end
//! with LF, as in the host's `predictions.csv`. Numbers are written in Rust's shortest form that
//! reads back as the same `f64` (`0.01`, `1e-8`, `NaN`, `inf`).
//!
//! Until 1.1 the tracker was called `csv-log`; the host still finds it by that name, with a
//! warning. It shares the name `csv` with the data set: an experiment's section says which kind
//! it means, and `plugins info`/`remove` ask for `--kind` when a name is ambiguous.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use gymnos_plugin_sdk::{Config, Configurable, Context, PluginError, Result, Tracker};
use serde_json::Value;

/// The configuration of the `csv` tracker.
#[derive(Config)]
pub struct CsvConfig {
    /// The per-epoch table, in the run folder
    #[config(default = "epochs.csv", inside_run_folder)]
    pub file: String,
    /// The test metrics' table, in the run folder
    #[config(default = "test.csv", inside_run_folder)]
    pub test_file: String,
}

pub struct CsvTracker {
    epochs_path: PathBuf,
    test_path: PathBuf,
    /// The metric columns after `epoch`, in file order.
    columns: Vec<String>,
    /// Each row's epoch and cells (one per column; rows shorter than `columns` end empty).
    rows: Vec<(String, Vec<String>)>,
}

impl Configurable for CsvTracker {
    const NAME: &'static str = "csv";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Writes the run's epoch and test metrics as CSV tables";
    type Config = CsvConfig;

    fn build(config: CsvConfig, ctx: &Context) -> Result<Self> {
        if lexical(&config.file) == lexical(&config.test_file) {
            return Err(PluginError::config(format!(
                "file, test_file: both name `{}`; each table needs a file of its own",
                config.test_file
            )));
        }
        let in_run = |file: &str| match &ctx.output_dir {
            Some(dir) => dir.join(file),
            None => ctx.resolve(file.as_ref()),
        };
        Ok(Self {
            epochs_path: in_run(&config.file),
            test_path: in_run(&config.test_file),
            columns: Vec::new(),
            rows: Vec::new(),
        })
    }
}

/// A relative path's parts with `.` and `name/..` taken out: `a/./b/../c.csv` is `a/c.csv`.
fn lexical(path: &str) -> Vec<&std::ffi::OsStr> {
    let mut parts = Vec::new();
    for part in Path::new(path).components() {
        match part {
            std::path::Component::Normal(name) => parts.push(name),
            std::path::Component::ParentDir => drop(parts.pop()),
            _ => {}
        }
    }
    parts
}

impl Tracker for CsvTracker {
    fn start(&mut self, run: &Value) -> Result<()> {
        // A resumed run: keep the epochs up to the checkpoint; the later ones are trained again.
        let Some(resumed_at) = run.get("resumed_at_epoch").and_then(Value::as_u64) else { return Ok(()) };
        let text = match fs::read_to_string(&self.epochs_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&self.epochs_path, e)),
        };
        let mut records = parse(&text).map_err(|e| io_error(&self.epochs_path, e))?.into_iter();
        let header = records.next().unwrap_or_default();
        if header.first().map(String::as_str) != Some("epoch") {
            return Err(PluginError::data(format!(
                "{}: not a table this tracker wrote (its first column is not `epoch`)",
                self.epochs_path.display()
            )));
        }
        self.columns = header[1..].to_vec();
        self.rows = records
            .filter(|r| r[0].parse::<u64>().is_ok_and(|epoch| epoch <= resumed_at))
            .map(|mut r| {
                let cells = r.split_off(1);
                (r.swap_remove(0), cells)
            })
            .collect();
        self.write_epochs()
    }

    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()> {
        match scope {
            "epoch" => {
                let mut names: Vec<&String> = metrics.iter().map(|(name, _)| name).collect();
                names.sort();
                for name in names {
                    if !self.columns.contains(name) {
                        self.columns.push(name.clone());
                    }
                }
                let mut cells = vec![String::new(); self.columns.len()];
                for (name, value) in metrics {
                    let i = self.columns.iter().position(|c| c == name).expect("added above");
                    cells[i] = number(*value);
                }
                // Logged again (an epoch trained again): the latest values replace the row.
                self.rows.retain(|(epoch, _)| *epoch != step.to_string());
                self.rows.push((step.to_string(), cells));
                self.write_epochs()
            }
            "test" => {
                let mut sorted: Vec<&(String, f64)> = metrics.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut header = vec!["epoch".to_string()];
                header.extend(sorted.iter().map(|(name, _)| name.clone()));
                let mut row = vec![step.to_string()];
                row.extend(sorted.iter().map(|(_, value)| number(*value)));
                write_atomically(&self.test_path, &table(&[header, row]))
            }
            // `train_step` and any scope to come: not a table of this tracker.
            _ => Ok(()),
        }
    }
}

impl CsvTracker {
    fn write_epochs(&self) -> Result<()> {
        let mut records = Vec::with_capacity(self.rows.len() + 1);
        records.push(std::iter::once("epoch".to_string()).chain(self.columns.iter().cloned()).collect());
        for (epoch, cells) in &self.rows {
            let mut record = vec![epoch.clone()];
            record.extend(cells.iter().cloned());
            record.resize(self.columns.len() + 1, String::new());
            records.push(record);
        }
        write_atomically(&self.epochs_path, &table(&records))
    }
}

fn io_error(path: &Path, e: io::Error) -> PluginError {
    PluginError::io(format!("{}: {e}", path.display()))
}

/// A metric's value: the shortest text that reads back as the same `f64`.
fn number(value: f64) -> String {
    format!("{value:?}")
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Records as CSV text, each line ended by LF (as the host's `predictions.csv`; RFC 4180 readers
/// take LF as well as CRLF).
fn table(records: &[Vec<String>]) -> String {
    let mut out = String::new();
    for record in records {
        let fields: Vec<String> = record.iter().map(|f| field(f)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Reads CSV text as this tracker writes it (RFC 4180: quoted fields may hold commas, doubled
/// quotes and line breaks; lines end with CRLF or LF).
fn parse(text: &str) -> io::Result<Vec<Vec<String>>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => return Err(bad("a quoted field is not closed")),
                    }
                }
                if !matches!(chars.peek(), None | Some(',' | '\r' | '\n')) {
                    return Err(bad("text after a quoted field"));
                }
                at_field_start = false;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
            }
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if !at_field_start || !record.is_empty() || !field.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// Writes `text` to a temporary file next to `path`, then renames it over `path`: readers see
/// the old file or the new one, never a part.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp, e));
    }
    fs::rename(&temp, path).map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_error(path, e)
    })
}

gymnos_plugin_sdk::export_plugin!(tracker(CsvTracker));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, ConfigSchema};

    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("val_loss"), "val_loss");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field(" padded "), " padded ");
        assert_eq!(field(""), "");
        let records =
            vec![vec!["epoch".to_string(), "a,b".into(), "q\"".into()], vec!["1".into(), "".into(), "x".into()]];
        let text = table(&records);
        assert_eq!(text, "epoch,\"a,b\",\"q\"\"\"\n1,,x\n");
        assert_eq!(parse(&text).unwrap(), records);
        assert_eq!(parse("a,\"b\nc\"\nd,e").unwrap(), [vec!["a", "b\nc"], vec!["d", "e"]]);
        assert!(parse("\"open").is_err());
        assert!(parse("\"a\"b").is_err());
    }

    #[test]
    fn numbers_read_back_exactly() {
        for value in [0.01, 1e-8, 0.1 + 0.2, 1.0, 123456789.125, f64::MAX, -0.0] {
            assert_eq!(number(value).parse::<f64>().unwrap().to_bits(), value.to_bits(), "{value}");
        }
        assert_eq!(number(0.01), "0.01");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "inf");
    }

    fn tracker(dir: &Path) -> CsvTracker {
        let config = CsvConfig::from_json(json!({})).unwrap();
        let ctx = Context { output_dir: Some(dir.to_path_buf()), ..Context::standalone() };
        CsvTracker::build(config, &ctx).unwrap()
    }

    fn metrics(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn one_row_per_epoch_with_late_metrics_at_the_end_and_resume_keeps_the_checkpointed_rows() {
        let dir = tempdir("epochs");
        let mut t = tracker(&dir);
        t.start(&json!({ "experiment": "x", "resumed_at_epoch": null })).unwrap();
        t.log_metrics(1, "epoch", &metrics(&[("train_loss", 0.5), ("lr", 0.01)])).unwrap();
        t.log_metrics(5, "train_step", &metrics(&[("loss", 0.4)])).unwrap();
        t.log_metrics(2, "epoch", &metrics(&[("train_loss", 0.25), ("lr", 0.01), ("val_loss", 0.75)])).unwrap();
        let text = fs::read_to_string(dir.join("epochs.csv")).unwrap();
        assert_eq!(text, "epoch,lr,train_loss,val_loss\n1,0.01,0.5,\n2,0.01,0.25,0.75\n");
        t.log_metrics(3, "epoch", &metrics(&[("train_loss", 0.125), ("lr", 0.001), ("val_loss", 0.5)])).unwrap();
        t.log_metrics(3, "test", &metrics(&[("loss", 0.5), ("accuracy", 0.75)])).unwrap();
        t.finish("interrupted").unwrap();
        assert_eq!(fs::read_to_string(dir.join("test.csv")).unwrap(), "epoch,accuracy,loss\n3,0.75,0.5\n");

        // Resumed from the checkpoint of epoch 2: epoch 3 is trained again.
        let mut t = tracker(&dir);
        t.start(&json!({ "experiment": "x", "resumed_at_epoch": 2 })).unwrap();
        let text = fs::read_to_string(dir.join("epochs.csv")).unwrap();
        assert_eq!(text, "epoch,lr,train_loss,val_loss\n1,0.01,0.5,\n2,0.01,0.25,0.75\n");
        t.log_metrics(3, "epoch", &metrics(&[("train_loss", 0.0625), ("lr", 0.001), ("val_loss", 0.5)])).unwrap();
        let text = fs::read_to_string(dir.join("epochs.csv")).unwrap();
        assert_eq!(text, "epoch,lr,train_loss,val_loss\n1,0.01,0.5,\n2,0.01,0.25,0.75\n3,0.001,0.0625,0.5\n");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn meets_the_tracker_contract_and_refuses_paths_outside_the_run_folder() {
        let dir = tempdir("contract");
        harness::check_tracker::<CsvTracker>(json!({ "file": "logs/e.csv" }), &dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("logs/e.csv")).unwrap(), "epoch,loss\n1,0.5\n");
        for key in ["file", "test_file"] {
            let err = harness::check_tracker::<CsvTracker>(json!({ key: "../t.csv" }), &dir).unwrap_err();
            assert_eq!(
                err,
                format!("create: configuration error: {key}: `../t.csv` leaves the run folder; give a relative path inside it")
            );
        }
        let err =
            harness::check_tracker::<CsvTracker>(json!({ "file": "t.csv", "test_file": "./logs/../t.csv" }), &dir)
                .unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: file, test_file: both name `./logs/../t.csv`; each table needs a file of its \
             own"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gymnos-csv-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
