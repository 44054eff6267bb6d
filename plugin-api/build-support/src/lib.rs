//! Call [`link_libtorch`] from the `build.rs` of every binary or `cdylib` that uses tch.
//!
//! tch's own build script links `libtorch_cpu`/`libtorch` with the linker's default
//! `--as-needed` behaviour on some toolchains, which drops `libtorch.so` and, with it,
//! `libtorch_cuda.so`: CUDA then silently reads as unavailable. This forces the link with
//! `-Wl,--no-as-needed -ltorch` and records an rpath to the libtorch folder, so the artifact
//! finds the one libtorch the whole process must share without `LD_LIBRARY_PATH`
//! (which still overrides it, e.g. to use another machine's torch installation).
//!
//! The libtorch folder is found the way torch-sys finds it: `LIBTORCH_LIB`, else
//! `$LIBTORCH/lib`, else (with `LIBTORCH_USE_PYTORCH`) the `torch/lib` of the active Python.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Where libtorch lives and which version it is.
#[derive(Debug, Clone)]
pub struct Libtorch {
    pub lib_dir: PathBuf,
    /// e.g. `2.11.0` (the local build tag such as `+cu130` stripped).
    pub version: String,
    /// The full version with its build tag, e.g. `2.11.0+cu130`.
    pub build: String,
}

/// Finds libtorch as torch-sys does. Panics with a readable message when it cannot: a build
/// script has no better way to fail.
pub fn find_libtorch() -> Libtorch {
    for var in ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let root = if let Ok(lib) = env::var("LIBTORCH_LIB") {
        PathBuf::from(lib)
    } else if let Ok(root) = env::var("LIBTORCH") {
        PathBuf::from(root)
    } else if env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        python_torch_dir()
    } else {
        panic!(
            "libtorch not found: set LIBTORCH to a libtorch folder (the project's set-up makes \
             .venv/libtorch) or LIBTORCH_USE_PYTORCH=1 with torch==2.11.0 installed"
        );
    };
    let lib_dir = root.join("lib");
    let lib_dir = lib_dir.canonicalize().unwrap_or_else(|e| {
        panic!("libtorch lib folder {} is not readable: {e}; run the set-up first", lib_dir.display())
    });
    let build = read_version(&root).unwrap_or_else(|| {
        panic!("cannot tell the libtorch version under {}: no build-version or version.py", root.display())
    });
    let version = build.split_once('+').map_or(build.as_str(), |(v, _)| v).to_string();
    Libtorch { lib_dir, version, build }
}

/// Emits the link arguments for the package being built (`cargo:rustc-link-arg` applies only
/// to the package whose build script prints it, so each plugin and binary calls this).
/// Also exports `GYMNOS_LIBTORCH_VERSION` (`2.11.0`) and `GYMNOS_LIBTORCH_BUILD`
/// (`2.11.0+cu130`) to the crate's code.
pub fn link_libtorch() -> Libtorch {
    let torch = find_libtorch();
    println!("cargo:rustc-link-search=native={}", torch.lib_dir.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", torch.lib_dir.display());
    export_env(&torch);
    torch
}

/// Exports `GYMNOS_LIBTORCH_VERSION` without linking libtorch: for the host's light binary,
/// which must know the version its plugins need but never load libtorch itself.
pub fn export_libtorch_version() -> Libtorch {
    let torch = find_libtorch();
    export_env(&torch);
    torch
}

fn export_env(torch: &Libtorch) {
    println!("cargo:rustc-env=GYMNOS_LIBTORCH_VERSION={}", torch.version);
    println!("cargo:rustc-env=GYMNOS_LIBTORCH_BUILD={}", torch.build);
}

fn python_torch_dir() -> PathBuf {
    let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let out = Command::new(python)
        .args(["-c", "import torch, os; print(os.path.dirname(torch.__file__))"])
        .output()
        .unwrap_or_else(|e| panic!("running {python} to find torch: {e}"));
    assert!(out.status.success(), "{python} cannot import torch: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Reads libtorch's full version (`2.11.0+cu130`): `build-version` (a libtorch archive, or the
/// project's view of the wheel), else the wheel's `version.py`.
fn read_version(root: &Path) -> Option<String> {
    let raw = std::fs::read_to_string(root.join("build-version")).ok().or_else(|| {
        let text = std::fs::read_to_string(root.join("version.py")).ok()?;
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        Some(line.split(['\'', '"']).nth(1)?.to_string())
    })?;
    Some(raw.trim().to_string())
}
