//! The sidecar's allocation policy: freed memory kept for the next plan.

use napi_derive::napi;

/// Makes glibc keep freed memory in the process for the next allocations instead of giving
/// it back and faulting fresh pages in again: no allocation is served by its own `mmap`, and
/// the heap is not trimmed (an explicit `malloc_trim` still is). A plan of millions of samples
/// allocates and frees a few hundred MB; a long-lived sidecar that plans every epoch takes those
/// pages from its own heap from the second plan on (a 4M-sample `pack`: about half the page
/// faults and 15% less wall time, `npm run bench -- python`). The price: the process keeps its
/// largest heap until it exits. Returns whether the policy was set (glibc on Linux only; a
/// no-op elsewhere). For a dedicated process only (`omnibal serve`), never a library user's.
#[napi]
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation policy, and is thread-safe.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
