//! Mixed precision: libtorch's autocast around a forward pass, on the CPU or CUDA, in float16 or
//! bfloat16 (`training.precision`). tch binds CUDA's float16 autocast only, and does nothing
//! without a GPU; csrc/autocast.cpp sets the device type and the dtype.

use std::ffi::{c_char, c_int};

use tch::Device;

use crate::shim;

extern "C" {
    fn gymnos_autocast_enter(
        cuda: c_int,
        bf16: c_int,
        was_enabled: *mut c_int,
        was_dtype: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_autocast_exit(
        cuda: c_int,
        was_enabled: c_int,
        was_dtype: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    #[cfg(test)]
    fn gymnos_autocast_state(
        cuda: c_int,
        enabled: *mut c_int,
        dtype: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The dtype autocast runs eligible operations (matrix products, convolutions) in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowPrecision {
    Float16,
    BFloat16,
}

#[derive(Debug, thiserror::Error)]
#[error("autocast failed: {0}")]
pub struct AutocastError(String);

/// Runs `f` with autocast on for `device`'s type in `dtype`, and restores the previous state
/// afterwards, also when `f` panics.
pub fn autocast<T>(device: Device, dtype: LowPrecision, f: impl FnOnce() -> T) -> Result<T, AutocastError> {
    let mut region = Region::enter(device.is_cuda(), dtype)?;
    let out = f();
    region.close()?;
    Ok(out)
}

/// An open autocast region: what to restore when it closes.
struct Region {
    cuda: c_int,
    was_enabled: c_int,
    was_dtype: c_int,
    open: bool,
}

impl Region {
    fn enter(cuda: bool, dtype: LowPrecision) -> Result<Self, AutocastError> {
        let mut region = Self { cuda: c_int::from(cuda), was_enabled: 0, was_dtype: 0, open: false };
        let bf16 = c_int::from(dtype == LowPrecision::BFloat16);
        // SAFETY: the two out-pointers are fields of `region`, alive and writable for the call;
        // `err` is the buffer `shim::call` provides.
        shim::call(|err, len| unsafe {
            gymnos_autocast_enter(region.cuda, bf16, &mut region.was_enabled, &mut region.was_dtype, err, len)
        })
        .map_err(AutocastError)?;
        region.open = true;
        Ok(region)
    }

    fn close(&mut self) -> Result<(), AutocastError> {
        self.open = false;
        // SAFETY: plain integers in; `err` is the buffer `shim::call` provides.
        shim::call(|err, len| unsafe { gymnos_autocast_exit(self.cuda, self.was_enabled, self.was_dtype, err, len) })
            .map_err(AutocastError)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.open {
            let _ = self.close(); // unwinding already: the panic is the error to report
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn product_kind() -> Kind {
        let a = Tensor::ones([4, 8], (Kind::Float, Device::Cpu));
        a.matmul(&a.tr()).kind()
    }

    #[test]
    fn bfloat16_on_the_cpu_inside_the_region_only() {
        assert_eq!(product_kind(), Kind::Float);
        let inner = autocast(Device::Cpu, LowPrecision::BFloat16, || {
            let outer = product_kind();
            let nested = autocast(Device::Cpu, LowPrecision::BFloat16, product_kind).unwrap();
            (outer, nested, product_kind())
        })
        .unwrap();
        assert_eq!(inner, (Kind::BFloat16, Kind::BFloat16, Kind::BFloat16), "a nested region keeps the outer one on");
        assert_eq!(product_kind(), Kind::Float);
        // Elementwise operations keep float32, and gradients reach float32 weights.
        let w = Tensor::ones([8, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::ones([2, 8], (Kind::Float, Device::Cpu));
        let y = autocast(Device::Cpu, LowPrecision::BFloat16, || x.matmul(&w).relu()).unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        y.to_kind(Kind::Float).sum(Kind::Float).backward();
        assert_eq!(w.grad().kind(), Kind::Float);
        assert!(w.grad().equal(&Tensor::full([8, 3], 2.0, (Kind::Float, Device::Cpu))));
    }

    /// Whether autocast is on for the CPU or CUDA, and its dtype (libtorch's `ScalarType` code).
    fn state(cuda: bool) -> (bool, c_int) {
        let (mut enabled, mut dtype) = (0, 0);
        // SAFETY: two writable integers; `err` is the buffer `shim::call` provides.
        shim::call(|err, len| unsafe { gymnos_autocast_state(c_int::from(cuda), &mut enabled, &mut dtype, err, len) })
            .unwrap();
        (enabled != 0, dtype)
    }

    /// The CUDA path cannot run here without a GPU, but the state it sets can be read: CUDA's
    /// autocast on in the dtype asked for, the CPU's untouched, and both restored after.
    #[test]
    fn a_cuda_region_sets_cudas_state_only() {
        const HALF: c_int = 5;
        const BFLOAT16: c_int = 15;
        let (cpu_before, cuda_before) = (state(false), state(true));
        assert!(!cuda_before.0);
        for (dtype, code) in [(LowPrecision::BFloat16, BFLOAT16), (LowPrecision::Float16, HALF)] {
            let inside = autocast(Device::Cuda(0), dtype, || (state(true), state(false))).unwrap();
            assert_eq!(inside, ((true, code), cpu_before));
            assert_eq!((state(false), state(true)), (cpu_before, cuda_before));
        }
    }

    #[test]
    fn a_panic_inside_closes_the_region() {
        let caught = std::panic::catch_unwind(|| {
            autocast(Device::Cpu, LowPrecision::BFloat16, || panic!("in the forward pass")).unwrap();
        });
        assert!(caught.is_err());
        assert_eq!(product_kind(), Kind::Float);
    }
}
