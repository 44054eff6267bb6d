//! Helpers for the end-to-end tests: where the built artifacts are, and running the CLI
//! against a registry in a temporary folder.
//!
//! The test command (`scripts/test.sh`) builds the whole workspace, fixtures included, before
//! running the tests, so every library named here exists.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// `target/<profile>/`, where cargo put the binaries and plugin libraries.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// The `.so` built from the workspace crate `crate_name`.
pub fn library(crate_name: &str) -> PathBuf {
    let path = artifact_dir().join(format!("lib{}.so", crate_name.replace('-', "_")));
    assert!(path.is_file(), "{} is missing: build the workspace first (scripts/test.sh does)", path.display());
    path
}

/// The built-in plugin libraries.
pub fn builtin_libraries() -> Vec<PathBuf> {
    BUILTIN_CRATES.iter().copied().map(library).collect()
}

/// The built-in plugins' crates (`gymnos_host::builtin::PACKAGES`).
pub const BUILTIN_CRATES: &[&str] = gymnos_host::builtin::PACKAGES;

/// How many libraries `install_builtins` installs: one per built-in crate.
pub fn builtin_library_count() -> usize {
    BUILTIN_CRATES.len()
}

/// How many components (plugins, as `plugins list` counts them) `install_builtins` installs:
/// those the repository's `registry.json` declares, which the set-up writes from the built-ins.
pub fn builtin_count() -> usize {
    builtin_names().len()
}

/// The names of the built-in components, sorted (as the repository's `registry.json` declares).
pub fn builtin_names() -> Vec<String> {
    let declared = read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry.json"));
    let components = declared["components"].as_array().expect("registry.json declares components");
    let mut names: Vec<String> = components.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

/// The experiment most end-to-end tests train: scikit-learn's wine table (178 × 13, 3
/// classes), standardized per feature, an MLP of 16 with dropout, 8 epochs of Adam on the CPU,
/// recorded by the `jsonl` tracker. Tests change what they are about.
pub fn wine_experiment(name: &str) -> serde_json::Value {
    serde_json::json!({
        "experiment": { "name": name, "seed": 5 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize", "config": { "per_feature": true } }],
        "model": { "plugin": "mlp@^1", "config": { "hidden": [16], "dropout": 0.1 } },
        "training": { "epochs": 8, "batch_size": 16, "optimizer": { "name": "adam", "lr": 0.01 }, "device": "cpu" },
        "tracking": { "trackers": [{ "plugin": "jsonl" }] }
    })
}

/// `exp` with `value` set at `path`: dotted (`training.optimizer.lr`, `preprocessors.0.config`)
/// or a JSON pointer (`/training/optimizer/lr`). The parent must exist; the last key is added to
/// an object or replaces an item of a list.
pub fn with(mut exp: serde_json::Value, path: &str, value: serde_json::Value) -> serde_json::Value {
    let pointer = if path.starts_with('/') { path.to_string() } else { format!("/{}", path.replace('.', "/")) };
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match exp.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent} to set {path} in")) {
        serde_json::Value::Object(map) => drop(map.insert(key.to_string(), value)),
        serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("{parent} is {other}, not an object or a list"),
    }
    exp
}

/// The project's Python (`.venv`, made by the set-up: torch, TensorBoard's reader, MLflow).
pub fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh", python.display());
    python
}

/// A JSON file's value; the test fails naming the file when it cannot be read or parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The repository's `data/` folder, filled by the set-up (Fashion-MNIST, scikit-learn tables).
pub fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let dir = dir.canonicalize().unwrap_or(dir);
    assert!(dir.join("fashion-mnist").is_dir(), "{} lacks the set-up's data: run scripts/setup.sh", dir.display());
    dir
}

/// A registry in its own temporary folder.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What a CLI run printed, and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        &self.stdout
    }

    /// Asserts a failure reported as one `error: ...` line, the last of stderr (training
    /// commands log their stages before it), and returns that line.
    pub fn one_line_error(&self) -> &str {
        assert_ne!(self.code, 0, "command succeeded: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "expected one error line, got: {}", self.stderr);
        let last = lines.last().copied().unwrap_or_default();
        assert!(last.starts_with("error: "), "the error must be the last line: {}", self.stderr);
        assert!(
            !self.stderr.contains("stack backtrace") && !self.stderr.contains("' panicked at "),
            "a panic reached the user: {}",
            self.stderr
        );
        assert!(!last.contains("Exception raised from"), "a libtorch backtrace reached the user: {last}");
        last
    }
}

impl Sandbox {
    /// A sandbox with an empty registry.
    pub fn new() -> Self {
        let sandbox = Self::without_registry();
        sandbox.host(&["plugins", "init", "--no-builtins", sandbox.dir.path().to_str().unwrap()]).ok();
        sandbox
    }

    /// A sandbox whose registry does not exist yet.
    pub fn without_registry() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.path().join("registry.json")
    }

    /// The registry file's bytes (None when absent), to check a failure left it untouched.
    pub fn registry_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.registry()).ok()
    }

    /// `gymnos-host --registry <sandbox>/registry.json ARGS...`, run in the sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(artifact_dir().join("gymnos-host"));
        command.arg("--registry").arg(self.registry()).args(args).current_dir(self.dir.path());
        command
    }

    /// Runs `gymnos-host --registry <sandbox>/registry.json ARGS...`.
    pub fn host(&self, args: &[&str]) -> Run {
        Run::of(self.command(args).output().expect("run gymnos-host"))
    }

    /// Runs the command with its standard output a pipe whose reader has already gone, as in
    /// `gymnos-host ... | head -0`: every write fails with EPIPE.
    pub fn host_into_closed_pipe(&self, args: &[&str]) -> Run {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = self.command(args).stdout(writer).output().expect("run gymnos-host");
        Run::of(output)
    }

    /// Writes `experiment` as `<name>.json` in the sandbox and returns its path.
    pub fn experiment(&self, name: &str, experiment: &serde_json::Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(experiment).unwrap()).unwrap();
        path
    }

    /// The run folders recorded for experiment `name` under the sandbox's `trainings/`.
    pub fn runs(&self, name: &str) -> Vec<PathBuf> {
        let dir = self.dir.path().join("trainings").join(name).join("executions");
        let mut runs: Vec<PathBuf> =
            std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        runs.sort();
        runs
    }

    /// Installs the built-in plugins.
    pub fn install_builtins(&self) {
        self.host(&["plugins", "install", "--builtins"]).ok();
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// A private single-node Slurm cluster from Debian's packages (tests/support/slurm_cluster.sh),
/// stopped when dropped.
pub struct SlurmCluster {
    pub dir: tempfile::TempDir,
    /// `SLURM_CONF` for the cluster's commands.
    pub conf: PathBuf,
}

impl SlurmCluster {
    pub fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/slurm_cluster.sh");
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash").arg(&script).arg("start").arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "the test Slurm cluster did not start (scripts/setup.sh installs slurm-wlm and munge): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = dir.path().join("slurm.conf");
        SlurmCluster { dir, conf }
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/slurm_cluster.sh");
        let _ = std::process::Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).status();
    }
}
