// What the engine's C entry points share (the Rust side is src/shim.rs): no C++ exception may
// unwind into Rust, so each entry point runs its body in `guarded`, which catches everything,
// copies the message into `err` (NUL-terminated, cut to `err_len`) and returns non-zero.

#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace gymnos_shim {

inline void write_error(const char* msg, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) {
    return;
  }
  size_t n = std::strlen(msg);
  if (n >= err_len) {
    n = err_len - 1;
  }
  std::memcpy(err, msg, n);
  err[n] = '\0';
}

// Runs `f`; 0 when it returns, 1 with the message in `err` when it throws.
template <typename F>
int guarded(F&& f, char* err, size_t err_len) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    write_error(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    write_error(e.what(), err, err_len);
  } catch (...) {
    write_error("unknown C++ exception", err, err_len);
  }
  return 1;
}

}  // namespace gymnos_shim
