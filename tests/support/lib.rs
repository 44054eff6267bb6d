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

/// The five built-in plugin libraries.
pub fn builtin_libraries() -> Vec<PathBuf> {
    ["gymnos-idx-dataset", "gymnos-standardize", "gymnos-random-flip", "gymnos-mlp", "gymnos-jsonl-tracker"]
        .into_iter()
        .map(library)
        .collect()
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
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        &self.stdout
    }

    /// Asserts a failure reported as exactly one `error: ...` line, and returns that line.
    pub fn one_line_error(&self) -> &str {
        assert_ne!(self.code, 0, "command succeeded: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "a panic reached the user: {}", self.stderr);
        lines[0]
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.path().join("registry.json")
    }

    /// The registry file's bytes (None when absent), to check a failure left it untouched.
    pub fn registry_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.registry()).ok()
    }

    /// Runs `gymnos-host --registry <sandbox>/registry.json ARGS...`.
    pub fn host(&self, args: &[&str]) -> Run {
        let output: Output = Command::new(artifact_dir().join("gymnos-host"))
            .arg("--registry")
            .arg(self.registry())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run gymnos-host");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Installs the built-in plugins.
    pub fn install_builtins(&self) {
        let libs = builtin_libraries();
        let mut args = vec!["plugins", "install"];
        args.extend(libs.iter().map(|p| p.to_str().unwrap()));
        self.host(&args).ok();
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}
