//! Data-parallel training on the CPU through libtorch's c10d (Gloo), end to end: several engine
//! processes started by `run --nproc-per-node N`, by hand with torchrun's variables, and by
//! `srun` on the test Slurm cluster; against one process; a rank killed, hanging or refused;
//! a preemption checkpointed in the middle of an epoch and resumed, by hand and as a requeued
//! Slurm job.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gymnos_tests::{artifact_dir, data_dir, read_json, Run, Sandbox, SlurmCluster};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    sandbox
}

/// The wine table (107 training samples), standardized, an MLP of 16, SGD with momentum.
fn wine(name: &str, epochs: u32, batch_size: u32, dropout: f64) -> Value {
    json!({
        "experiment": { "name": name, "seed": 5 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize", "config": { "per_feature": true } }],
        "model": { "plugin": "mlp", "config": { "hidden": [16], "dropout": dropout } },
        "training": {
            "epochs": epochs, "batch_size": batch_size, "device": "cpu",
            "optimizer": { "name": "sgd", "lr": 0.05, "momentum": 0.9 }
        }
    })
}

/// `gymnos-host run FILE ARGS...` in the sandbox, its one run folder under `root`.
fn run(sandbox: &Sandbox, file: &Path, root: &str, args: &[&str]) -> (Run, Option<PathBuf>) {
    let mut all = vec!["run", file.to_str().unwrap(), "--no-progress", "--output-root", root];
    all.extend_from_slice(args);
    let out = sandbox.host(&all);
    (out, only_run(&sandbox.dir.path().join(root)))
}

/// The one run folder under `root` (none when there is none; the test fails if several).
fn only_run(root: &Path) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flat_map(|experiment| fs::read_dir(experiment.unwrap().path().join("executions")).into_iter().flatten())
        .map(|run| run.unwrap().path())
        .collect();
    assert!(runs.len() <= 1, "{runs:?}");
    runs.pop()
}

/// Reads `model.*` tensors of a safetensors file as float64 values.
fn model_tensors(path: &Path) -> Vec<(String, Vec<f64>)> {
    let bytes = fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f64>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest difference between two models' tensors, relative to each tensor's largest value.
fn relative_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (model_tensors(a), model_tensors(b));
    assert_eq!(a.iter().map(|t| &t.0).collect::<Vec<_>>(), b.iter().map(|t| &t.0).collect::<Vec<_>>());
    a.iter()
        .zip(&b)
        .map(|((_, x), (_, y))| {
            let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max) / scale
        })
        .fold(0.0, f64::max)
}

/// Each rank's "model sha256" log line: rank 0's execution.log and the others' logs/rank-<r>.log.
fn model_hashes(run_dir: &Path, ranks: u32) -> Vec<String> {
    (0..ranks)
        .map(|r| {
            let log = match r {
                0 => run_dir.join("execution.log"),
                _ => run_dir.join(format!("logs/rank-{r}.log")),
            };
            let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            // The last session's (a resumed run logs one per session).
            let line =
                text.lines().rev().find(|l| l.contains(&format!("rank {r}: model sha256 "))).expect("a hash line");
            line.rsplit(' ').next().unwrap().to_string()
        })
        .collect()
}

/// The deterministic part of a record: its per-epoch metrics but the timings, and the test.
fn metrics(run_dir: &Path) -> (Value, Value) {
    let record = read_json(&run_dir.join("metrics.json"));
    let mut history = record["history"].clone();
    for timing in ["epoch_seconds", "train_samples_per_second", "data_wait_seconds"] {
        history.as_object_mut().unwrap().remove(timing);
    }
    (history, record["test"].clone())
}

/// Asserts that two records' numbers agree within `tolerance` relative (exactly when 0).
fn assert_close(a: &Value, b: &Value, tolerance: f64, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= tolerance * x.abs().max(y.abs()), "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tolerance, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, v) in x {
                assert_close(v, &y[k], tolerance, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The engine processes under `parent` (gymnos-host), by the RANK each was given.
fn engine_of_rank(parent: u32, rank: u32) -> Option<u32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid: Option<u32> = stat.rsplit(") ").next().and_then(|rest| rest.split(' ').nth(1)?.parse().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == format!("RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Waits up to `limit` for `ready`.
fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_child(child: Child) -> Run {
    Run::of(child.wait_with_output().unwrap())
}

/// Two and three processes against one, on the same global batches without dropout: after the
/// first step the weights are the same within 1e-6 (only the gradients' summation order differs:
/// a float32 ulp or so); after eight epochs every loss agrees within 1e-5 relative (those ulps,
/// over 40 steps of a well-conditioned problem: measured ~3e-7) and every count exactly. Every
/// rank ends with the same weights, and the record says how the run was spread.
#[test]
fn two_and_three_processes_take_the_steps_of_one() {
    let sandbox = sandbox();
    let mut first = wine("first", 1, 24, 0.0);
    first["training"]["limit_train_batches"] = json!(1);
    let first = sandbox.experiment("first", &first);
    let (one, single) = run(&sandbox, &first, "first-1", &[]);
    one.ok();
    let single = single.unwrap();
    for n in ["2", "3"] {
        let (out, dir) = run(&sandbox, &first, &format!("first-{n}"), &["--nproc-per-node", n]);
        out.ok();
        let dir = dir.expect("one run folder");
        let difference = relative_difference(&single.join("model.safetensors"), &dir.join("model.safetensors"));
        assert!(difference <= 1e-6, "{n} processes: the first step differs by {difference:e}");
    }

    let short = sandbox.experiment("short", &wine("short", 8, 24, 0.0));
    let (one, single) = run(&sandbox, &short, "short-1", &[]);
    one.ok();
    let (history, test) = metrics(&single.unwrap());
    for n in [2u32, 3] {
        let (out, dir) = run(&sandbox, &short, &format!("short-{n}"), &["--nproc-per-node", &n.to_string()]);
        let stdout = out.ok().to_string();
        let dir = dir.unwrap();
        assert_eq!(stdout.lines().next().unwrap(), dir.display().to_string());
        let (h, t) = metrics(&dir);
        assert_close(&h, &history, 1e-5, &format!("{n} processes: history"));
        assert_close(&t, &test, 1e-5, &format!("{n} processes: test"));
        assert_eq!(t["confusion_matrix"], test["confusion_matrix"]);
        let hashes = model_hashes(&dir, n);
        assert!(hashes.iter().all(|h| *h == hashes[0]), "every rank's weights: {hashes:?}");
        let record = read_json(&dir.join("metrics.json"));
        assert_eq!(record["status"], "completed");
        assert_eq!(
            record["distributed"],
            json!({ "world_size": n, "nodes": 1, "backend": "gloo", "hosts": record["distributed"]["hosts"],
                    "launcher": { "kind": "local" }, "world_sizes": [n] })
        );
        assert_eq!(record["distributed"]["hosts"].as_array().unwrap().len(), n as usize);
        assert_eq!(record["data"]["train_samples"], 107);
    }
}

/// torchrun's variables, set by hand for two `run --distributed`: one run, the same as
/// `--nproc-per-node 2` gives, whose record names the launcher.
#[test]
fn torchrun_s_variables_set_by_hand_make_one_run() {
    let sandbox = sandbox();
    let file = sandbox.experiment("hand", &wine("hand", 4, 16, 0.1));
    let (local, local_dir) = run(&sandbox, &file, "local", &["--nproc-per-node", "2"]);
    local.ok();
    let port = free_port().to_string();
    let ranks: Vec<Child> = (0..2)
        .map(|rank| {
            let args = ["run", file.to_str().unwrap(), "--no-progress", "--output-root", "hand", "--distributed"];
            sandbox
                .command(&args)
                .envs([
                    ("RANK", rank.to_string()),
                    ("WORLD_SIZE", "2".into()),
                    ("LOCAL_RANK", rank.to_string()),
                    ("LOCAL_WORLD_SIZE", "2".into()),
                    ("MASTER_ADDR", "127.0.0.1".into()),
                    ("MASTER_PORT", port.clone()),
                    ("OMP_NUM_THREADS", "1".into()),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Run> = ranks.into_iter().map(wait_child).collect();
    let dir = only_run(&sandbox.dir.path().join("hand")).expect("one run folder");
    assert_eq!(outs[0].ok().lines().next().unwrap(), dir.display().to_string());
    assert_eq!(outs[1].ok(), "", "the other rank prints nothing");
    assert_eq!(metrics(&dir), metrics(&local_dir.unwrap()));
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!(record["distributed"]["launcher"], json!({ "kind": "torchrun" }));
    assert_eq!(record["distributed"]["world_size"], 2);
}

/// `srun -n 2` on the test Slurm cluster: Slurm's variables make the same run as two local
/// processes; the record names the job.
#[test]
fn srun_starts_the_ranks_of_one_run_on_the_test_cluster() {
    let sandbox = sandbox();
    let file = sandbox.experiment("srun", &wine("srun", 4, 16, 0.1));
    let (local, local_dir) = run(&sandbox, &file, "local", &["--nproc-per-node", "2"]);
    local.ok();
    let cluster = SlurmCluster::start();
    let host = artifact_dir().join("gymnos-host");
    let out = Command::new("srun")
        .args(["-n", "2", "--kill-on-bad-exit=1", "--export=ALL"])
        .arg(&host)
        .arg("--registry")
        .arg(sandbox.registry())
        .args(["run", file.to_str().unwrap(), "--no-progress", "--output-root", "cluster", "--distributed"])
        .env("SLURM_CONF", &cluster.conf)
        .env("OMP_NUM_THREADS", "1")
        .env("MASTER_PORT", free_port().to_string())
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    let out = Run::of(out);
    out.ok();
    let dir = only_run(&sandbox.dir.path().join("cluster")).expect("one run folder");
    assert_eq!(metrics(&dir), metrics(&local_dir.unwrap()));
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!(record["distributed"]["launcher"]["kind"], "slurm");
    assert!(record["distributed"]["launcher"]["job_id"].as_str().is_some_and(|id| !id.is_empty()), "{record}");
}

/// `kill -9` of rank 1 in the middle of an epoch: every rank stops, the user reads one line
/// naming rank 1 and the signal, the record says failed and why, and `resume` on one process
/// finishes the run from its last checkpoint.
#[test]
fn a_killed_rank_stops_every_rank_and_the_run_resumes_on_one_process() {
    let sandbox = sandbox();
    let file = sandbox.experiment("killed", &wine("killed", 400, 4, 0.0));
    let args = ["run", file.to_str().unwrap(), "--no-progress", "--output-root", "runs", "--nproc-per-node", "2"];
    let child = sandbox.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let host = child.id();
    let root = sandbox.dir.path().join("runs");
    let checkpointed = wait_for(Duration::from_secs(60), || {
        only_run(&root).is_some_and(|d| d.join("checkpoints/last.safetensors").is_file())
    });
    assert!(checkpointed, "no checkpoint");
    let rank1 = engine_of_rank(host, 1).expect("rank 1's engine");
    let killed_at = Instant::now();
    assert!(Command::new("kill").args(["-9", &rank1.to_string()]).status().unwrap().success());
    let out = wait_child(child);
    assert!(killed_at.elapsed() < Duration::from_secs(30), "every rank stopped within the grace period");
    let dir = only_run(&root).unwrap();
    let line = out.one_line_error().to_string();
    assert_eq!(
        line,
        format!(
            "error: run {}: rank 1 died of signal 9 (SIGKILL, killed (perhaps by the out-of-memory killer)); the run is recorded as failed; continue from its last checkpoint with `gymnos-host resume {}`",
            dir.display(),
            dir.display()
        )
    );
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"], "rank 1 died of signal 9 (SIGKILL, killed (perhaps by the out-of-memory killer))");
    let resumed = sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress"]);
    resumed.ok();
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!((record["status"].as_str(), record["epochs_completed"].as_u64()), (Some("completed"), Some(400)));
    assert_eq!(record["distributed"]["world_sizes"], json!([2, 1]));
}

/// A rank that stops answering (SIGSTOP) makes rank 0's next collective time out after
/// `--dist-timeout`: rank 0 names it, and the supervisor ends the run within a bounded time.
#[test]
fn a_hanging_rank_is_named_and_the_run_ends_within_the_timeout() {
    let sandbox = sandbox();
    let file = sandbox.experiment("hang", &wine("hang", 400, 4, 0.0));
    let args = [
        "run",
        file.to_str().unwrap(),
        "--no-progress",
        "--output-root",
        "runs",
        "--nproc-per-node",
        "2",
        "--dist-timeout",
        "4",
    ];
    let child = sandbox.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let root = sandbox.dir.path().join("runs");
    assert!(wait_for(Duration::from_secs(60), || only_run(&root)
        .is_some_and(|d| d.join("checkpoints/last.safetensors").is_file())));
    let rank1 = engine_of_rank(child.id(), 1).expect("rank 1's engine");
    let stopped_at = Instant::now();
    assert!(Command::new("kill").args(["-STOP", &rank1.to_string()]).status().unwrap().success());
    let out = wait_child(child);
    assert!(stopped_at.elapsed() < Duration::from_secs(45), "ended after {:?}", stopped_at.elapsed());
    let line = out.one_line_error().to_string();
    assert!(line.contains("rank 1 (") && line.contains("no heartbeat"), "{line}");
    let record = read_json(&only_run(&root).unwrap().join("metrics.json"));
    assert_eq!(record["status"], "failed");
    assert!(record["error"].as_str().unwrap().contains("rank 1 ("), "{record}");
}

/// A rank that resolved another experiment (here another `--set`) is refused at the start,
/// named by every rank; a batch the ranks cannot share equally, and NCCL on the CPU, are refused
/// too; none leaves a run folder.
#[test]
fn ranks_that_cannot_train_together_are_refused_before_any_folder_exists() {
    let sandbox = sandbox();
    let file = sandbox.experiment("refused", &wine("refused", 2, 16, 0.0));
    let port = free_port().to_string();
    let ranks: Vec<Child> = (0..2)
        .map(|rank| {
            let mut args =
                vec!["run", file.to_str().unwrap(), "--no-progress", "--output-root", "runs", "--distributed"];
            if rank == 1 {
                args.extend(["--set", "training.epochs=3"]);
            }
            sandbox
                .command(&args)
                .envs([("RANK", rank.to_string()), ("WORLD_SIZE", "2".into()), ("MASTER_PORT", port.clone())])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for out in ranks.into_iter().map(wait_child) {
        let line = out.one_line_error().to_string();
        assert!(
            line.starts_with("error: rank 1 (")
                && line.contains("resolved another run than rank 0")
                && line.contains("the experiment's settings differ"),
            "{line}"
        );
    }
    let uneven = sandbox.host(&["run", file.to_str().unwrap(), "--output-root", "runs", "--nproc-per-node", "3"]);
    assert_eq!(
        uneven.one_line_error(),
        "error: training.batch_size: 16 is the global batch, which the 3 processes share equally: give a multiple of 3"
    );
    let nccl = sandbox.host(&[
        "run",
        file.to_str().unwrap(),
        "--output-root",
        "runs",
        "--nproc-per-node",
        "2",
        "--dist-backend",
        "nccl",
    ]);
    assert_eq!(
        nccl.one_line_error(),
        "error: --dist-backend nccl reduces CUDA tensors, and this run trains on the CPU (use gloo)"
    );
    assert!(only_run(&sandbox.dir.path().join("runs")).is_none());
}

/// SIGUSR1 (what Slurm sends ahead of a preemption or the time limit) checkpoints two ranks in
/// the middle of an epoch, with their random generators: the run exits with 75 and, resumed on
/// two processes, ends exactly as the uninterrupted run (dropout included). The same run under
/// Slurm's variables, requeued (`SLURM_RESTART_COUNT`), continues its own folder by itself.
#[test]
fn a_preempted_run_checkpoints_mid_epoch_and_resumes_to_the_uninterrupted_result() {
    let sandbox = sandbox();
    let file = sandbox.experiment("pre", &wine("pre", 300, 8, 0.2));
    let two = ["--nproc-per-node", "2"];
    let (straight, straight_dir) = run(&sandbox, &file, "straight", &two);
    straight.ok();
    let straight_dir = straight_dir.unwrap();

    let args = ["run", file.to_str().unwrap(), "--no-progress", "--output-root", "pre", "--nproc-per-node", "2"];
    let child = sandbox.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let root = sandbox.dir.path().join("pre");
    assert!(wait_for(Duration::from_secs(60), || only_run(&root)
        .is_some_and(|d| d.join("checkpoints/last.safetensors").is_file())));
    assert!(Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
    let out = wait_child(child);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let dir = only_run(&root).unwrap();
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!(record["status"], "preempted");
    let error = record["error"].as_str().unwrap();
    assert!(error.starts_with("preempted at epoch ") && error.contains("checkpointed there"), "{error}");
    let resumed = sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress", "--nproc-per-node", "2"]);
    resumed.ok();
    assert_eq!(metrics(&dir), metrics(&straight_dir));
    assert_eq!(model_hashes(&dir, 2), model_hashes(&straight_dir, 2));

    // As a Slurm job of one task: preempted, then requeued with the same command line.
    let (single, single_dir) = run(&sandbox, &file, "single", &[]);
    single.ok();
    let slurm = |restarts: &str| {
        let args = ["run", file.to_str().unwrap(), "--no-progress", "--output-root", "slurm", "--distributed"];
        let mut command = sandbox.command(&args);
        command.envs([
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_JOB_ID", "4321"),
            ("SLURM_RESTART_COUNT", restarts),
            ("SLURM_JOB_NODELIST", "localhost"),
        ]);
        command.env("MASTER_PORT", free_port().to_string()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };
    let child = slurm("0").spawn().unwrap();
    let root = sandbox.dir.path().join("slurm");
    assert!(wait_for(Duration::from_secs(60), || only_run(&root)
        .is_some_and(|d| d.join("checkpoints/last.safetensors").is_file())));
    assert!(Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(wait_child(child).code, 75);
    let requeued = Run::of(slurm("1").output().unwrap());
    requeued.ok();
    let dir = only_run(&root).expect("the requeued job continued the same folder");
    let record = read_json(&dir.join("metrics.json"));
    assert_eq!(record["status"], "completed");
    assert_eq!(record["distributed"]["launcher"], json!({ "kind": "slurm", "job_id": "4321", "restart_count": 1 }));
    assert_eq!(record["resumed_at_epochs"].as_array().unwrap().len(), 1);
    assert_eq!(metrics(&dir), metrics(&single_dir.unwrap()), "a world of one through the data-parallel path");
}
