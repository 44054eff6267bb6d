//! libtorch's random generators' states (`csrc/generator.cpp`): what a checkpoint taken in the
//! middle of an epoch saves, so that the rest of the epoch draws (dropout) what the uninterrupted
//! run would have. tch binds only seeding (`tch::manual_seed`).

use std::ffi::{c_char, c_int};

use tch::{Device, Tensor};

use crate::shim::{self, AtTensor};

extern "C" {
    fn gymnos_generator_state(
        cuda: c_int,
        index: c_int,
        out: *mut *mut std::ffi::c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_set_generator_state(
        cuda: c_int,
        index: c_int,
        state: AtTensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

fn of(device: Device) -> (c_int, c_int) {
    match device {
        Device::Cuda(i) => (1, i as c_int),
        _ => (0, 0),
    }
}

/// The state of `device`'s default generator (the CPU's for any other device), a uint8 tensor.
pub fn state(device: Device) -> Result<Tensor, String> {
    let (cuda, index) = of(device);
    let mut out: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `out` receives a heap `at::Tensor*` that the shim allocated with `new`; tch's
    // `Tensor` wraps exactly such a pointer and deletes it on drop.
    shim::call(|err, len| unsafe { gymnos_generator_state(cuda, index, &mut out, err, len) })?;
    // SAFETY: see above; the pointer is non-null on success and owned by the returned tensor.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

/// Restores a state [`state`] gave.
pub fn set_state(device: Device, state: &Tensor) -> Result<(), String> {
    let (cuda, index) = of(device);
    // SAFETY: a live tensor borrowed for the call; the generator copies what it needs.
    shim::call(|err, len| unsafe { gymnos_set_generator_state(cuda, index, state.as_ptr().cast(), err, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_state_draws_the_same_numbers_again() {
        tch::manual_seed(3);
        let _ = Tensor::rand([5], (tch::Kind::Float, Device::Cpu));
        let saved = state(Device::Cpu).unwrap();
        let first = Tensor::rand([7], (tch::Kind::Float, Device::Cpu));
        let _ = Tensor::rand([3], (tch::Kind::Float, Device::Cpu));
        set_state(Device::Cpu, &saved.copy()).unwrap();
        let again = Tensor::rand([7], (tch::Kind::Float, Device::Cpu));
        assert!(first.equal(&again));
        assert!(set_state(Device::Cpu, &Tensor::zeros([3], (tch::Kind::Uint8, Device::Cpu))).is_err());
    }
}
