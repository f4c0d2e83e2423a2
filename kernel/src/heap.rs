//! The core's heap: a fixed region in BSS managed by a buddy allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use buddy_system_allocator::Heap;

use crate::arch::irq_lock::IrqSpinLock;

/// Size of the heap region.
pub const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct HeapRegion([u8; HEAP_SIZE]);

static mut HEAP_REGION: HeapRegion = HeapRegion([0; HEAP_SIZE]);

/// The buddy heap behind an IRQ-safe lock: an oob thread or handler allocating never finds
/// the lock held by the context it preempted on the same CPU.
struct IrqSafeHeap(IrqSpinLock<Heap<32>>);

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(IrqSpinLock::new(Heap::empty()));

// SAFETY: every allocation and release goes through the buddy allocator under its lock.
unsafe impl GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().alloc(layout).map_or(core::ptr::null_mut(), |block| block.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller hands back a block this allocator gave out with `layout`.
            unsafe { self.0.lock().dealloc(block, layout) };
        }
    }
}

/// Hands the heap region to the allocator. Call once, on the boot CPU, before any allocation.
pub fn init() {
    // SAFETY: called once before any other CPU runs; the region is used only by the allocator.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_REGION) as usize;
        HEAP.0.lock().init(start, HEAP_SIZE);
    }
}

/// Bytes currently allocated.
pub fn in_use() -> usize {
    HEAP.0.lock().stats_alloc_actual()
}
