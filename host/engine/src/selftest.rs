//! Checks of the engine's own device paths, run by `gymnos-engine selftest` (hidden; the CUDA
//! path's check, `scripts/gpu-check.sh`, calls it where a GPU is lent, and the test suite on
//! the CPU): what libtorch sees of the device, the fused optimizer against the reference there,
//! and NCCL's process group for a world of one.

use std::time::Duration;

use serde_json::{json, Value};
use tch::{Cuda, Device, Kind, Tensor};

use crate::{
    distributed::{Backend, C10dError},
    optim::check::{fused_against_reference, Comparison},
};

/// What libtorch sees: CUDA, cuDNN, the build, and whether a tensor made on `device` is there.
pub fn device(device: Device) -> Value {
    let made = std::panic::catch_unwind(|| {
        let t = Tensor::arange(6, (Kind::Float, device)) * 2.0;
        (t.device() == device, t.sum(Kind::Float).double_value(&[]))
    });
    json!({
        "device": format!("{device:?}"),
        "cuda_available": Cuda::is_available(),
        "cuda_devices": Cuda::device_count(),
        "cudnn_available": Cuda::cudnn_is_available(),
        "libtorch": env!("GYMNOS_LIBTORCH_BUILD"),
        "tensor_on_device": made.as_ref().is_ok_and(|(on, sum)| *on && *sum == 30.0),
    })
}

/// The fused optimizer kernels against the per-parameter reference on `device`, 10 steps each.
pub fn fused(device: Device) -> Vec<Comparison> {
    fused_against_reference(device)
}

/// NCCL's process group for a world of one on CUDA device `index`: brought up over a store on a
/// free port, then one all-reduce, checked. Without a GPU libtorch refuses it, and the refusal is
/// the answer.
pub fn nccl(index: usize) -> Value {
    let started = std::time::Instant::now();
    let outcome = (|| -> Result<f64, C10dError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| C10dError(format!("a free port: {e}")))?
            .port();
        let timeout = Duration::from_secs(60);
        let store = crate::distributed::c10d::Store::open("127.0.0.1", port, true, timeout)?;
        let group =
            crate::distributed::c10d::ProcessGroup::new(&store, "selftest/", Backend::Nccl, 0, 1, timeout, index)?;
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(Device::Cuda(index));
        group.all_reduce(&t, crate::distributed::Reduce::Sum)?;
        Ok(t.sum(Kind::Float).double_value(&[]))
    })();
    match outcome {
        Ok(sum) => {
            json!({ "built": crate::distributed::nccl_built(), "reduced": sum == 6.0, "sum": sum, "seconds": started.elapsed().as_secs_f64() })
        }
        Err(e) => {
            json!({ "built": crate::distributed::nccl_built(), "refused": e.0.lines().next().unwrap_or_default() })
        }
    }
}
