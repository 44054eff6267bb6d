//! Tensors cross the boundary as owning handles to `at::Tensor` objects of the one libtorch
//! loaded in the process. Data is never copied across the ABI.
//!
//! # Ownership rule
//!
//! A [`TensorHandle`] owns exactly one heap-allocated `at::Tensor` (a reference-counted view of
//! a storage, like `tch::Tensor`). Passing a handle by value passes that ownership:
//! - arguments: the callee owns the handles it receives (the host passes shallow clones, so
//!   the callee may keep, drop or modify them in place as the contract of the method allows);
//! - results: the caller owns the handles it gets back.
//!
//! Whoever owns a handle frees it by dropping it: `Drop` calls the `release` function stored in
//! the handle, which is the function of the module that created it. Nobody ever frees an
//! `at::Tensor` with another module's allocator, and no module needs libtorch bindings to drop a
//! handle. A module that created handles must stay loaded while they live: the host never
//! unloads plugin libraries.

use std::ffi::c_void;

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

use crate::meta::DatasetInfo;

/// An owned `at::Tensor*` plus the function that deletes it.
#[repr(C)]
#[derive(StableAbi)]
pub struct TensorHandle {
    ptr: *mut c_void,
    release: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: an `at::Tensor` object may be moved to and dropped on another thread (libtorch's
// reference counts are atomic); `tch::Tensor` is `Send` for the same reason.
unsafe impl Send for TensorHandle {}

impl TensorHandle {
    /// Wraps a raw `at::Tensor*` that the caller owns.
    ///
    /// # Safety
    /// `ptr` must be a valid, uniquely owned `at::Tensor*` and `release(ptr)` must delete it.
    pub unsafe fn from_raw(ptr: *mut c_void, release: unsafe extern "C" fn(*mut c_void)) -> Self {
        assert!(!ptr.is_null(), "TensorHandle from a null pointer");
        Self { ptr, release }
    }

    /// Gives up ownership: the caller must free the returned `at::Tensor*`.
    pub fn into_raw(self) -> *mut c_void {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    /// Borrows the raw `at::Tensor*` without giving up ownership.
    pub fn as_raw(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for TensorHandle {
    fn drop(&mut self) {
        // SAFETY: `from_raw`'s contract: we own `ptr` and `release` deletes it.
        unsafe { (self.release)(self.ptr) }
    }
}

impl std::fmt::Debug for TensorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorHandle({:p})", self.ptr)
    }
}

/// A tensor with a name: parameters, buffers, fitted preprocessor state.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NamedTensor {
    pub name: RString,
    pub tensor: TensorHandle,
}

/// A batch (or a whole split) of samples: `features` has the samples along dim 0, `targets`
/// holds class indices (`int64`, shape `[n]`) or regression targets (`float32`, `[n, k]`).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct Samples {
    pub features: TensorHandle,
    pub targets: TensorHandle,
}

/// What a dataset's `load` returns: all its samples and what they are.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct LoadedData {
    pub info: DatasetInfo,
    pub samples: Samples,
    /// Optional fixed test split shipped with the data (e.g. Fashion-MNIST's t10k files).
    /// When present, the host splits only `samples` into train and validation.
    pub test: abi_stable::std_types::ROption<Samples>,
}

/// Convenience: a list of named tensors.
pub type NamedTensors = RVec<NamedTensor>;
