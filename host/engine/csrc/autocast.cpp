// libtorch's autocast for any device type and lower-precision dtype, behind a C ABI for
// host/engine/src/autocast.rs: tch binds only CUDA's float16 autocast, and does nothing without
// a GPU, where the CPU's bfloat16 autocast is what helps. Errors go back as shim.h says.

#include "shim.h"

#include <ATen/autocast_mode.h>

#include <cstddef>

namespace {

at::DeviceType device_type(int cuda) {
  return cuda != 0 ? at::kCUDA : at::kCPU;
}

}  // namespace

extern "C" {

// Turns autocast on for the CPU (`cuda` 0) or CUDA in float16 (`bf16` 0) or bfloat16, and
// writes the state `gymnos_autocast_exit` must restore.
int gymnos_autocast_enter(int cuda, int bf16, int* was_enabled, int* was_dtype, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const at::DeviceType type = device_type(cuda);
        *was_enabled = at::autocast::is_autocast_enabled(type) ? 1 : 0;
        *was_dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
        at::autocast::set_autocast_dtype(type, bf16 != 0 ? at::kBFloat16 : at::kHalf);
        at::autocast::set_autocast_enabled(type, true);
        at::autocast::increment_nesting();
      },
      err, err_len);
}

// Restores the state `gymnos_autocast_enter` wrote, and empties autocast's cache of
// lower-precision weight copies when the outermost region ends (they are stale after a step).
int gymnos_autocast_exit(int cuda, int was_enabled, int was_dtype, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const at::DeviceType type = device_type(cuda);
        if (at::autocast::decrement_nesting() == 0) {
          at::autocast::clear_cache();
        }
        at::autocast::set_autocast_enabled(type, was_enabled != 0);
        at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(was_dtype));
      },
      err, err_len);
}

// The current autocast state of the CPU (`cuda` 0) or CUDA: whether it is on, and its dtype. A
// thread-local flag, readable without a GPU (the tests check the CUDA path with it).
int gymnos_autocast_state(int cuda, int* enabled, int* dtype, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const at::DeviceType type = device_type(cuda);
        *enabled = at::autocast::is_autocast_enabled(type) ? 1 : 0;
        *dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
      },
      err, err_len);
}

}  // extern "C"
