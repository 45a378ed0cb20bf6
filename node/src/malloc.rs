//! Allocator tuning for the daemon.
//!
//! glibc gives each thread that allocates its own arena (up to 8 per core)
//! and seldom hands their free pages back; with tokio's workers, sled's
//! threads and the blocking pool that measured tens of MiB of extra peak
//! RSS in the throughput benchmark (docs/performance.md). Two arenas keep
//! memory near what is in use at no measured throughput cost.

/// Limits glibc to two malloc arenas unless the operator chose otherwise
/// with `MALLOC_ARENA_MAX`. Call first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return; // glibc read it at start-up: the operator's choice stands
    }
    // SAFETY: `mallopt` takes two integers and only changes the allocator's
    // tuning; it reads or writes no memory of ours and glibc documents it as
    // MT-Safe (it takes the arena lock). A failure returns 0 and leaves the
    // default in place, which is harmless, so the result is ignored.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
