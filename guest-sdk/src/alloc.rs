//! The packs' memory allocator: free lists by size class on top of the
//! system allocator (dlmalloc in wasm32-wasip2's libc).
//!
//! Unpacking a change and building its actions makes about a hundred small
//! allocations and frees per change; through dlmalloc they cost more than
//! everything else a pack does (two thirds of the guest's time in the mapping
//! benchmark). Here a small allocation is a pop from its class's free list and
//! a free is a push, so after the first calls a pack allocates nothing new.
//! The price: memory freed into one class is kept for that class, so a pack
//! holds its peak use of each size until its instance is replaced.
//!
//! On by default (feature `size-class-alloc`); a pack with its own
//! `#[global_allocator]` turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Classes hold blocks of 16, 32, … 16 << (CLASSES - 1) bytes (64 KiB).
const CLASSES: usize = 13;
const SMALLEST: usize = 16;
/// Blocks come from the system allocator with this alignment; a request that
/// needs more goes to the system allocator directly.
const ALIGN: usize = 16;

pub struct SizeClasses {
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// A pack instance runs one call at a time on one thread (wasm32-wasip2 has no threads).
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses { free: UnsafeCell::new([ptr::null_mut(); CLASSES]) }
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

/// The class a request falls in, if it is small enough and not over-aligned.
fn class(layout: Layout) -> Option<usize> {
    if layout.align() > ALIGN || layout.size() > SMALLEST << (CLASSES - 1) {
        return None;
    }
    let size = layout.size().max(SMALLEST).next_power_of_two();
    Some((size.trailing_zeros() - SMALLEST.trailing_zeros()) as usize)
}

fn block(class: usize) -> Layout {
    // Cannot fail: a power of two no larger than 64 KiB, aligned to 16.
    Layout::from_size_align(SMALLEST << class, ALIGN).expect("size class layout")
}

unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else { return unsafe { System.alloc(layout) } };
        let free = unsafe { &mut *self.free.get() };
        let head = free[class];
        if head.is_null() {
            return unsafe { System.alloc(block(class)) };
        }
        // A free block's first word points at the next free block of its class.
        free[class] = unsafe { *(head as *mut *mut u8) };
        head
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else { return unsafe { System.dealloc(ptr, layout) } };
        let free = unsafe { &mut *self.free.get() };
        unsafe { *(ptr as *mut *mut u8) = free[class] };
        free[class] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Still fits the block it has.
            (Some(old), Some(new)) if old == new => ptr,
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                let grown = unsafe { self.alloc(new_layout) };
                if !grown.is_null() {
                    unsafe { ptr::copy_nonoverlapping(ptr, grown, layout.size().min(new_size)) };
                    unsafe { self.dealloc(ptr, layout) };
                }
                grown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_sizes_and_alignments() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(l(1, 1)), Some(0));
        assert_eq!(class(l(16, 8)), Some(0));
        assert_eq!(class(l(17, 1)), Some(1));
        assert_eq!(class(l(64 << 10, 16)), Some(12));
        assert_eq!(class(l((64 << 10) + 1, 1)), None);
        assert_eq!(class(l(8, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_realloc_keeps_contents() {
        let a = SizeClasses::new();
        let layout = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            a.dealloc(p, layout);
            let q = a.alloc(layout);
            assert_eq!(p, q, "a freed block serves the next request of its class");
            ptr::write_bytes(q, 7, 24);
            // 24 → 30 stays in the 32-byte block; 30 → 100 moves and keeps the bytes.
            let same = a.realloc(q, layout, 30);
            assert_eq!(same, q);
            let moved = a.realloc(same, Layout::from_size_align(30, 8).unwrap(), 100);
            assert!((0..24).all(|i| *moved.add(i) == 7));
            a.dealloc(moved, Layout::from_size_align(100, 8).unwrap());
        }
    }
}
