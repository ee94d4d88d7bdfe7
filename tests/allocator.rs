//! The binary's malloc settings ([`restorewatch::memory::tune_allocator`]), in a test
//! binary of their own: they are process-wide, and the test counts the blocks that have
//! pages of their own while no other test allocates.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

/// glibc raises its threshold to the size of each large block freed, so that the next
/// block of that size comes from pages already touched; tuned, a large block always gets
/// pages of its own, given back when it is freed.
#[test]
fn a_large_block_gets_pages_of_its_own_even_after_one_was_freed() {
    restorewatch::memory::tune_allocator();
    // SAFETY: `mallinfo2` only reads the allocator's statistics.
    let own_pages = || unsafe { libc::mallinfo2() }.hblks;
    let size = 4 * restorewatch::memory::MMAP_THRESHOLD_BYTES;
    let first = vec![1u8; size];
    let with_first = own_pages();
    drop(std::hint::black_box(first));
    assert_eq!(
        own_pages(),
        with_first - 1,
        "the first block's pages went back"
    );
    let second = vec![2u8; size];
    assert_eq!(
        own_pages(),
        with_first,
        "the second block has pages of its own"
    );
    drop(std::hint::black_box(second));
}
