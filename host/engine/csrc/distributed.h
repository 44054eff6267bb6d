// What the engine's c10d shim files share: the store and the process group behind opaque
// handles (host/engine/src/distributed/c10d.rs holds them). Everything is libtorch's own c10d:
// its TCPStore for rendezvous and small messages, ProcessGroupGloo on the CPU and
// ProcessGroupNCCL on CUDA for the collectives.

#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

struct GymnosStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct GymnosGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};
