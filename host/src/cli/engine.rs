//! `run`, `resume` and `predict` need libtorch; they are carried out by `gymnos-engine`, which
//! this binary replaces itself with (exec), so that the commands that need no libtorch never
//! pay for loading it. The engine gets the same arguments, and the resolved registry path.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::{Context, Result};

/// The engine binary's name; it is installed next to `gymnos-host`.
pub const ENGINE: &str = "gymnos-engine";

pub fn exec(registry: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating gymnos-host")?;
    let engine = exe.with_file_name(ENGINE);
    if !engine.is_file() {
        anyhow::bail!("{}: the training engine is missing; it must sit next to {}", engine.display(), exe.display());
    }
    let err = Command::new(&engine).arg("--registry").arg(registry).args(std::env::args_os().skip(1)).exec();
    Err(err).with_context(|| format!("{}: cannot start the training engine", engine.display()))
}
