//! The core's heap: a fixed region in BSS managed by a buddy allocator.

use buddy_system_allocator::LockedHeap;

/// Size of the heap region.
pub const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct HeapRegion([u8; HEAP_SIZE]);

static mut HEAP_REGION: HeapRegion = HeapRegion([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap region to the allocator. Call once, on the boot CPU, before any allocation.
pub fn init() {
    // SAFETY: called once before any other CPU runs; the region is used only by the allocator.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_REGION) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// Bytes currently allocated.
pub fn in_use() -> usize {
    HEAP.lock().stats_alloc_actual()
}
