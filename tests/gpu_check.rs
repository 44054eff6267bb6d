//! `scripts/gpu-check.sh`, on this machine: `pack` makes a bundle under its size limit whose
//! manifest names every file with its hash; `run` without a GPU runs every check's CPU part,
//! writes its summary, and ends with one line saying there is no GPU.

use std::{path::Path, process::Command};

use gymnos_tests::{read_json, Run};

#[test]
fn the_gpu_check_packs_a_bundle_and_runs_its_cpu_parts_here() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("scripts/gpu-check.sh");
    let bundle = tempfile::tempdir().unwrap();
    let packed = Run::of(Command::new(&script).args(["pack", "--out"]).arg(bundle.path()).output().unwrap());
    packed.ok();
    let manifest = read_json(&bundle.path().join("manifest.json"));
    let size = std::fs::metadata(bundle.path().join("bundle.tar.xz")).unwrap().len();
    assert!(size < 40 << 20, "{size} bytes");
    assert_eq!(manifest["bundle_bytes"], size);
    let files: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for expected in [
        "bin/gymnos-host",
        "bin/gymnos-engine",
        "plugins/libgymnos_cnn.so",
        "data/fashion-mnist/train-images-idx3-ubyte.gz",
    ] {
        assert!(files.contains(&expected), "{expected} not in {files:?}");
    }
    assert!(manifest["files"].as_array().unwrap().iter().all(|f| f["sha256"].as_str().unwrap().len() == 64));

    if Command::new("nvidia-smi").output().is_ok_and(|o| o.status.success()) {
        return; // a machine with a GPU runs the real thing (README, "Checking the CUDA path")
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(&script)
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg("--out")
        .arg(out.path())
        .current_dir(&root)
        .output()
        .unwrap();
    let run = Run::of(run);
    let line = run.one_line_error().to_string();
    assert!(line.starts_with("error: no CUDA GPU on this machine"), "{line}");
    assert!(line.contains("ran the checks' CPU parts only") && !line.contains("failed"), "{line}");
    let summary = read_json(&out.path().join("gpu-check.json"));
    let statuses: Vec<(&str, &str)> = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("cuda", "cpu_only"),
            ("precision", "cpu_only"),
            ("fused_optimizer", "cpu_only"),
            ("resume", "cpu_only"),
            ("benchmark", "skipped"),
            ("data_parallel", "cpu_only"),
            ("sweep", "cpu_only")
        ],
        "{summary}"
    );
    let checks = summary["checks"].as_array().unwrap();
    assert!(checks[5]["nccl_world_of_one"]["refused"].as_str().is_some_and(|r| !r.is_empty()), "{}", checks[5]);
    assert!(checks[2]["max_relative_error"].as_f64().unwrap() <= 2.5e-7);
    assert!(std::fs::read_to_string(out.path().join("gpu-check.txt")).unwrap().lines().count() == 8);
}
