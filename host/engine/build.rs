use std::{env, path::Path};

fn main() {
    let torch = gymnos_plugin_build::link_libtorch();
    compile_fused_optim(torch.lib_dir.parent().expect("the libtorch lib folder has a parent"));
}

/// Builds csrc/fused_optim.cpp, the C ABI over libtorch's fused optimizer kernels (which tch
/// does not bind), against the headers of the same libtorch the engine links.
fn compile_fused_optim(root: &Path) {
    const SHIM: &str = "csrc/fused_optim.cpp";
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = root.join("include");
    assert!(
        include.join("ATen/ops/_fused_adamw.h").is_file(),
        "libtorch headers not found under {} (the fused optimizer shim needs them)",
        include.display()
    );
    // Must match the ABI libtorch was built with, or std::string-taking symbols do not link.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file(SHIM)
        // As system headers: libtorch's own warnings are not ours to see.
        .flag(format!("-isystem{}", include.display()))
        .flag(format!("-isystem{}", include.join("torch/csrc/api/include").display()))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .opt_level(2)
        .warnings(true)
        .extra_warnings(false)
        .compile("gymnos_fused_optim");
}
