// libtorch's c10d behind a C ABI for host/engine/src/distributed/c10d.rs: a TCPStore (rank 0
// serves it), ProcessGroupGloo over it, and the collectives the engine uses, each on one dense
// tensor. tch binds none of c10d. Errors go back as shim.h says; a collective that fails (a peer
// gone, the timeout passed) throws in libtorch and comes back as its message.

#include "distributed.h"
#include "shim.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    default:
      TORCH_CHECK(false, "unknown reduction ", op);
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const GymnosGroup* group) {
  work->wait(group->timeout);
}

}  // namespace

extern "C" {

// Rank 0 serves the store (`is_server`; port 0 picks a free one); the others connect, retrying
// until `timeout_ms`. `bound_port` receives the port served or connected to.
int gymnos_store_new(const char* host, int port, int is_server, int64_t timeout_ms, GymnosStore** out,
                     int* bound_port, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        c10d::TCPStoreOptions options;
        options.port = static_cast<std::uint16_t>(port);
        options.isServer = is_server != 0;
        options.waitWorkers = false;
        options.timeout = std::chrono::milliseconds(timeout_ms);
        auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
        *bound_port = store->getPort();
        *out = new GymnosStore{store};
      },
      err, err_len);
}

// Another connection to the same store, for another thread.
int gymnos_store_clone(GymnosStore* store, GymnosStore** out, char* err, size_t err_len) {
  return gymnos_shim::guarded([&] { *out = new GymnosStore{store->store->clone()}; }, err, err_len);
}

void gymnos_store_free(GymnosStore* store) {
  delete store;
}

int gymnos_store_set(GymnosStore* store, const char* key, const uint8_t* value, size_t len, char* err,
                     size_t err_len) {
  return gymnos_shim::guarded(
      [&] { store->store->set(std::string(key), std::vector<uint8_t>(value, value + len)); }, err, err_len);
}

// Waits up to `timeout_ms` for `key`, then copies its value into a buffer the caller frees with
// `gymnos_buffer_free`.
int gymnos_store_get(GymnosStore* store, const char* key, int64_t timeout_ms, uint8_t** value, size_t* len,
                     char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const std::string k(key);
        store->store->wait({k}, std::chrono::milliseconds(timeout_ms));
        const std::vector<uint8_t> bytes = store->store->get(k);
        *len = bytes.size();
        *value = static_cast<uint8_t*>(std::malloc(bytes.empty() ? 1 : bytes.size()));
        TORCH_CHECK(*value != nullptr, "out of memory for a store value of ", bytes.size(), " bytes");
        if (!bytes.empty()) {
          std::memcpy(*value, bytes.data(), bytes.size());
        }
      },
      err, err_len);
}

void gymnos_buffer_free(uint8_t* buffer) {
  std::free(buffer);
}

int gymnos_store_add(GymnosStore* store, const char* key, int64_t delta, int64_t* value, char* err,
                     size_t err_len) {
  return gymnos_shim::guarded([&] { *value = store->store->add(std::string(key), delta); }, err, err_len);
}

int gymnos_store_check(GymnosStore* store, const char* key, int* exists, char* err, size_t err_len) {
  return gymnos_shim::guarded([&] { *exists = store->store->check({std::string(key)}) ? 1 : 0; }, err,
                              err_len);
}

// A Gloo process group of `size` ranks over `store` (keys under `prefix`). Gloo binds to the
// interface GLOO_SOCKET_IFNAME names, else to this host's name's address, else to loopback.
int gymnos_group_new_gloo(GymnosStore* store, const char* prefix, int rank, int size, int64_t timeout_ms,
                          GymnosGroup** out, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        const auto timeout = std::chrono::milliseconds(timeout_ms);
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
        options->devices.push_back(interface != nullptr && interface[0] != '\0'
                                       ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                       : c10d::ProcessGroupGloo::createDefaultDevice());
        auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store->store);
        auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, options);
        *out = new GymnosGroup{group, timeout};
      },
      err, err_len);
}

void gymnos_group_free(GymnosGroup* group) {
  delete group;
}

// Reduces `tensor` (dense, contiguous) in place on every rank: 0 sum, 1 max, 2 min.
int gymnos_group_all_reduce(GymnosGroup* group, const at::Tensor* tensor, int op, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        std::vector<at::Tensor> tensors{*tensor};
        c10d::AllreduceOptions options;
        options.reduceOp = reduce_op(op);
        options.timeout = group->timeout;
        wait(group->backend->allreduce(tensors, options), group);
      },
      err, err_len);
}

// Copies `root`'s `tensor` into every rank's.
int gymnos_group_broadcast(GymnosGroup* group, const at::Tensor* tensor, int root, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        std::vector<at::Tensor> tensors{*tensor};
        c10d::BroadcastOptions options;
        options.rootRank = root;
        options.timeout = group->timeout;
        wait(group->backend->broadcast(tensors, options), group);
      },
      err, err_len);
}

// Every rank's `input` (all of one shape), into `outputs[r]` for rank r.
int gymnos_group_all_gather(GymnosGroup* group, const at::Tensor* input, const at::Tensor* const* outputs,
                            size_t n, char* err, size_t err_len) {
  return gymnos_shim::guarded(
      [&] {
        std::vector<at::Tensor> in{*input};
        std::vector<std::vector<at::Tensor>> out(1);
        for (size_t i = 0; i < n; ++i) {
          out[0].push_back(*outputs[i]);
        }
        c10d::AllgatherOptions options;
        options.timeout = group->timeout;
        wait(group->backend->allgather(out, in, options), group);
      },
      err, err_len);
}

}  // extern "C"
