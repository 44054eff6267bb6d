//! Choosing the device, and describing the machine for the run record.

use anyhow::{bail, Result};
use gymnos_host::{experiment::DeviceSetting, record::Hardware};
use gymnos_plugin_api::DeviceSpec;
use tch::{Cuda, Device};

/// The device a run trains on, as libtorch and as plugins name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub device: Device,
    pub spec: DeviceSpec,
}

/// Resolves `training.device` to a device that exists here.
pub fn select(setting: DeviceSetting) -> Result<Placement> {
    let spec = match setting.spec() {
        None if Cuda::is_available() => DeviceSpec::Cuda(0),
        None => DeviceSpec::Cpu,
        Some(spec) => spec,
    };
    match spec {
        DeviceSpec::Cpu => Ok(Placement { device: Device::Cpu, spec }),
        DeviceSpec::Cuda(i) => {
            let count = Cuda::device_count();
            if (i as i64) >= count {
                bail!("training.device: `{setting}` asks for CUDA device {i}, but CUDA reports {count} device(s) here");
            }
            Ok(Placement { device: Device::Cuda(i as usize), spec })
        }
    }
}

/// The device of local rank `local_rank` of a data-parallel run: `auto` and `cuda` take that
/// rank's GPU (ranks share GPUs round-robin when a node has fewer than its processes), `cpu`
/// stays the CPU, and `cuda:N`, one GPU for every process, is refused.
pub fn select_for_rank(setting: DeviceSetting, local_rank: u32) -> Result<Placement> {
    let cuda = match setting {
        DeviceSetting::Cpu => false,
        DeviceSetting::Auto => Cuda::is_available(),
        DeviceSetting::Cuda(None) => true,
        DeviceSetting::Cuda(Some(_)) => bail!(
            "training.device: `{setting}` names one GPU for every process of a data-parallel run; use `cuda` or `auto` and each process takes the GPU of its local rank"
        ),
    };
    if !cuda {
        return Ok(Placement { device: Device::Cpu, spec: DeviceSpec::Cpu });
    }
    let count = Cuda::device_count();
    if count == 0 {
        bail!("training.device: `{setting}` asks for CUDA, but CUDA reports no device here");
    }
    let index = local_rank as i64 % count;
    if local_rank as i64 >= count {
        tracing::warn!("local rank {local_rank} shares CUDA device {index}: this node has {count} GPU(s)");
    }
    Ok(Placement { device: Device::Cuda(index as usize), spec: DeviceSpec::Cuda(index as u32) })
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
        let setting = gymnos_host::experiment::DeviceSetting::Cuda(Some(count as u32));
        let err = super::select(setting).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "training.device: `cuda:{count}` asks for CUDA device {count}, but CUDA reports {count} device(s) here"
            )
        );
    }
}
