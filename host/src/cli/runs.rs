//! `gymnos-host runs list|show|compare|report`: recorded runs, without another tool.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::Subcommand;
use gymnos_host::{
    outln,
    record::EvaluationReport,
    report,
    runs::{self, compare, human_duration, number, Run, RunDetails, RunRow, SortKey},
};

use super::output::{print_json, print_table};

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Every run under an output root, one line each; a damaged run folder is listed as
    /// `unreadable` (--json says why).
    List {
        /// The output root (`<root>/<name>/executions/<timestamp>/`); a sweep's folder, or a
        /// folder of sweeps, works too.
        #[arg(long, value_name = "DIR", default_value = "trainings")]
        root: PathBuf,
        /// Only runs with this status.
        #[arg(long, value_parser = ["running", "completed", "failed", "interrupted", runs::UNREADABLE])]
        status: Option<String>,
        /// Only runs of this experiment.
        #[arg(long, value_name = "NAME")]
        experiment: Option<String>,
        /// The order of the rows.
        #[arg(long, value_enum, default_value_t = SortKey::Time)]
        sort: SortKey,
        #[arg(long)]
        json: bool,
    },
    /// One run's summary: status, data, hardware, best epoch, test report, time per stage and
    /// the plugins it used.
    Show {
        run_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Runs side by side: the parameters whose values differ, and the metrics.
    Compare {
        #[arg(required = true, num_args = 2.., value_name = "RUN_DIR")]
        run_dirs: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// (Re)write a run's learning_curves.svg, confusion_matrix.svg and report.html.
    Report { run_dir: PathBuf },
}

pub fn run(command: RunsCommand) -> Result<()> {
    match command {
        RunsCommand::List { root, status, experiment, sort, json } => {
            list(&root, status.as_deref(), experiment.as_deref(), sort, json)
        }
        RunsCommand::Show { run_dir, json } => show(&run_dir, json),
        RunsCommand::Compare { run_dirs, json } => compare(&run_dirs, json),
        RunsCommand::Report { run_dir } => {
            for path in report::write_report(&run_dir)? {
                outln!("{}", path.display());
            }
            Ok(())
        }
    }
}

fn list(root: &Path, status: Option<&str>, experiment: Option<&str>, sort: SortKey, json: bool) -> Result<()> {
    let dirs = runs::discover(root).map_err(|e| anyhow!("{e} (give the runs' output root with --root DIR)"))?;
    let mut rows: Vec<RunRow> = dirs
        .iter()
        .map(|d| RunRow::of(d))
        .filter(|r| status.is_none_or(|s| r.status == s) && experiment.is_none_or(|e| r.experiment == e))
        .collect();
    runs::sort_rows(&mut rows, sort);
    if json {
        print_json(&rows);
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no runs under {}", root.display());
        return Ok(());
    }
    print_table(&RunRow::HEADER, &rows.iter().map(RunRow::cells).collect::<Vec<_>>());
    let unreadable = rows.iter().filter(|r| r.status == runs::UNREADABLE).count();
    if unreadable > 0 {
        eprintln!("{unreadable} run folder(s) cannot be read; `runs list --json` says why");
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Run> {
    Run::load(dir).map_err(anyhow::Error::from)
}

fn show(dir: &Path, json: bool) -> Result<()> {
    let run = load(dir)?;
    let details = RunDetails::of(&run);
    if json {
        print_json(&details);
        return Ok(());
    }
    let s = &run.summary;
    let mut lines: Vec<(&str, String)> = vec![
        ("run", dir.display().to_string()),
        ("experiment", details.experiment.clone()),
        ("status", s.status.name().to_string()),
    ];
    lines.extend(s.error.clone().map(|e| ("error", e)));
    lines.extend(s.stopped_early.clone().map(|e| ("stopped early", e)));
    lines.push(("started", s.started_at.clone()));
    lines.push(("finished", s.finished_at.clone().unwrap_or_else(|| "-".into())));
    lines.push(("epochs", s.epochs_completed.to_string()));
    lines.push(("best", s.best.as_ref().map_or_else(|| "-".into(), runs::best_text)));
    lines.push(("duration", human_duration(details.duration_seconds)));
    if let Some(d) = &s.data {
        let task = serde_json::to_value(d.task)?.as_str().unwrap_or_default().to_string();
        let classes = if d.class_names.is_empty() { String::new() } else { format!(": {}", d.class_names.join(", ")) };
        lines.push((
            "data",
            format!(
                "{task}, {} train / {} validation / {} test samples, features {:?}, model input {:?}, {} outputs{classes}",
                d.train_samples, d.val_samples, d.test_samples, d.feature_shape, d.input_shape, d.num_outputs
            ),
        ));
    }
    if let Some(h) = &s.hardware {
        let gpus = if h.gpus.is_empty() { String::new() } else { format!(" ({})", h.gpus.join(", ")) };
        lines.push((
            "hardware",
            format!(
                "{}, {} cores, {:.1} GiB, {} torch threads, device {}{gpus}, libtorch {} ({}), {}",
                h.cpu, h.cpu_cores, h.memory_gib, h.torch_threads, h.device, h.libtorch, h.libtorch_build, h.os
            ),
        ));
    }
    if let Some(sweep) = &s.sweep {
        lines.push(("sweep", format!("{}, trial {}", sweep.sweep, sweep.trial)));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &lines {
        outln!("{key:<width$}  {value}");
    }

    match &s.test {
        None => outln!("\ntest: none recorded"),
        Some(test) => {
            let headline: Vec<String> = test.headline().iter().map(|(k, v)| format!("{k} {}", number(*v))).collect();
            outln!("\ntest: {}", headline.join(", "));
            if let EvaluationReport::Classification(report) = test {
                let rows: Vec<Vec<String>> = report
                    .per_class
                    .iter()
                    .map(|c| {
                        vec![
                            c.class.clone(),
                            number(c.precision),
                            number(c.recall),
                            number(c.f1),
                            c.support.to_string(),
                        ]
                    })
                    .collect();
                outln!();
                print_table(&["class", "precision", "recall", "f1", "support"], &rows);
                let names: Vec<String> = report.per_class.iter().map(|c| c.class.clone()).collect();
                if report.confusion_matrix.len() == names.len() && !names.is_empty() {
                    outln!("\nconfusion matrix (rows: true class, columns: predicted)");
                    let mut header = vec![""];
                    header.extend(names.iter().map(String::as_str));
                    let rows: Vec<Vec<String>> = names
                        .iter()
                        .zip(&report.confusion_matrix)
                        .map(|(name, row)| {
                            std::iter::once(name.clone()).chain(row.iter().map(i64::to_string)).collect()
                        })
                        .collect();
                    print_table(&header, &rows);
                }
            }
        }
    }

    outln!();
    let mut stages: Vec<Vec<String>> =
        runs::stages(s).into_iter().map(|(stage, secs)| vec![stage, human_duration(secs)]).collect();
    stages.push(vec!["total".into(), human_duration(details.duration_seconds)]);
    print_table(&["stage", "elapsed"], &stages);

    outln!();
    let plugins: Vec<Vec<String>> = details
        .plugins
        .iter()
        .map(|p| vec![p.kind.to_string(), p.to_string(), p.package.clone().unwrap_or_else(|| "-".into())])
        .collect();
    print_table(&["kind", "plugin", "package"], &plugins);
    Ok(())
}

fn compare(dirs: &[PathBuf], json: bool) -> Result<()> {
    let loaded: Vec<Run> = dirs.iter().map(|d| load(d)).collect::<Result<_>>()?;
    let comparison = compare::compare(&loaded);
    if json {
        print_json(&comparison);
        return Ok(());
    }
    for run in &comparison.runs {
        outln!("{}: {}", run.label, run.path.display());
    }
    let mut header = vec!["parameter"];
    header.extend(comparison.runs.iter().map(|r| r.label.as_str()));
    outln!();
    if comparison.parameters.is_empty() {
        outln!("no parameter differs");
    } else {
        let rows: Vec<Vec<String>> = comparison
            .parameters
            .iter()
            .map(|p| {
                std::iter::once(p.path.clone())
                    .chain(p.values.iter().map(|v| compare::parameter_cell(v.as_ref())))
                    .collect()
            })
            .collect();
        print_table(&header, &rows);
    }
    outln!();
    header[0] = "metric";
    let rows: Vec<Vec<String>> = comparison
        .metrics
        .iter()
        .map(|m| {
            let cells = m.values.iter().map(|v| match (m.metric.as_str(), v) {
                ("duration_seconds", Some(serde_json::Value::Number(n))) => {
                    n.as_f64().map_or_else(|| n.to_string(), human_duration)
                }
                _ => compare::metric_cell(v.as_ref()),
            });
            let name = if m.metric == "duration_seconds" { "duration".to_string() } else { m.metric.clone() };
            std::iter::once(name).chain(cells).collect()
        })
        .collect();
    print_table(&header, &rows);
    Ok(())
}
