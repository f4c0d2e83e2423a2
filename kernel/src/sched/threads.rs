//! Oob threads on the hardware: their stacks, first instruction, exit and join.
//!
//! Each thread gets a stack from the heap with a guard word at its low end, checked every
//! time the thread is switched out: an overflow is reported with the thread's name and ends
//! the run instead of silently corrupting the heap.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use oob::{Error, SemaphoreId, ThreadId, ThreadSpec, WakeReason};

use super::{Glue, with_core};
use crate::arch::context::SavedContext;

/// The pattern of the stack guard word.
const STACK_GUARD: u128 = 0x5354_4143_4b5f_4755_4152_445f_4f4f_4221;

/// The default stack size of an oob thread.
pub const DEFAULT_STACK_SIZE: usize = 16 * 1024;
/// The smallest stack accepted: room for two nested trap frames and some calls.
pub const MIN_STACK_SIZE: usize = 4 * 1024;

/// The body of a thread.
type Body = Box<dyn FnOnce() + Send + 'static>;

/// The glue's control block of an oob thread (the scheduling state is in the core).
pub(crate) struct OobThread {
    pub(crate) id: ThreadId,
    /// The saved registers while switched out.
    pub(crate) context: SavedContext,
    stack: Vec<u128>,
    body: Option<Body>,
    /// Posted once when the thread exits (for oob joiners).
    exit_semaphore: SemaphoreId,
    /// Set once the thread exited (for in-band joiners, which cannot block).
    exited: alloc::sync::Arc<AtomicBool>,
}

impl OobThread {
    /// Ends the run with a clear message if the thread overflowed its stack.
    pub(crate) fn check_stack(&self) {
        if self.stack.first() != Some(&STACK_GUARD) {
            crate::console::write_fmt_emergency(format_args!(
                "oob thread {} overflowed its {}-byte stack\n",
                self.id,
                self.stack.len() * 16
            ));
            crate::power::exit(crate::power::EXIT_PANIC);
        }
    }
}

/// Waits for a thread to exit.
#[derive(Debug)]
pub struct JoinHandle {
    id: ThreadId,
    exit_semaphore: SemaphoreId,
    exited: alloc::sync::Arc<AtomicBool>,
}

impl JoinHandle {
    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// Whether the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Waits until the thread exited: blocks an oob caller; the in-band stage checks every
    /// millisecond, halted in between.
    pub fn join(self) -> Result<(), Error> {
        self.join_polling(oob::Duration::from_millis(1))
    }

    /// [`JoinHandle::join`], with the in-band stage checking every `interval` (a long interval
    /// keeps the in-band CPU quiet, e.g. while measuring).
    pub fn join_polling(self, interval: oob::Duration) -> Result<(), Error> {
        if super::current_thread().is_some() {
            while !self.is_finished() {
                let waited = super::wait(|glue, me, now| glue.core.sem_wait(me, self.exit_semaphore, None, now))?;
                if let super::Waited::Woken(WakeReason::Deleted) = waited {
                    break;
                }
            }
        } else {
            // The in-band stage cannot block: it checks every millisecond, halted in between.
            while !self.is_finished() {
                crate::rt::inband_sleep_until(super::clock::now() + interval)?;
            }
        }
        Ok(())
    }
}

impl Drop for JoinHandle {
    fn drop(&mut self) {
        let semaphore = self.exit_semaphore;
        let _ = with_core(|glue, _| glue.core.sem_destroy(semaphore));
    }
}

/// Creates a thread running `body` with `spec` on a stack of `stack_size` bytes.
pub fn spawn(spec: ThreadSpec<'_>, stack_size: usize, body: Body) -> Result<JoinHandle, Error> {
    let words = stack_size.max(MIN_STACK_SIZE).div_ceil(16);
    let mut stack = Vec::new();
    stack.try_reserve_exact(words).map_err(|_| Error::Overflow)?;
    stack.resize(words, 0u128);
    stack[0] = STACK_GUARD;
    let exited = alloc::sync::Arc::new(AtomicBool::new(false));
    with_core(|glue, _now| {
        glue.reap_zombies();
        let id = glue.core.spawn(ThreadSpec { dormant: true, ..spec })?;
        let exit_semaphore = glue.core.sem_create(0);
        let mut thread = Box::new(OobThread {
            id,
            context: SavedContext::default(),
            stack,
            body: Some(body),
            exit_semaphore,
            exited: exited.clone(),
        });
        let top = thread.stack.as_ptr_range().end as usize;
        let block = &raw mut *thread as usize;
        thread.context = SavedContext::new_thread(top, thread_entry, block);
        let index = id.index() as usize;
        if glue.threads.len() <= index {
            glue.threads.resize_with(index + 1, || None);
        }
        glue.threads[index] = Some(thread);
        // The core names the thread by its block when switching to it (moving the box kept
        // the block where it was).
        glue.core.set_glue_token(id, block)?;
        glue.core.start(id)?;
        Ok(JoinHandle { id, exit_semaphore, exited })
    })
}

/// First Rust code of a thread.
extern "C" fn thread_entry(block: usize) -> ! {
    let thread = block as *mut OobThread;
    // SAFETY: `block` is the boxed control block of the thread now running, which lives until
    // the thread exits; only this thread takes its body.
    let body = unsafe { (*thread).body.take() };
    crate::arch::unmask_irqs();
    if let Some(body) = body {
        body();
    }
    exit_current()
}

/// Ends the calling oob thread.
pub fn exit_current() -> ! {
    let Some(me) = super::current_thread() else {
        panic!("exit_current called from the in-band stage");
    };
    let _ = with_core(|glue, now| {
        glue.core.exit(me, now)?;
        if let Some(thread) = glue.threads.get_mut(me.index() as usize).and_then(Option::take) {
            thread.exited.store(true, Ordering::Release);
            let _ = glue.core.sem_post(thread.exit_semaphore);
            glue.zombies.push(thread);
        }
        Ok(())
    });
    unreachable!("an exited thread was switched back in");
}

impl Glue {
    /// Frees the blocks of exited threads whose CPU switched away from them.
    fn reap_zombies(&mut self) {
        self.zombies.retain(|thread| thread.context.is_on_cpu());
    }
}
