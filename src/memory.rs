//! Giving memory back to the system between poll cycles.
//!
//! A cycle of 10,000 users allocates and frees tens of MiB (replies, sled's page versions,
//! the cycle's per-user state). glibc's malloc keeps what was freed for reuse, so without
//! help the bot would idle until the next tick at the cycle's high-water mark. The run
//! loop calls [`release_free_memory`] after each cycle and its delivery; the freed pages
//! then go back to the system, and the next cycle takes them again.

/// Returns the free pages of every malloc arena to the system (glibc's `malloc_trim`).
/// Elsewhere (musl, other systems) it does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks and releases the allocator's own free lists; it
    // takes the arenas' locks itself and touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
