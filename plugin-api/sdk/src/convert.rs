//! `tch::Tensor` <-> [`TensorHandle`], following the ownership rule of `gymnos_plugin_api::tensor`.

use std::ffi::c_void;

use gymnos_plugin_api::TensorHandle;
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
