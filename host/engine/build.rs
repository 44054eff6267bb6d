use std::{
    env,
    path::{Path, PathBuf},
};

fn main() {
    let torch = gymnos_plugin_build::link_libtorch();
    let root = torch.lib_dir.parent().expect("the libtorch lib folder has a parent");
    compile_shim(root, &torch.lib_dir);
}

/// Builds the C ABI over what libtorch has and tch does not bind (csrc/: the fused optimizer
/// kernels, autocast for any device and dtype, c10d's store and process groups) against the
/// headers of the libtorch the engine links.
fn compile_shim(root: &Path, lib_dir: &Path) {
    const SOURCES: [&str; 4] =
        ["csrc/fused_optim.cpp", "csrc/autocast.cpp", "csrc/distributed.cpp", "csrc/generator.cpp"];
    for file in SOURCES.iter().chain(&["csrc/shim.h", "csrc/distributed.h", "csrc/nccl.cpp", "csrc/nccl_stub.cpp"]) {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=GYMNOS_GLOO_INCLUDE");
    let include = root.join("include");
    assert!(
        include.join("ATen/ops/_fused_adamw.h").is_file(),
        "libtorch headers not found under {} (the engine's C++ shim needs them)",
        include.display()
    );
    // libtorch's ProcessGroupGloo.hpp includes Gloo's headers, which the wheel does not ship;
    // the symbols are libtorch's own, so the headers alone are needed (Debian's libgloo-dev).
    let gloo = env::var_os("GYMNOS_GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/include"));
    assert!(
        gloo.join("gloo/algorithm.h").is_file(),
        "Gloo's headers are not under {} (c10d's ProcessGroupGloo needs them): install Debian's libgloo-dev (scripts/setup.sh does), or set GYMNOS_GLOO_INCLUDE",
        gloo.display()
    );
    // Must match the ABI libtorch was built with, or std::string-taking symbols do not link.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let build = || {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            // As system headers: libtorch's own warnings are not ours to see.
            .flag(format!("-isystem{}", include.display()))
            .flag(format!("-isystem{}", include.join("torch/csrc/api/include").display()))
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            .define("USE_DISTRIBUTED", None)
            .define("USE_C10D_GLOO", None)
            .opt_level(2)
            .warnings(true)
            .extra_warnings(false);
        // /usr/include is the compiler's own: naming it again would reorder the C library's.
        if gloo != Path::new("/usr/include") {
            build.flag(format!("-isystem{}", gloo.display()));
        }
        build
    };
    let mut shim = build();
    shim.files(SOURCES);
    // NCCL's process group when this libtorch has CUDA and the CUDA, CCCL and NCCL headers of
    // its wheels are there (the set-up installs them); a stub that says so otherwise.
    match cuda_includes(lib_dir) {
        Some(dirs) => {
            let mut nccl = build();
            nccl.define("USE_C10D_NCCL", None).file("csrc/nccl.cpp");
            for dir in dirs {
                nccl.flag(format!("-isystem{}", dir.display()));
            }
            nccl.compile("gymnos_engine_nccl");
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        None => {
            shim.file("csrc/nccl_stub.cpp");
        }
    }
    shim.compile("gymnos_engine_shim");
    // c10d lives in libtorch_cpu, and c10's types in libc10.
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The header folders ProcessGroupNCCL.hpp needs, when this libtorch is a CUDA build and they
/// are all there: the CUDA runtime's, CCCL's and NCCL's, from the `nvidia` wheels beside torch.
fn cuda_includes(lib_dir: &Path) -> Option<Vec<PathBuf>> {
    if !lib_dir.join("libtorch_cuda.so").is_file() {
        return None;
    }
    // <site-packages>/torch -> <site-packages>/nvidia
    let torch_dir = std::fs::canonicalize(lib_dir).ok()?.parent()?.to_path_buf();
    let nvidia = torch_dir.parent()?.join("nvidia");
    let cuda = std::fs::read_dir(&nvidia)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .find(|d| d.join("cuda_runtime_api.h").is_file() && d.join("crt/host_config.h").is_file())?;
    let cccl = [cuda.join("cccl"), cuda.clone()].into_iter().find(|d| d.join("nv/target").is_file())?;
    let nccl = nvidia.join("nccl/include");
    nccl.join("nccl.h").is_file().then(|| vec![cuda.clone(), cccl, nccl])
}
