//! The gateway's memory allocator: mimalloc for most blocks, the system
//! allocator for large ones.
//!
//! mimalloc's per-thread heaps make the many small, short-lived blocks of
//! a request cheap: on the benchmark's wide query (ten calls) glibc's
//! allocator alone cost 15-40 % more CPU per query. But mimalloc keeps
//! freed memory for a second before returning it (its `purge_delay`), and
//! a large answer frees megabytes per request: the upstream body, the
//! parser's buffers and arena, the response. With 32 clients asking for
//! 0.5 MiB answers the gateway's peak RSS was 125-140 MiB; with blocks of
//! [`LARGE`] bytes and up from the system allocator, which reuses them at
//! once or hands them back to the OS, it is 87-92 MiB, at the same CPU
//! per query on every benchmark workload (and less on the large answer
//! at c=256). Shortening mimalloc's delay instead cost 5-40 % more CPU
//! per query for a similar or smaller saving.
//!
//! The small blocks mimalloc still frees, it returns to the OS after 1 ms
//! ([`configure`]) instead of its default second: at 32 clients of the
//! large answer that took the peak RSS from 71-78 MiB to 68-70 MiB, and
//! wide's from 40-43 to 36-40 MiB, at the same CPU per query within the
//! benchmark's noise (bench/README.md). With the large blocks still in
//! mimalloc, a shorter delay had cost CPU (above): it was returning and
//! refaulting megabytes per request, where now it returns the pages of
//! small blocks that a burst left empty.
//!
//! Which allocator owns a block follows from its size alone, and Rust
//! frees (and reallocates) a block with the size it was allocated with:
//! no header or lookup is needed.

// The one module with unsafe code: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h` enum; the Rust
/// bindings name only some options): how many milliseconds freed memory
/// waits before it is returned to the OS.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay [`configure`] sets, in milliseconds.
pub const PURGE_DELAY_MS: std::ffi::c_long = 1;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless the
/// environment's `MIMALLOC_PURGE_DELAY` already set it (docs/DEPLOY.md).
/// Called first thing in `main`; mimalloc reads the option at each purge.
pub fn configure() {
    // Safety: sets a number in mimalloc's option table; any value is valid.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// Blocks of at least this many bytes go to the system allocator.
pub const LARGE: usize = 64 * 1024;

/// mimalloc below [`LARGE`] bytes, the system allocator from there.
pub struct Allocator;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

// Safety: each call goes to the allocator that owns the block, decided by
// its size, which `GlobalAlloc`'s contract keeps equal between a block's
// allocation and its `dealloc`/`realloc`.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc(layout)
        } else {
            MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            MiMalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (false, false) => MiMalloc.realloc(ptr, layout, new_size),
            (true, true) => System.realloc(ptr, layout, new_size),
            // The block changes owner: a new block from the other one.
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`PURGE_DELAY`] is the option mimalloc documents as the purge delay:
    /// its default is 1000 ms, which no neighbouring option has, and
    /// [`configure`] changes it, but not once the option was set (as
    /// `MIMALLOC_PURGE_DELAY` sets it, which `mi_option_set` stands in for:
    /// the environment is read before any test runs).
    #[test]
    fn configure_sets_the_purge_delay_unless_it_was_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment's value wins, by design
        }
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(get(), 1000, "mimalloc's default purge delay");
        configure();
        assert_eq!(get(), PURGE_DELAY_MS);
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 7) };
        configure();
        assert_eq!(get(), 7, "a purge delay already set is kept");
    }

    /// Allocates, grows across the boundary both ways, and frees, checking
    /// the bytes survive each move: a block handed to the allocator that
    /// does not own it would abort the test process or corrupt a heap.
    #[test]
    fn blocks_keep_their_bytes_across_the_boundary() {
        let allocator = Allocator;
        for (from, to) in [
            (16, 64),
            (1024, LARGE + 10),
            (LARGE + 10, 100),
            (LARGE, 2 * LARGE),
            (LARGE - 1, LARGE),
        ] {
            unsafe {
                let layout = Layout::from_size_align(from, 16).unwrap();
                let ptr = allocator.alloc(layout);
                assert!(!ptr.is_null());
                for i in 0..from {
                    *ptr.add(i) = (i % 251) as u8;
                }
                let moved = allocator.realloc(ptr, layout, to);
                assert!(!moved.is_null());
                assert_eq!(moved as usize % 16, 0, "alignment kept");
                for i in 0..from.min(to) {
                    assert_eq!(*moved.add(i), (i % 251) as u8, "byte {i} of {from} -> {to}");
                }
                allocator.dealloc(moved, Layout::from_size_align(to, 16).unwrap());
            }
        }
        unsafe {
            let layout = Layout::from_size_align(LARGE * 2, 64).unwrap();
            let zeroed = allocator.alloc_zeroed(layout);
            assert!(!zeroed.is_null());
            assert!((0..layout.size()).all(|i| *zeroed.add(i) == 0));
            allocator.dealloc(zeroed, layout);
        }
    }
}
