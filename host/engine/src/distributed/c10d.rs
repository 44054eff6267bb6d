//! libtorch's c10d through the engine's shim (`csrc/distributed.cpp`, `csrc/nccl.cpp`): the
//! TCPStore every rank meets at, and a process group (Gloo on the CPU, NCCL on CUDA) whose
//! collectives take one dense tensor each.

use std::{
    ffi::{c_char, c_int, CString},
    ptr::NonNull,
    time::Duration,
};

use tch::Tensor;

use crate::shim::{self, AtTensor};

#[repr(C)]
struct RawStore {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RawGroup {
    _opaque: [u8; 0],
}

extern "C" {
    fn gymnos_store_new(
        host: *const c_char,
        port: c_int,
        is_server: c_int,
        timeout_ms: i64,
        out: *mut *mut RawStore,
        bound_port: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_store_clone(store: *mut RawStore, out: *mut *mut RawStore, err: *mut c_char, err_len: usize) -> c_int;
    fn gymnos_store_free(store: *mut RawStore);
    fn gymnos_store_set(
        store: *mut RawStore,
        key: *const c_char,
        value: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_store_get(
        store: *mut RawStore,
        key: *const c_char,
        timeout_ms: i64,
        value: *mut *mut u8,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_buffer_free(buffer: *mut u8);
    fn gymnos_store_add(
        store: *mut RawStore,
        key: *const c_char,
        delta: i64,
        value: *mut i64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_store_check(
        store: *mut RawStore,
        key: *const c_char,
        exists: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_group_new_gloo(
        store: *mut RawStore,
        prefix: *const c_char,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_group_new_nccl(
        store: *mut RawStore,
        prefix: *const c_char,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut RawGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_nccl_built() -> c_int;
    fn gymnos_group_free(group: *mut RawGroup);
    fn gymnos_group_all_reduce(
        group: *mut RawGroup,
        tensor: AtTensor,
        op: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_group_broadcast(
        group: *mut RawGroup,
        tensor: AtTensor,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn gymnos_group_all_gather(
        group: *mut RawGroup,
        input: AtTensor,
        outputs: *const AtTensor,
        n: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// What c10d said when a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct C10dError(pub String);

fn c_string(text: &str) -> Result<CString, C10dError> {
    CString::new(text).map_err(|_| C10dError(format!("{text:?} holds a NUL byte")))
}

fn millis(timeout: Duration) -> i64 {
    timeout.as_millis().min(i64::MAX as u128) as i64
}

/// Whether this engine was built with NCCL's process group.
pub fn nccl_built() -> bool {
    // SAFETY: a function of no arguments returning a constant.
    unsafe { gymnos_nccl_built() != 0 }
}

/// A connection to the c10d TCPStore of a run (rank 0 serves it).
pub struct Store(NonNull<RawStore>);

// SAFETY: a c10d store connection may be used from any thread, one call at a time (`&mut`-free
// calls below are serialized by the store's own lock); each thread that needs its own uses
// `try_clone`.
unsafe impl Send for Store {}

impl Store {
    /// Serves the store on `port` (rank 0), or connects to it, retrying until `timeout`.
    pub fn open(host: &str, port: u16, serve: bool, timeout: Duration) -> Result<Store, C10dError> {
        let host = c_string(host)?;
        let mut out = std::ptr::null_mut();
        let mut bound = 0;
        // SAFETY: valid C strings and out-pointers for the call; `err` is shim::call's buffer.
        shim::call(|err, len| unsafe {
            gymnos_store_new(
                host.as_ptr(),
                c_int::from(port),
                c_int::from(serve),
                millis(timeout),
                &mut out,
                &mut bound,
                err,
                len,
            )
        })
        .map_err(C10dError)?;
        NonNull::new(out).map(Store).ok_or_else(|| C10dError("the store was not created".into()))
    }

    /// Another connection to the same store.
    pub fn try_clone(&self) -> Result<Store, C10dError> {
        let mut out = std::ptr::null_mut();
        // SAFETY: `self.0` is a live store; `out` receives a new one.
        shim::call(|err, len| unsafe { gymnos_store_clone(self.0.as_ptr(), &mut out, err, len) }).map_err(C10dError)?;
        NonNull::new(out).map(Store).ok_or_else(|| C10dError("the store was not cloned".into()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), C10dError> {
        let key = c_string(key)?;
        // SAFETY: a live store, a C string, and `value`'s bytes for the call.
        shim::call(|err, len| unsafe {
            gymnos_store_set(self.0.as_ptr(), key.as_ptr(), value.as_ptr(), value.len(), err, len)
        })
        .map_err(C10dError)
    }

    /// The value of `key`, waiting up to `timeout` for some rank to set it.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, C10dError> {
        let key_c = c_string(key)?;
        let (mut value, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: a live store and C string; on success `value` is a malloc'd buffer of `size`
        // bytes that is copied and freed below.
        shim::call(|err, len| unsafe {
            gymnos_store_get(self.0.as_ptr(), key_c.as_ptr(), millis(timeout), &mut value, &mut size, err, len)
        })
        .map_err(C10dError)?;
        // SAFETY: see above; the buffer is not used after it is freed.
        let bytes = unsafe {
            let bytes = std::slice::from_raw_parts(value, size).to_vec();
            gymnos_buffer_free(value);
            bytes
        };
        Ok(bytes)
    }

    /// Adds `delta` to the counter `key` (created at 0) and returns its new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64, C10dError> {
        let key = c_string(key)?;
        let mut value = 0;
        // SAFETY: a live store, a C string and an out-pointer.
        shim::call(|err, len| unsafe { gymnos_store_add(self.0.as_ptr(), key.as_ptr(), delta, &mut value, err, len) })
            .map_err(C10dError)?;
        Ok(value)
    }

    /// Whether some rank has set `key`.
    pub fn check(&self, key: &str) -> Result<bool, C10dError> {
        let key = c_string(key)?;
        let mut exists = 0;
        // SAFETY: a live store, a C string and an out-pointer.
        shim::call(|err, len| unsafe { gymnos_store_check(self.0.as_ptr(), key.as_ptr(), &mut exists, err, len) })
            .map_err(C10dError)?;
        Ok(exists != 0)
    }

    fn raw(&self) -> *mut RawStore {
        self.0.as_ptr()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by gymnos_store_new/clone and freed once.
        unsafe { gymnos_store_free(self.0.as_ptr()) }
    }
}

/// The reductions the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum = 0,
    Max = 1,
    Min = 2,
}

/// Which c10d process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// CPU tensors, over TCP.
    Gloo,
    /// CUDA tensors, over NVLink, PCIe or InfiniBand.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// A c10d process group: this rank's handle on the collectives of all.
pub struct ProcessGroup {
    raw: NonNull<RawGroup>,
}

// SAFETY: the group is used from the training thread only; it is moved there once.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// The group of `size` ranks over `store`, its keys under `prefix`; NCCL binds this rank to
    /// CUDA device `device`.
    pub fn new(
        store: &Store,
        prefix: &str,
        backend: Backend,
        rank: u32,
        size: u32,
        timeout: Duration,
        device: usize,
    ) -> Result<ProcessGroup, C10dError> {
        let prefix = c_string(prefix)?;
        let mut out = std::ptr::null_mut();
        let (rank, size) = (rank as c_int, size as c_int);
        // SAFETY: a live store, a C string and an out-pointer; the group keeps its own reference
        // to the store.
        shim::call(|err, len| unsafe {
            match backend {
                Backend::Gloo => {
                    gymnos_group_new_gloo(store.raw(), prefix.as_ptr(), rank, size, millis(timeout), &mut out, err, len)
                }
                Backend::Nccl => gymnos_group_new_nccl(
                    store.raw(),
                    prefix.as_ptr(),
                    rank,
                    size,
                    millis(timeout),
                    device as c_int,
                    &mut out,
                    err,
                    len,
                ),
            }
        })
        .map_err(C10dError)?;
        let raw = NonNull::new(out).ok_or_else(|| C10dError("the process group was not created".into()))?;
        Ok(ProcessGroup { raw })
    }

    /// Reduces `t` (dense, contiguous) in place on every rank.
    pub fn all_reduce(&self, t: &Tensor, op: Reduce) -> Result<(), C10dError> {
        // SAFETY: a live group and a live tensor borrowed for the call (the shim waits for the
        // collective to finish, so nothing keeps the pointer).
        shim::call(|err, len| unsafe {
            gymnos_group_all_reduce(self.raw.as_ptr(), t.as_ptr().cast(), op as c_int, err, len)
        })
        .map_err(C10dError)
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &Tensor, root: u32) -> Result<(), C10dError> {
        // SAFETY: as in `all_reduce`.
        shim::call(|err, len| unsafe {
            gymnos_group_broadcast(self.raw.as_ptr(), t.as_ptr().cast(), root as c_int, err, len)
        })
        .map_err(C10dError)
    }

    /// Every rank's `t` (all of one shape), in rank order.
    pub fn all_gather(&self, t: &Tensor, size: u32) -> Result<Vec<Tensor>, C10dError> {
        let outputs: Vec<Tensor> = (0..size).map(|_| t.empty_like()).collect();
        let pointers: Vec<AtTensor> = outputs.iter().map(|o| o.as_ptr().cast()).collect();
        // SAFETY: a live group; `t` and every output tensor are live for the call.
        shim::call(|err, len| unsafe {
            gymnos_group_all_gather(self.raw.as_ptr(), t.as_ptr().cast(), pointers.as_ptr(), pointers.len(), err, len)
        })
        .map_err(C10dError)?;
        Ok(outputs)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by gymnos_group_new_* and freed once.
        unsafe { gymnos_group_free(self.raw.as_ptr()) }
    }
}
