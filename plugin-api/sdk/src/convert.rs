//! `tch::Tensor` <-> [`TensorHandle`], following the ownership rule of `gymnos_plugin_api::tensor`.

use std::ffi::c_void;

use gymnos_plugin_api::{abi_stable::std_types::RVec, NamedTensor, Samples, TensorHandle};
use tch::Tensor;

/// Deletes an `at::Tensor*` made by this module.
unsafe extern "C" fn release_tensor(ptr: *mut c_void) {
    // SAFETY: `to_handle` made `ptr` from a `Tensor` it gave up; this re-takes and drops it.
    drop(unsafe { Tensor::from_ptr(ptr.cast()) });
}

/// Gives a tensor's ownership to a handle (no data is copied).
pub fn to_handle(tensor: Tensor) -> TensorHandle {
    let mut tensor = std::mem::ManuallyDrop::new(tensor);
    let ptr = tensor.as_mut_ptr().cast::<c_void>();
    // SAFETY: `ptr` is a valid `at::Tensor*` that nobody else owns now, and `release_tensor`
    // deletes it with this module's libtorch bindings.
    unsafe { TensorHandle::from_raw(ptr, release_tensor) }
}

/// Takes a handle (possibly made by another module) and returns a tensor owned by this module.
///
/// This is a shallow clone (a new `at::Tensor` sharing the same storage and autograd state);
/// the handle is then dropped through its creator's release function, so each module only ever
/// deletes what it allocated.
pub fn from_handle(handle: TensorHandle) -> Tensor {
    // SAFETY: the handle owns a valid `at::Tensor*` for as long as it lives.
    unsafe { Tensor::clone_from_ptr(handle.as_raw().cast()) }
}

/// Named tensors to their ABI form (ownership passes to the handles).
pub fn to_named(tensors: Vec<(String, Tensor)>) -> RVec<NamedTensor> {
    tensors.into_iter().map(|(name, t)| NamedTensor { name: name.into(), tensor: to_handle(t) }).collect()
}

/// Named tensors from their ABI form.
pub fn from_named(tensors: RVec<NamedTensor>) -> Vec<(String, Tensor)> {
    tensors.into_iter().map(|n| (n.name.into_string(), from_handle(n.tensor))).collect()
}

/// Features and targets to their ABI form.
pub fn to_samples(features: Tensor, targets: Tensor) -> Samples {
    Samples { features: to_handle(features), targets: to_handle(targets) }
}

/// Features and targets from their ABI form.
pub fn from_samples(samples: Samples) -> (Tensor, Tensor) {
    (from_handle(samples.features), from_handle(samples.targets))
}
