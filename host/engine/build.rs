use std::{env, path::Path};

fn main() {
    let torch = gymnos_plugin_build::link_libtorch();
    compile_shim(torch.lib_dir.parent().expect("the libtorch lib folder has a parent"));
}

/// Builds the C ABI over what libtorch has and tch does not bind (csrc/: the fused optimizer
/// kernels, autocast for any device and dtype) against the headers of the libtorch the engine
/// links.
fn compile_shim(root: &Path) {
    const SOURCES: [&str; 2] = ["csrc/fused_optim.cpp", "csrc/autocast.cpp"];
    for file in SOURCES.iter().chain(&["csrc/shim.h"]) {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = root.join("include");
    assert!(
        include.join("ATen/ops/_fused_adamw.h").is_file(),
        "libtorch headers not found under {} (the engine's C++ shim needs them)",
        include.display()
    );
    // Must match the ABI libtorch was built with, or std::string-taking symbols do not link.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .files(SOURCES)
        // As system headers: libtorch's own warnings are not ours to see.
        .flag(format!("-isystem{}", include.display()))
        .flag(format!("-isystem{}", include.join("torch/csrc/api/include").display()))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .opt_level(2)
        .warnings(true)
        .extra_warnings(false)
        .compile("gymnos_engine_shim");
}
