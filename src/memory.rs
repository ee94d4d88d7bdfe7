//! Keeping the process small between poll cycles.
//!
//! A cycle of 10,000 users allocates and frees tens of MiB (replies, sled's page versions,
//! the cycle's per-user state). glibc's malloc keeps what was freed for reuse, so without
//! help the bot would idle until the next tick at the cycle's high-water mark. The run
//! loop calls [`release_free_memory`] after each cycle and its delivery, and at each look
//! at the store during the wait for the next tick (after a reopen, or when there is
//! nothing to reopen: what was freed meanwhile, such as the CBS connections closed once
//! idle, goes back too); the freed pages then go back to the system, and the next cycle
//! takes them again.
//!
//! [`tune_allocator`], called by the binary before its runtime starts, keeps glibc's
//! defaults from undoing that (BENCHMARKS.md, session 11). `run` also starts itself again
//! with glibc's per-thread cache off ([`restart_without_thread_cache`]): the trim cannot
//! give back a page that a block in that cache lies on (session 14).

/// Allocations of this size and more get pages of their own (`mmap`), given back to the
/// system when freed. glibc's default starts here too, but raises it to the size of each
/// such block freed: after the first reopen of the store, sled's multi-MiB buffers came
/// from pages the cycle had already touched (and `calloc` zeroes those by hand), so each
/// reopen made them resident: at 10,000 users the idle grew by about 6 MiB over the first
/// three cycles. Setting the threshold stops glibc from moving it.
pub const MMAP_THRESHOLD_BYTES: usize = 128 * 1024;

/// Free memory at the top of the heap is given back only past this size. Fixing the mmap
/// threshold fixes this one too, at 128 KiB, and a cycle then gave its heap back and took
/// it again all the time: 0.54 s of system time for a 10,000-user `once` against 0.27 s.
/// The run loop gives everything free back after each round anyway
/// ([`release_free_memory`]).
pub const TRIM_THRESHOLD_BYTES: usize = 32 * 1024 * 1024;

/// At most this many malloc arenas. glibc's default is 8 per core: each runtime, blocking
/// and sled thread that allocates gets its own, and each arena keeps its own partly used
/// pages. Two arenas for two runtime workers kept the 10,000-user cycle's peak about
/// 13 MiB lower and its idle about 1.5 MiB lower, with client CPU per request within the
/// noise of `bench cpu`.
pub const ARENAS: usize = 2;

/// Sets [`MMAP_THRESHOLD_BYTES`], [`TRIM_THRESHOLD_BYTES`] and [`ARENAS`] in glibc's
/// malloc, unless the environment already sets them (`MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`: the operator's choice wins). Call it
/// before the runtime starts its threads. Elsewhere (musl, other systems) it does
/// nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (env, param, value) in [
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD_BYTES,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD_BYTES,
        ),
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
    ] {
        if std::env::var_os(env).is_none() {
            let value = libc::c_int::try_from(value).expect("a setting that fits a C int");
            // SAFETY: `mallopt` only sets the allocator's parameters, under its own lock.
            if unsafe { libc::mallopt(param, value) } != 1 {
                tracing::warn!(setting = env, value, "glibc refused a malloc setting");
            }
        }
    }
}

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

/// glibc reads its tunables from this variable once, as the process starts.
pub const TUNABLES_ENV: &str = "GLIBC_TUNABLES";

/// The tunable that sizes glibc's per-thread cache of freed blocks (tcache), and its value
/// for no cache. Each thread keeps up to 7 freed blocks of each of 64 sizes for itself,
/// outside the arenas: `malloc_trim` cannot give back a page such a block lies on. After a
/// 10,000-user cycle the runtime's threads kept about 4 MiB resident that way: without the
/// cache `run` idled at 19.5 instead of 22.6 MiB, with the cycle's CPU per request within
/// the noise (BENCHMARKS.md, session 14).
pub const THREAD_CACHE: (&str, &str) = ("glibc.malloc.tcache_count", "0");

/// The value [`TUNABLES_ENV`] needs for a process without glibc's thread cache: `current`
/// with [`THREAD_CACHE`] added, or `None` when `current` already sizes the cache (the
/// operator's choice wins) or is not text.
pub fn tunables_without_thread_cache(current: Option<&std::ffi::OsStr>) -> Option<String> {
    let (name, value) = THREAD_CACHE;
    let setting = format!("{name}={value}");
    let Some(current) = current else {
        return Some(setting);
    };
    let current = current.to_str()?;
    if current
        .split(':')
        .any(|tunable| tunable.split('=').next() == Some(name))
    {
        return None;
    }
    Some(if current.is_empty() {
        setting
    } else {
        format!("{current}:{setting}")
    })
}

/// Starts this program again in this process (same pid, arguments and environment) with
/// glibc's thread cache off, unless [`TUNABLES_ENV`] already sizes it. For a process that
/// idles long between bursts of work (`run`); call it before anything else starts. Returns
/// only when it did not restart: `Some` error when the restart failed (the process goes on
/// with the cache). Elsewhere (musl, other systems) it does nothing.
pub fn restart_without_thread_cache() -> Option<std::io::Error> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        let tunables = tunables_without_thread_cache(std::env::var_os(TUNABLES_ENV).as_deref())?;
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        Some(command.args(args).env(TUNABLES_ENV, tunables).exec())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_thread_cache_is_turned_off_beside_the_operators_tunables() {
        assert_eq!(
            tunables_without_thread_cache(None).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            tunables_without_thread_cache(Some(OsStr::new(""))).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            tunables_without_thread_cache(Some(OsStr::new("glibc.malloc.arena_max=1"))).as_deref(),
            Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0")
        );
    }

    #[test]
    fn an_operators_thread_cache_size_is_kept() {
        for set in [
            "glibc.malloc.tcache_count=7",
            "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=3",
            "glibc.malloc.tcache_count",
        ] {
            assert_eq!(tunables_without_thread_cache(Some(OsStr::new(set))), None);
        }
        // A longer name that only starts like it is another tunable.
        assert_eq!(
            tunables_without_thread_cache(Some(OsStr::new("glibc.malloc.tcache_count_x=1")))
                .as_deref(),
            Some("glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=0")
        );
    }

    #[cfg(unix)]
    #[test]
    fn tunables_that_are_not_text_are_left_alone() {
        use std::os::unix::ffi::OsStrExt as _;
        assert_eq!(
            tunables_without_thread_cache(Some(OsStr::from_bytes(b"glibc.\xff=1"))),
            None
        );
    }
}
