//! Choosing the device, and describing the machine for the run record.

use anyhow::{bail, Result};
use gymnos_host::experiment::parse_device;
use gymnos_host::record::Hardware;
use gymnos_plugin_api::DeviceSpec;
use tch::{Cuda, Device};

/// Resolves `training.device` (already syntax-checked) to a device that exists here.
pub fn select(setting: &str) -> Result<(Device, DeviceSpec)> {
    let spec = match parse_device(setting).map_err(anyhow::Error::msg)? {
        None if Cuda::is_available() => DeviceSpec::Cuda(0),
        None => DeviceSpec::Cpu,
        Some(spec) => spec,
    };
    match spec {
        DeviceSpec::Cpu => Ok((Device::Cpu, spec)),
        DeviceSpec::Cuda(i) => {
            let count = Cuda::device_count();
            if (i as i64) >= count {
                bail!("training.device: `{setting}` asks for CUDA device {i}, but CUDA reports {count} device(s) here");
            }
            Ok((Device::Cuda(i as usize), spec))
        }
    }
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Whether the CPU has bfloat16 instructions (AVX-512 BF16 or AMX), which libtorch's bf16
/// autocast needs to be fast; without them it emulates bfloat16. None when unknown.
pub fn cpu_has_bf16() -> Option<bool> {
    proc_field("/proc/cpuinfo", "flags").map(|flags| has_bf16_flag(&flags))
}

fn has_bf16_flag(flags: &str) -> bool {
    flags.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16")
}

/// GPU names from nvidia-smi, when it is there (libtorch's C API does not expose them).
fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// What this run runs on, for the record.
pub fn probe_hardware(device: Device) -> Hardware {
    let memory_kib: f64 = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0);
    let cuda_available = Cuda::is_available();
    let build = env!("GYMNOS_LIBTORCH_BUILD");
    Hardware {
        cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
        cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        torch_threads: tch::get_num_threads(),
        device: format!("{device:?}"),
        cuda_available,
        cuda_devices: if cuda_available { Cuda::device_count() } else { 0 },
        gpus: if cuda_available { gpu_names() } else { Vec::new() },
        cudnn_available: Cuda::cudnn_is_available(),
        libtorch: env!("GYMNOS_LIBTORCH_VERSION").to_string(),
        libtorch_build: build.split_once('+').map_or("unknown", |(_, tag)| tag).to_string(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_accepts_the_libtorch_this_engine_was_built_with() {
        let built: Vec<&str> = env!("GYMNOS_LIBTORCH_VERSION").split('.').take(2).collect();
        let accepted: Vec<&str> = gymnos_host::compat::LIBTORCH_VERSION.split('.').take(2).collect();
        assert_eq!(built, accepted, "compat::LIBTORCH_VERSION must name the libtorch the set-up installs");
    }

    #[test]
    fn bfloat16_instructions_are_read_from_the_cpu_flags() {
        assert!(super::has_bf16_flag("fpu sse2 avx512f avx512_bf16 avx512_vnni"));
        assert!(super::has_bf16_flag("fpu amx_bf16 amx_tile"));
        assert!(!super::has_bf16_flag("fpu sse2 avx2 avx512f avx512_vnni"));
    }

    #[test]
    fn a_cuda_device_this_machine_lacks_is_refused_naming_the_setting() {
        let count = tch::Cuda::device_count();
        let err = super::select(&format!("cuda:{count}")).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "training.device: `cuda:{count}` asks for CUDA device {count}, but CUDA reports {count} device(s) here"
            )
        );
    }
}
