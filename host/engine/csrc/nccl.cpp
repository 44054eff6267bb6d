// ProcessGroupNCCL behind the C ABI of distributed.cpp, built when libtorch has CUDA and its
// headers are found (build.rs); nccl_stub.cpp stands in otherwise. NCCL is the copy libtorch_cuda
// loads: one NCCL per process, as there is one libtorch.

#include "distributed.h"
#include "shim.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <string>

extern "C" {

// An NCCL process group of `size` ranks over `store` (keys under `prefix`), this rank on CUDA
// device `device`. Without a GPU, libtorch refuses it at construction, saying so.
int gymnos_group_new_nccl(GymnosStore* store, const char* prefix, int rank, int size, int64_t timeout_ms,
                          int device, GymnosGroup** out, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const auto timeout = std::chrono::milliseconds(timeout_ms);
        auto options = c10d::ProcessGroupNCCL::Options::create();
        options->timeout = timeout;
        auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store->store);
        auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, options);
        group->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
        *out = new GymnosGroup{group, timeout};
      },
      err, err_len);
}

int gymnos_nccl_built() {
  return 1;
}

}  // extern "C"
