//! What a plugin library was built for, read from its ELF file without loading it: the target,
//! the C++ ABI it calls libtorch with, and whether it needs CUDA's libtorch. `plugins list`
//! flags a library this host's libtorch cannot serve, and a package's manifest records them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The libraries whose presence among a plugin's needs makes it a CUDA build.
const CUDA_LIBRARIES: [&str; 4] = ["libtorch_cuda.so", "libc10_cuda.so", "libcudart.so", "libnccl.so"];

/// A library's build, as its file tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFacts {
    /// e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
    /// Whether it calls libtorch with the C++11 ABI of `std::string` (`_GLIBCXX_USE_CXX11_ABI=1`,
    /// what PyPI's libtorch 2.x uses); `None` when it names no `std::string` at all.
    pub cxx11_abi: Option<bool>,
    /// Whether it needs CUDA's libraries (libtorch_cuda, libc10_cuda, libcudart or NCCL).
    pub cuda: bool,
}

impl BuildFacts {
    /// The facts of an ELF library's bytes; none when they are not an ELF library.
    pub fn of(data: &[u8]) -> Option<BuildFacts> {
        use object::{read::elf::ElfFile64, Object, ObjectSymbol};
        let elf = ElfFile64::<object::Endianness>::parse(data).ok()?;
        let arch = match elf.architecture() {
            object::Architecture::X86_64 => "x86_64",
            object::Architecture::Aarch64 => "aarch64",
            object::Architecture::PowerPc64 => "powerpc64le",
            object::Architecture::Riscv64 => "riscv64gc",
            _ => "unknown",
        };
        let target = format!("{arch}-unknown-linux-gnu");
        // Undefined symbols mangled with `cxx11` take the new ABI's std::string; old-ABI code
        // names `std::string` as `Ss`/`NSt7__cxx11` is absent.
        let (mut new_abi, mut old_abi) = (false, false);
        for symbol in elf.dynamic_symbols().filter(|s| s.is_undefined()) {
            let Ok(name) = symbol.name() else { continue };
            if !name.starts_with("_ZN") && !name.starts_with("_ZNK") {
                continue;
            }
            if name.contains("cxx11") {
                new_abi = true;
            } else if name.contains("Ss") && name.contains("c10") {
                old_abi = true;
            }
        }
        let cxx11_abi = match (new_abi, old_abi) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        };
        let needed = needed_libraries(data).unwrap_or_default();
        let cuda = needed.iter().any(|n| CUDA_LIBRARIES.iter().any(|c| n.starts_with(c)));
        Some(BuildFacts { target, cxx11_abi, cuda })
    }

    /// Why this host's libtorch cannot serve a library of these facts, if it cannot.
    pub fn mismatch(&self, host: &HostLibtorch) -> Option<String> {
        if self.target != host.target {
            return Some(format!(
                "built for {} and this host is {}: build it for {}",
                self.target, host.target, host.target
            ));
        }
        if self.cxx11_abi == Some(!host.cxx11_abi) {
            let (theirs, ours) = match host.cxx11_abi {
                true => ("the old C++ ABI (_GLIBCXX_USE_CXX11_ABI=0)", "the C++11 one"),
                false => ("the C++11 ABI", "the old one (_GLIBCXX_USE_CXX11_ABI=0)"),
            };
            return Some(format!(
                "built with {theirs}, and this host's libtorch uses {ours}: rebuild it against this host's libtorch (LIBTORCH_CXX11_ABI={})",
                u8::from(host.cxx11_abi)
            ));
        }
        if self.cuda && host.cuda == Some(false) {
            return Some(
                "a CUDA build (it needs libtorch_cuda), and this host's libtorch is CPU-only: install its CPU build, or a CUDA libtorch here"
                    .into(),
            );
        }
        None
    }
}

/// The DT_NEEDED entries of an ELF library.
fn needed_libraries(data: &[u8]) -> Option<Vec<String>> {
    dynamic_strings(data, &[object::elf::DT_NEEDED])
}

/// The strings of an ELF file's dynamic entries with one of `tags`.
fn dynamic_strings(data: &[u8], tags: &[u32]) -> Option<Vec<String>> {
    use object::read::elf::{Dyn, FileHeader, SectionHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let section = sections.iter().find(|s| s.sh_type(endian) == object::elf::SHT_DYNAMIC)?;
    let entries = section.dynamic(endian, data).ok()??.0;
    let strings = sections.strings(endian, data, object::SectionIndex(section.sh_link(endian) as usize)).ok()?;
    Some(
        entries
            .iter()
            .filter(|d| tags.contains(&(d.d_tag(endian) as u32)))
            .filter_map(|d| d.string(endian, strings).ok())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    )
}

/// What this host's libtorch is: the target, its C++ ABI and whether it has CUDA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLibtorch {
    pub target: String,
    pub cxx11_abi: bool,
    /// Whether the libtorch the engine runs with has CUDA; `None` when it cannot be told.
    pub cuda: Option<bool>,
}

impl HostLibtorch {
    /// This host: the target it was built for, libtorch's C++11 ABI (the set-up's and PyPI's),
    /// and CUDA when the engine's libtorch folder (its RUNPATH, or `LD_LIBRARY_PATH`) holds
    /// `libtorch_cuda.so`.
    pub fn here() -> Self {
        let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        Self { target, cxx11_abi: crate::compat::LIBTORCH_CXX11_ABI, cuda: engine_libtorch_has_cuda() }
    }

    /// [`HostLibtorch::here`], found once per process.
    pub fn cached() -> &'static HostLibtorch {
        static HERE: std::sync::OnceLock<HostLibtorch> = std::sync::OnceLock::new();
        HERE.get_or_init(HostLibtorch::here)
    }
}

/// Whether the libtorch next to the engine binary has CUDA.
fn engine_libtorch_has_cuda() -> Option<bool> {
    let exe = std::env::current_exe().ok()?;
    let engine = exe.with_file_name("gymnos-engine");
    let data = std::fs::read(&engine).ok()?;
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(runpath(&data).unwrap_or_default().into_iter().map(PathBuf::from));
    let lib = dirs.into_iter().find(|d| d.join("libtorch.so").is_file())?;
    Some(lib.join("libtorch_cuda.so").is_file())
}

/// The RUNPATH (or RPATH) folders of an ELF file.
fn runpath(data: &[u8]) -> Option<Vec<String>> {
    let paths = dynamic_strings(data, &[object::elf::DT_RUNPATH, object::elf::DT_RPATH])?;
    Some(paths.iter().flat_map(|p| p.split(':').map(str::to_string)).collect())
}

/// The facts of the library file at `path`.
pub fn of_file(path: &Path) -> Option<BuildFacts> {
    BuildFacts::of(&std::fs::read(path).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cuda: Option<bool>) -> HostLibtorch {
        HostLibtorch { target: "x86_64-unknown-linux-gnu".into(), cxx11_abi: true, cuda }
    }

    #[test]
    fn mismatches_are_named_with_what_to_do() {
        let fine = BuildFacts { target: "x86_64-unknown-linux-gnu".into(), cxx11_abi: Some(true), cuda: false };
        assert_eq!(fine.mismatch(&host(Some(false))), None);
        let old = BuildFacts { cxx11_abi: Some(false), ..fine.clone() };
        assert!(old.mismatch(&host(None)).unwrap().starts_with("built with the old C++ ABI"));
        let cuda = BuildFacts { cuda: true, ..fine.clone() };
        assert!(cuda.mismatch(&host(Some(false))).unwrap().starts_with("a CUDA build"));
        assert_eq!(cuda.mismatch(&host(Some(true))), None);
        assert_eq!(cuda.mismatch(&host(None)), None, "unknown: not flagged");
        let arm = BuildFacts { target: "aarch64-unknown-linux-gnu".into(), ..fine };
        assert!(arm.mismatch(&host(None)).unwrap().starts_with("built for aarch64-unknown-linux-gnu"));
    }

    #[test]
    fn this_host_s_own_binary_reads_as_an_elf_of_its_target() {
        let exe = std::env::current_exe().unwrap();
        let facts = of_file(&exe).unwrap();
        assert_eq!(facts.target, format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
        assert!(!facts.cuda);
        assert_eq!(BuildFacts::of(b"not an elf"), None);
    }
}
