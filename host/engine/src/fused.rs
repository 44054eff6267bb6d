//! Safe wrappers over libtorch's fused multi-tensor optimizer kernels (`at::_fused_sgd_`,
//! `at::_fused_adam_`, `at::_fused_adamw_`): one call updates every parameter of a
//! device/dtype group, where the per-parameter code issues ~10 tch ops per tensor. tch does not
//! bind them, nor dropping a gradient, so csrc/fused_optim.cpp (built by build.rs) exposes them
//! through a C ABI.

use std::ffi::{c_char, c_double, c_int};

use tch::Tensor;

use crate::shim::{self, ptrs, AtTensor};

/// A C++ exception raised by libtorch (or by the shim's own checks), as text.
#[derive(Debug, thiserror::Error)]
#[error("fused optimizer kernel failed: {0}")]
pub struct FusedError(pub String);

extern "C" {
    fn gymnos_fused_sgd(
        params: *const AtTensor,
        grads: *const AtTensor,
        bufs: *const AtTensor,
        n: usize,
        weight_decay: c_double,
        momentum: c_double,
        lr: c_double,
        nesterov: c_int,
        is_first_step: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;

    fn gymnos_fused_adam(
        params: *const AtTensor,
        grads: *const AtTensor,
        exp_avgs: *const AtTensor,
        exp_avg_sqs: *const AtTensor,
        state_steps: *const AtTensor,
        n: usize,
        lr: c_double,
        beta1: c_double,
        beta2: c_double,
        weight_decay: c_double,
        eps: c_double,
        decoupled: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;

    fn gymnos_drop_grads(params: *const AtTensor, n: usize, err: *mut c_char, err_len: usize) -> c_int;

    fn gymnos_set_grad(param: AtTensor, grad: AtTensor, err: *mut c_char, err_len: usize) -> c_int;
}

fn same_len(n: usize, lists: &[(&str, usize)]) -> Result<(), FusedError> {
    for &(what, len) in lists {
        if len != n {
            return Err(FusedError(format!("{len} {what} for {n} parameters")));
        }
    }
    Ok(())
}

/// Drops the gradients of `params` (PyTorch's `zero_grad(set_to_none=True)`), which tch cannot:
/// the next backward pass stores each gradient rather than adding it to a zeroed one.
pub fn drop_grads(params: &[&Tensor]) -> Result<(), FusedError> {
    let params = ptrs(params);
    // SAFETY: every pointer is a live `at::Tensor` borrowed for the call; `err` is the buffer
    // `shim::call` provides.
    shim::call(|err, len| unsafe { gymnos_drop_grads(params.as_ptr(), params.len(), err, len) }).map_err(FusedError)
}

/// Gives `param` the gradient `grad` (tch has no setter for a tensor's gradient).
pub fn set_grad(param: &Tensor, grad: &Tensor) -> Result<(), FusedError> {
    // SAFETY: both pointers are live `at::Tensor`s borrowed for the call; the shim checks their
    // shapes and stores a reference to `grad`'s storage in `param`'s gradient slot.
    shim::call(|err, len| unsafe { gymnos_set_grad(param.as_ptr().cast(), grad.as_ptr().cast(), err, len) })
        .map_err(FusedError)
}

#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// L2, added to the gradient.
    pub weight_decay: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Adam {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: the parameters shrink by `lr * weight_decay`; else the decay joins the gradient.
    pub decoupled: bool,
}

/// SGD with optional momentum (dampening 0). With `is_first_step` each momentum buffer is set
/// to the gradient rather than read. `bufs` must be empty when `momentum` is 0. The parameters
/// and buffers are updated in place.
pub fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    bufs: &[&Tensor],
    hp: Sgd,
    is_first_step: bool,
) -> Result<(), FusedError> {
    let Sgd { lr, momentum, nesterov, weight_decay } = hp;
    let n = params.len();
    let n_bufs = if momentum != 0.0 { n } else { 0 };
    same_len(n, &[("gradients", grads.len())])?;
    same_len(n_bufs, &[("momentum buffers", bufs.len())])?;
    let (p, g, b) = (ptrs(params), ptrs(grads), ptrs(bufs));
    // SAFETY: every array holds `n` pointers (checked above; `bufs` is not read when momentum
    // is 0) to live `at::Tensor`s owned by the borrowed tch tensors, which outlive the call. The
    // shim only copies those handles, checks shapes, dtypes, devices and contiguity before the
    // kernel touches any data, and catches every C++ exception. The tensors' storage is libtorch
    // heap memory that Rust does not own, updated in place as tch's own in-place ops do. `err`
    // is the writable buffer of `len` bytes `shim::call` provides.
    shim::call(|err, len| unsafe {
        gymnos_fused_sgd(
            p.as_ptr(),
            g.as_ptr(),
            if b.is_empty() { std::ptr::null() } else { b.as_ptr() },
            n,
            weight_decay,
            momentum,
            lr,
            c_int::from(nesterov),
            c_int::from(is_first_step),
            err,
            len,
        )
    })
    .map_err(FusedError)
}

/// Adam or AdamW with PyTorch's bias correction for the step number in each `state_steps`
/// tensor (float32 scalars on the parameters' device, counting this update). Parameters and
/// moments are updated in place; the steps are only read.
pub fn adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    state_steps: &[&Tensor],
    hp: Adam,
) -> Result<(), FusedError> {
    let Adam { lr, betas, eps, weight_decay, decoupled } = hp;
    let n = params.len();
    same_len(
        n,
        &[
            ("gradients", grads.len()),
            ("first moments", exp_avgs.len()),
            ("second moments", exp_avg_sqs.len()),
            ("step tensors", state_steps.len()),
        ],
    )?;
    let (p, g, m, v, s) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs), ptrs(state_steps));
    // SAFETY: as in `sgd`: five arrays of `n` pointers (checked above) to live `at::Tensor`s
    // that outlive the call, validated by the shim before any data is read, exceptions caught
    // there, and `err` writable for `len` bytes.
    shim::call(|err, len| unsafe {
        gymnos_fused_adam(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            lr,
            betas[0],
            betas[1],
            weight_decay,
            eps,
            c_int::from(decoupled),
            err,
            len,
        )
    })
    .map_err(FusedError)
}
