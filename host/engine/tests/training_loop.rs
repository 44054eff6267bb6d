//! The training loop through the library, in this process: a tiny model on generated data,
//! with an observer that records every event it sees. Ends of every kind (completed, stopped by
//! a callback, paused, interrupted) and a resumed run are checked by what the observers saw.
//!
//! The plugin libraries are the workspace's own (`synthetic`, `linear`, `mlp`), built into
//! `target/<profile>/` by the test command before the tests run.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::Result;
use gymnos_engine::{
    checkpoint::Checkpoint,
    observers::{Checkpointer, PauseAfter, RecordWriter},
    Event, Flow, Observer, Observers, Outcome, Session,
};
use gymnos_host::{experiment, record::RunSummary, HostCompat, PluginManager, Registry};
use serde_json::{json, Value};

/// libtorch's random generator belongs to the process, and each run reseeds it: the tests of
/// this file train one at a time.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// `target/<profile>/`, where cargo put the plugin libraries.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// A registry in `dir` with the plugins these tests train.
fn manager(dir: &Path) -> PluginManager {
    let registry = Registry::init(&dir.join("registry.json")).unwrap();
    let mut manager = PluginManager::new(registry, HostCompat::default());
    let libraries: Vec<PathBuf> = ["gymnos-synthetic", "gymnos-linear", "gymnos-mlp"]
        .iter()
        .map(|p| artifacts().join(gymnos_host::builtin::library_file(p)))
        .collect();
    for library in &libraries {
        assert!(library.is_file(), "{} is missing: build the workspace first", library.display());
    }
    manager.install(&libraries, false).unwrap();
    manager
}

/// 200 generated samples of 6 features in 3 classes, split 120/40/40, trained for `epochs`
/// epochs of 8 batches (batch 15) by a linear model with SGD.
fn experiment(epochs: u32, training: Value) -> Value {
    let mut exp = json!({
        "experiment": { "name": "loop", "seed": 11 },
        "dataset": {
            "plugin": "synthetic",
            "config": { "samples": 200, "shape": [6], "classes": 3, "noise": 0.8, "seed": 4 },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "model": { "plugin": "linear" },
        "training": {
            "epochs": epochs, "batch_size": 15, "device": "cpu", "num_workers": 1,
            "optimizer": { "name": "sgd", "lr": 0.05, "momentum": 0.9 }
        }
    });
    for (k, v) in training.as_object().unwrap() {
        exp["training"][k] = v.clone();
    }
    exp
}

/// What the recorder saw, one line per event.
type Seen = Rc<RefCell<Vec<String>>>;

/// Records every event; answers `answer(event line)` for the flow.
struct Recorder {
    seen: Seen,
    answer: Box<dyn Fn(&str) -> Flow>,
}

impl Recorder {
    fn new(seen: &Seen) -> Self {
        Self { seen: seen.clone(), answer: Box::new(|_| Flow::Continue) }
    }

    fn answering(seen: &Seen, answer: impl Fn(&str) -> Flow + 'static) -> Self {
        Self { seen: seen.clone(), answer: Box::new(answer) }
    }
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        let line = match event {
            Event::RunStarted(start) => {
                format!("run started: {} epochs, resumed {:?}", start.epochs, start.resumed.as_ref().map(|r| r.epoch))
            }
            Event::EpochStarted { epoch, batches, lr } => format!("epoch {epoch} started: {batches} batches, lr {lr}"),
            Event::StepEnded(step) => format!(
                "step {}.{} (global {}): {} samples, loss {:.12}",
                step.epoch,
                step.step,
                step.global_step,
                step.samples,
                step.loss.expect("read on the CPU")
            ),
            Event::EpochEnded(end) => format!(
                "epoch {} ended: train_loss {:.12}, val_loss {:.12}, stop {:?}",
                end.epoch, end.metrics["train_loss"], end.metrics["val_loss"], end.stop
            ),
            Event::CheckpointDue(due) => format!("checkpoint {:?} at {}", due.slot, due.epoch),
            Event::TrainingEnded => "training ended".into(),
            Event::TestEnded(report) => format!("test: accuracy {:.6}", report.get("accuracy").unwrap()),
            Event::DatasetNotes { .. } => "notes".into(),
            Event::ModelReady(model) => format!("model ready: {} tensors", model.tensors.len()),
            Event::StageEnded { stage, .. } => format!("stage {stage} ended"),
            Event::Warning(w) => format!("warning {w}"),
            Event::RunEnded(outcome) => format!("run ended: {outcome:?}"),
        };
        let flow = (self.answer)(&line);
        self.seen.borrow_mut().push(line);
        Ok(flow)
    }
}

/// Trains `exp` with `observers` (a fresh run, or from `checkpoint`).
fn train(
    manager: &PluginManager,
    dir: &Path,
    exp: &Value,
    checkpoint: Option<Checkpoint>,
    mut observers: Observers,
) -> Outcome {
    let file = dir.join("loop.json");
    std::fs::write(&file, exp.to_string()).unwrap();
    let loaded = experiment::load(&file, &[]).unwrap();
    let resolved = experiment::validate(&file, &loaded, &manager.registry, &manager.compat).unwrap();
    let session = Session::new(manager, resolved).unwrap();
    let prepared = session.prepare(checkpoint).unwrap();
    session.train(prepared, &mut observers)
}

fn lines<'a>(seen: &'a [String], prefix: &str) -> Vec<&'a String> {
    seen.iter().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn a_completed_run_emits_every_event_in_run_order_with_consistent_values() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path());
    let seen = Seen::default();
    let outcome =
        train(&manager, dir.path(), &experiment(3, json!({})), None, Observers::new().with(Recorder::new(&seen)));
    assert!(matches!(outcome, Outcome::Completed), "{outcome:?}");
    let seen = seen.borrow();
    assert_eq!(seen[0], "run started: 3 epochs, resumed None");
    assert_eq!(seen.last().unwrap(), "run ended: Completed");
    // 120 training samples in batches of 15: 8 steps an epoch, global steps 1..=24.
    let steps = lines(&seen, "step ");
    assert_eq!(steps.len(), 24);
    for (i, step) in steps.iter().enumerate() {
        assert!(step.starts_with(&format!("step {}.{} (global {}): 15 samples", i / 8, i % 8, i + 1)), "{step}");
    }
    assert_eq!(lines(&seen, "epoch 0 started"), ["epoch 0 started: 8 batches, lr 0.05"]);
    // Around the steps (and the best checkpoints, which depend on the values): every epoch's
    // start, its last checkpoint (every epoch), its end; then the test, the model, the stages.
    let order: Vec<&str> = seen
        .iter()
        .filter(|l| !l.starts_with("step ") && !l.starts_with("checkpoint Best"))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "run started",
            "epoch 0 started",
            "checkpoint Last at 1",
            "epoch 1 ended",
            "epoch 1 started",
            "checkpoint Last at 2",
            "epoch 2 ended",
            "epoch 2 started",
            "checkpoint Last at 3",
            "epoch 3 ended",
            "training ended",
            "stage train ended",
            "test",
            "stage test ended",
            "model ready",
            "stage save_model ended",
            "run ended"
        ]
    );
    assert!(!lines(&seen, "checkpoint Best").is_empty());
    // The epoch's training loss is the mean of its steps' losses (all batches the same size).
    let ends = lines(&seen, "epoch 1 ended");
    let train_loss: f64 = ends[0].split("train_loss ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let mean: f64 =
        steps[..8].iter().map(|s| s.rsplit("loss ").next().unwrap().parse::<f64>().unwrap()).sum::<f64>() / 8.0;
    assert!((train_loss - mean).abs() < 1e-9, "{train_loss} vs {mean}");
    assert!(lines(&seen, "test: accuracy").len() == 1);
}

#[test]
fn a_callback_stops_early_and_the_test_still_runs() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path());
    let seen = Seen::default();
    // No improvement is ever large enough: the monitor goes stale at epoch 2, patience 1.
    let stopping =
        json!({ "callbacks": { "early_stopping": { "monitor": "val_loss", "patience": 1, "min_delta": 1e9 } } });
    let outcome =
        train(&manager, dir.path(), &experiment(6, stopping), None, Observers::new().with(Recorder::new(&seen)));
    let Outcome::Stopped { reason } = &outcome else { panic!("{outcome:?}") };
    assert!(reason.starts_with("early stopping: val_loss did not improve for 1 epochs"), "{reason}");
    let seen = seen.borrow();
    assert_eq!(lines(&seen, "epoch ").iter().filter(|l| l.contains("ended")).count(), 2);
    assert_eq!(lines(&seen, "checkpoint Last at 2").len(), 1, "the last epoch is checkpointed");
    assert_eq!(lines(&seen, "test: accuracy").len(), 1);
    assert!(seen.last().unwrap().starts_with("run ended: Stopped"));
}

#[test]
fn an_observer_interrupts_after_its_step_and_the_test_does_not_run() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path());
    let seen = Seen::default();
    let stop_at = |line: &str| if line.starts_with("step 1.2 ") { Flow::Interrupt } else { Flow::Continue };
    let observers = Observers::new().with(Recorder::answering(&seen, stop_at));
    let outcome = train(&manager, dir.path(), &experiment(3, json!({})), None, observers);
    assert!(matches!(outcome, Outcome::Interrupted { epoch: 2, step: 3 }), "{outcome:?}");
    let seen = seen.borrow();
    assert_eq!(lines(&seen, "step ").len(), 8 + 3);
    assert!(lines(&seen, "epoch 2 ended").is_empty() && lines(&seen, "test").is_empty());
    assert_eq!(
        seen[seen.len() - 3..],
        ["training ended", "stage train ended", "run ended: Interrupted { epoch: 2, step: 3 }"]
    );
}

#[test]
fn a_paused_run_resumed_from_its_checkpoint_ends_as_the_straight_run() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path());
    // mlp with dropout: libtorch's generator is part of what resuming must get right.
    let mut exp = experiment(4, json!({}));
    exp["model"] = json!({ "plugin": "mlp", "config": { "hidden": [8], "dropout": 0.2 } });
    let straight_dir = dir.path().join("straight");
    let paused_dir = dir.path().join("paused");
    for d in [&straight_dir, &paused_dir] {
        std::fs::create_dir_all(d.join("checkpoints")).unwrap();
    }
    let record = |d: &PathBuf| RecordWriter::fresh(d.clone(), None);
    let straight = train(
        &manager,
        dir.path(),
        &exp,
        None,
        Observers::new().with(record(&straight_dir)).with(Checkpointer::new(straight_dir.clone())),
    );
    assert!(matches!(straight, Outcome::Completed), "{straight:?}");

    let seen = Seen::default();
    let paused = train(
        &manager,
        dir.path(),
        &exp,
        None,
        Observers::new()
            .with(record(&paused_dir))
            .with(Checkpointer::new(paused_dir.clone()))
            .with(Recorder::new(&seen))
            .with(PauseAfter(2)),
    );
    assert!(matches!(paused, Outcome::Paused { epoch: 2 }), "{paused:?}");
    assert_eq!(RunSummary::load(&paused_dir).unwrap().status.name(), "paused");
    assert!(lines(&seen.borrow(), "test").is_empty());

    let checkpoint = Checkpoint::load(&paused_dir.join("checkpoints/last.safetensors")).unwrap();
    let seen = Seen::default();
    let resumed = train(
        &manager,
        dir.path(),
        &exp,
        Some(checkpoint),
        Observers::new()
            .with(RecordWriter::resumed(paused_dir.clone()).unwrap())
            .with(Checkpointer::new(paused_dir.clone()))
            .with(Recorder::new(&seen)),
    );
    assert!(matches!(resumed, Outcome::Completed), "{resumed:?}");
    assert_eq!(seen.borrow()[0], "run started: 4 epochs, resumed Some(2)");
    assert_eq!(lines(&seen.borrow(), "epoch 2 started").len(), 1);
    let (a, b) = (RunSummary::load(&straight_dir).unwrap(), RunSummary::load(&paused_dir).unwrap());
    let deterministic = |s: &RunSummary| {
        let mut h = s.history.clone();
        for timing in ["epoch_seconds", "train_samples_per_second", "data_wait_seconds"] {
            h.remove(timing);
        }
        (h, s.test.clone(), s.epochs_completed)
    };
    assert_eq!(deterministic(&a), deterministic(&b));
    assert_eq!(b.resumed_at_epochs, [2]);
    let model = |d: &PathBuf| gymnos_engine::checkpoint::load_tensors(&d.join("model.safetensors")).unwrap();
    for ((na, ta), (nb, tb)) in model(&straight_dir).iter().zip(&model(&paused_dir)) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resuming");
    }
}
