//! How the process heap treats freed memory during batch denoising.
//!
//! tract allocates each operator's output afresh for every chunk: buffers of a few megabytes,
//! which glibc by default maps with `mmap` and unmaps on free, so the kernel faults in and
//! zeroes every page again on the next chunk. That was about as much system time as the
//! network's own compute (`cargo xtask bench`, whole-process row). Served from the heap and
//! kept there when freed, the same memory is reused chunk after chunk.
//!
//! A process-wide setting, so only programs that own their process call it (the CLI, the
//! evaluation); the plugin, a guest in a host's process, leaves the host's heap alone.

/// Keeps buffers up to 256 MiB in the heap, never gives freed memory back to the system before
/// the process ends (it peaks once, at the largest windows run together: with many jobs,
/// windows end together and a trim threshold would hand back and refault gigabytes), and
/// has every thread allocate from the one main heap: a
/// worker thread's own arena is capped at 64 MiB, so a paper-size chunk's larger tensors
/// would be mapped and unmapped there whatever the threshold. The allocations are few and
/// large, so sharing one heap costs no measurable contention. A no-op where the C library
/// is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        // -1: never trim.
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
