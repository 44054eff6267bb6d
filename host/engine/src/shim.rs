//! What the engine's C++ shims (`csrc/`) and their Rust wrappers share: a tch `Tensor` passes
//! as the `at::Tensor*` it wraps, and a C++ exception comes back as its message (no exception
//! may unwind into Rust: every entry point catches everything, `csrc/shim.h`).

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::Tensor;

/// `at::Tensor*`, as tch's `C_tensor` pointers are (torch-sys: `typedef torch::Tensor *tensor`).
pub type AtTensor = *const c_void;

/// The handles of `tensors`, valid while they are borrowed.
pub fn ptrs(tensors: &[&Tensor]) -> Vec<AtTensor> {
    tensors.iter().map(|t| t.as_ptr().cast()).collect()
}

/// Calls a shim entry point with an error buffer (pointer, length) that it NUL-terminates;
/// its message when it returns non-zero.
pub fn call(entry: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    const ERR_LEN: usize = 2048;
    let mut err = [0u8; ERR_LEN];
    if entry(err.as_mut_ptr().cast(), ERR_LEN) == 0 {
        return Ok(());
    }
    Err(CStr::from_bytes_until_nul(&err).map_or_else(|_| "(no message)".into(), |c| c.to_string_lossy().into_owned()))
}
