//! Waking a task: on the loop's own thread, a push onto a thread-local
//! list (no lock, no allocation); from any other thread, a closure through
//! the loop's [`Remote`] queue, which also wakes a loop that waits.
//!
//! A wake on the loop's thread never has to wake the loop: the thread is
//! running, not waiting, so the loop sees the list at its next pass. The
//! list is the thread's, shared by all its contexts: each loop takes only
//! the tasks of its own heap (a handle names its heap) and leaves the
//! others. A context going takes its own out, so nothing of a freed heap
//! stays behind.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Wake;

use talloc::{AnyPtr, Talloc};

use crate::Remote;

/// A task's waker: wakes it once, however many wakes come before its
/// next poll.
pub(super) struct TaskWaker {
    pub(super) task: AnyPtr,
    remote: Remote,
    /// The thread of the task's loop (a context never changes thread).
    thread: u64,
    /// Set by a wake, cleared when the poll starts.
    scheduled: AtomicBool,
}

thread_local! {
    /// Tasks woken on this thread, oldest first, to be polled by their loops.
    static WOKEN: RefCell<VecDeque<AnyPtr>> = const { RefCell::new(VecDeque::new()) };
    /// This thread's number, 0 until first asked for.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// A number no other thread of the process has, ever (unlike a thread-local
/// address, which a later thread may reuse).
fn this_thread() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    THREAD.with(|t| match t.get() {
        0 => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            t.set(n);
            n
        }
        n => n,
    })
}

impl TaskWaker {
    pub(super) fn new(task: AnyPtr, remote: Remote) -> TaskWaker {
        TaskWaker {
            task,
            remote,
            thread: this_thread(),
            scheduled: AtomicBool::new(false),
        }
    }

    /// The poll is starting: a wake from now on schedules another.
    pub(super) fn polling(&self) {
        self.scheduled.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if this_thread() == self.thread {
            // A loop that is gone polls nothing: its list entry would stay.
            // (`try_with`: at thread exit the list may be gone already, and
            // the loop with it.)
            if self.remote.is_open() {
                let _ = WOKEN.try_with(|w| w.borrow_mut().push_back(self.task));
            }
        } else {
            let me = self.clone();
            // A loop that is gone polls nothing: nothing to do then.
            let _ = self.remote.schedule(move |ev| {
                super::poll(ev, me.task);
            });
        }
    }
}

/// Moves this thread's woken tasks of `heap` into `out` (empty), in the
/// order they were woken; those of other heaps stay. With only this heap's
/// (one loop on the thread, the usual case) the two queues swap buffers.
pub(crate) fn take_woken(heap: &Talloc, out: &mut VecDeque<AnyPtr>) {
    debug_assert!(out.is_empty());
    WOKEN.with(|w| {
        let mut w = w.borrow_mut();
        if w.iter().all(|&t| is_of(heap, t)) {
            std::mem::swap(&mut *w, out);
        } else {
            w.retain(|&t| {
                let mine = is_of(heap, t);
                if mine {
                    out.push_back(t);
                }
                !mine
            });
        }
    });
}

/// Forgets this thread's woken tasks of `heap` (its context is going).
pub(crate) fn forget_woken(heap: &Talloc) {
    // `try_with`: a context may be dropped while the thread's locals are.
    let _ = WOKEN.try_with(|w| w.borrow_mut().retain(|&t| !is_of(heap, t)));
}

/// Whether the task handle names an object of `heap` (live or freed): a
/// freed task is the loop's to skip, a task of another heap is not.
fn is_of(heap: &Talloc, t: AnyPtr) -> bool {
    !heap.is_foreign(t)
}
