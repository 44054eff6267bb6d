//! glibc's allocator, set for training. Every step allocates and frees the same large buffers
//! (a CNN's activations are megabytes each). By default glibc adapts its thresholds as it goes
//! and hands freed memory at the top of the heap back to the kernel, so a step's buffers often
//! come back as fresh pages that fault in again: measured on the built-in CNN, 2 to 5 million
//! page faults per two epochs, changing from run to run, and epochs from 8.9 s to 12.3 s; with
//! the thresholds fixed, 1.1 to 1.8 million and 8.5 s to 8.9 s (BENCHMARKS.md). Peak memory is
//! the same; memory freed below the trim threshold stays with the process, as a caching
//! allocator's would.

/// Allocations up to this size come from the heap, which reuses them; above it, from `mmap`
/// (glibc's largest mmap threshold on 64-bit systems).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap is returned to the kernel only beyond this.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Fixes glibc's mmap and trim thresholds, unless the user set malloc's own variables
/// (`GLIBC_TUNABLES`, `MALLOC_*_`), which then decide.
pub fn keep_freed_memory() {
    let user_set = std::env::vars_os().any(|(name, value)| {
        let name = name.to_string_lossy();
        (name == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc."))
            || (name.starts_with("MALLOC_") && name.ends_with('_'))
    });
    if user_set {
        return;
    }
    set_thresholds();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() {
    // SAFETY: mallopt only changes the allocator's parameters; glibc serialises it with
    // allocation, and both values are in the ranges it accepts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}
