// Stands in for nccl.cpp when the engine is built against a libtorch without CUDA headers.

#include "distributed.h"
#include "shim.h"

extern "C" {

int gymnos_group_new_nccl(GymnosStore*, const char*, int, int, int64_t, int, GymnosGroup**, char* err,
                          size_t err_len) {
  gymnos_shim::write_error(
      "this gymnos-engine was built without NCCL (its libtorch had no CUDA headers); CUDA tensors cannot be "
      "reduced across processes",
      err, err_len);
  return 1;
}

int gymnos_nccl_built() {
  return 0;
}

}  // extern "C"
