//! The binary's malloc settings ([`restorewatch::memory::tune_allocator`]), in a test
//! binary of their own with one test: they are process-wide, and the test reads the
//! allocator's counts while nothing else allocates.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use restorewatch::memory::{tune_allocator, MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES};

/// glibc raises its threshold to the size of each large block freed, so that the next
/// block of that size comes from pages already touched: tuned, a large block always gets
/// pages of its own, given back when it is freed. And the heap's free top is kept up to
/// the trim threshold rather than given back and taken again all through a cycle.
#[test]
fn large_blocks_get_pages_of_their_own_and_a_freed_heap_top_is_kept() {
    tune_allocator();
    // SAFETY: `mallinfo2` only reads the allocator's statistics.
    let info = || unsafe { libc::mallinfo2() };
    let size = 4 * MMAP_THRESHOLD_BYTES;
    let first = vec![1u8; size];
    let with_first = info().hblks;
    drop(std::hint::black_box(first));
    assert_eq!(
        info().hblks,
        with_first - 1,
        "the first block's pages went back"
    );
    let second = vec![2u8; size];
    assert_eq!(
        info().hblks,
        with_first,
        "the second block has pages of its own"
    );
    drop(std::hint::black_box(second));

    // 8 MiB in blocks under the mmap threshold, freed: they join the heap's top.
    let free_before = info().fordblks;
    let blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8; 8 * 1024]).collect();
    drop(std::hint::black_box(blocks));
    let kept = info().fordblks.saturating_sub(free_before);
    assert!(
        (7 << 20..=TRIM_THRESHOLD_BYTES).contains(&kept),
        "the freed 8 MiB stays in the heap: {kept} bytes kept"
    );
}
