// libtorch's default random generators' states, behind a C ABI for host/engine/src/generator.rs:
// a run preempted in the middle of an epoch saves them, so that the rest of the epoch draws
// (dropout) what it would have drawn. tch binds only seeding. Errors go back as shim.h says.

#include "shim.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <mutex>

namespace {

at::Generator generator(int cuda, int index) {
  if (cuda != 0) {
    return at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index)));
  }
  return at::globalContext().defaultGenerator(at::Device(at::kCPU));
}

}  // namespace

extern "C" {

// Writes the state of the CPU generator (`cuda` 0) or of CUDA device `index`'s into `*out`, a
// new tensor the caller owns (deleted with `delete`, as tch deletes its tensors).
int gymnos_generator_state(int cuda, int index, at::Tensor** out, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        at::Generator gen = generator(cuda, index);
        std::lock_guard<std::mutex> lock(gen.mutex());
        *out = new at::Tensor(gen.get_state());
      },
      err, err_len);
}

// Restores a state `gymnos_generator_state` wrote.
int gymnos_set_generator_state(int cuda, int index, const at::Tensor* state, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        at::Generator gen = generator(cuda, index);
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(*state);
      },
      err, err_len);
}

}  // extern "C"
