// libtorch's fused multi-tensor optimizer kernels (`at::_fused_sgd_`, `at::_fused_adam_`,
// `at::_fused_adamw_`), which tch does not bind, behind a C ABI for host/engine/src/fused.rs.
//
// Tensors arrive as arrays of `at::Tensor*` (a tch `Tensor` is a pointer to a heap
// `at::Tensor`); errors go back as shim.h says.

#include "shim.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>

#include <cstddef>
#include <vector>

namespace {

std::vector<at::Tensor> gather(const at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

// The CPU kernels index every list by `params[i].numel()` through raw data pointers without
// checking the other lists, so mismatches (shape, type, device, memory layout) are refused here
// rather than read out of bounds or in another order.
void check_like_params(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& others,
                       const char* what) {
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& o = others[i];
    TORCH_CHECK(o.defined(), what, "[", i, "] is undefined");
    TORCH_CHECK(o.sizes() == p.sizes(), what, "[", i, "] has shape ", o.sizes(), " but its parameter ",
                p.sizes());
    TORCH_CHECK(o.scalar_type() == p.scalar_type(), what, "[", i, "] is ", o.scalar_type(),
                " but its parameter ", p.scalar_type());
    TORCH_CHECK(o.device() == p.device(), what, "[", i, "] is on ", o.device(), " but its parameter on ",
                p.device());
    // Any dense layout (contiguous, channels-last) works elementwise when all lists share it.
    TORCH_CHECK(o.strides() == p.strides(), what, "[", i, "] has strides ", o.strides(),
                " but its parameter ", p.strides());
  }
}

void check_params(const std::vector<at::Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(params[i].defined(), "param[", i, "] is undefined");
    TORCH_CHECK(params[i].is_non_overlapping_and_dense(), "param[", i, "] is not dense");
  }
}

// The parameters are leaves that require grad: in-place updates must not be recorded.
template <typename F>
int guarded_without_grad(F&& f, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        at::NoGradGuard no_grad;
        f();
      },
      err, err_len);
}

}  // namespace

extern "C" {

// `bufs` may be null (and is ignored) when `momentum` is 0. With `is_first_step` the kernel
// sets each buffer to the gradient instead of reading it (PyTorch's first-step rule).
int gymnos_fused_sgd(const at::Tensor* const* params, const at::Tensor* const* grads,
                     const at::Tensor* const* bufs, size_t n, double weight_decay, double momentum, double lr,
                     int nesterov, int is_first_step, char* err, size_t err_len) {
  return guarded_without_grad(
      [&] {
        auto p = gather(params, n);
        auto g = gather(grads, n);
        check_params(p);
        check_like_params(p, g, "grad");
        std::vector<at::Tensor> b;
        if (momentum != 0.0) {
          TORCH_CHECK(bufs != nullptr, "momentum buffers missing");
          b = gather(bufs, n);
          check_like_params(p, b, "momentum_buffer");
        }
        at::_fused_sgd_(p, g, b, weight_decay, momentum, lr, /*dampening=*/0.0, nesterov != 0,
                        /*maximize=*/false, is_first_step != 0);
      },
      err, err_len);
}

// `state_steps[i]` holds the step number (already counting this update) as a float32 scalar on
// the parameters' device; the kernel reads it for the bias correction and does not change it.
// `decoupled` selects AdamW's weight decay.
int gymnos_fused_adam(const at::Tensor* const* params, const at::Tensor* const* grads,
                      const at::Tensor* const* exp_avgs, const at::Tensor* const* exp_avg_sqs,
                      const at::Tensor* const* state_steps, size_t n, double lr, double beta1, double beta2,
                      double weight_decay, double eps, int decoupled, char* err, size_t err_len) {
  return guarded_without_grad(
      [&] {
        auto p = gather(params, n);
        auto g = gather(grads, n);
        auto m = gather(exp_avgs, n);
        auto v = gather(exp_avg_sqs, n);
        auto s = gather(state_steps, n);
        check_params(p);
        check_like_params(p, g, "grad");
        check_like_params(p, m, "exp_avg");
        check_like_params(p, v, "exp_avg_sq");
        for (size_t i = 0; i < n; ++i) {
          TORCH_CHECK(s[i].defined() && s[i].numel() == 1, "state_step[", i, "] is not a scalar");
          TORCH_CHECK(s[i].scalar_type() == at::kFloat, "state_step[", i, "] is not float32");
          TORCH_CHECK(s[i].device() == p[i].device(), "state_step[", i, "] is on ", s[i].device(),
                      " but its parameter on ", p[i].device());
        }
        const std::vector<at::Tensor> max_exp_avg_sqs;  // amsgrad is off
        if (decoupled != 0) {
          at::_fused_adamw_(p, g, m, v, max_exp_avg_sqs, s, lr, beta1, beta2, weight_decay, eps,
                            /*amsgrad=*/false, /*maximize=*/false);
        } else {
          at::_fused_adam_(p, g, m, v, max_exp_avg_sqs, s, lr, beta1, beta2, weight_decay, eps,
                           /*amsgrad=*/false, /*maximize=*/false);
        }
      },
      err, err_len);
}

// Drops each parameter's gradient, as PyTorch's `zero_grad(set_to_none=True)`: the next
// backward pass stores its gradient instead of adding it to zeros, one pass less over each.
int gymnos_drop_grads(const at::Tensor* const* params, size_t n, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        for (size_t i = 0; i < n; ++i) {
          TORCH_CHECK(params[i] != nullptr && params[i]->defined(), "parameter ", i, " is undefined");
          params[i]->mutable_grad().reset();
        }
      },
      err, err_len);
}

// Gives `param` the gradient `grad` (a data-parallel rank whose batch did not reach a parameter
// that other ranks' did: it takes their reduced gradient).
int gymnos_set_grad(const at::Tensor* param, const at::Tensor* grad, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        TORCH_CHECK(param != nullptr && param->defined() && grad != nullptr && grad->defined(), "undefined tensor");
        TORCH_CHECK(param->sizes() == grad->sizes(), "gradient of shape ", grad->sizes(), " for a parameter of ",
                    param->sizes());
        param->mutable_grad() = *grad;
      },
      err, err_len);
}

}  // extern "C"
