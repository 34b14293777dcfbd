//! Lending the running task its context.
//!
//! A future gets no `&mut Context` from `poll`. While the loop polls a
//! task, it swaps its context with a spare, empty one kept in a
//! thread-local slot, and swaps them back after the poll, on unwinding
//! too (a context is a few words: its heap is boxed). [`with`] borrows the context from
//! the slot for the length of a closure, so a borrow never spans an
//! `.await`. No `unsafe`: the context is moved, not aliased.

use std::cell::RefCell;

use talloc::AnyPtr;

use crate::Context;

/// The thread's lending slot: while a task is polled, the loop's context
/// and that task; otherwise a spare, empty context (on the poll backend,
/// with no fd of its own), made once per thread, and no task. Lending is
/// one swap of the two contexts, and giving back another.
struct Slot {
    ev: Context,
    task: Option<AnyPtr>,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Runs `f` with `ev` lent to the task `task`.
pub(super) fn lend<R>(ev: &mut Context, task: AnyPtr, f: impl FnOnce() -> R) -> R {
    SLOT.with(|s| {
        let mut s = s.borrow_mut();
        let slot = s.get_or_insert_with(|| Slot {
            ev: Context::with_backend("poll").expect("the poll backend needs no fd"),
            task: None,
        });
        debug_assert!(slot.task.is_none(), "tasks are polled one at a time");
        std::mem::swap(ev, &mut slot.ev);
        slot.task = Some(task);
    });
    /// Gives the context back, also when `f` panics.
    struct Back<'a>(&'a mut Context);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            SLOT.with(|s| {
                let mut s = s.borrow_mut();
                let slot = s.as_mut().expect("the slot outlives the lend");
                std::mem::swap(self.0, &mut slot.ev);
                slot.task = None;
            });
        }
    }
    let _back = Back(ev);
    f()
}

/// Runs `f` with the context of the loop that is polling the current task,
/// and the task's heap object (the parent for what the task owns).
///
/// # Panics
/// Outside a task's poll, or inside another `with` (the context is lent
/// once); see [`try_with`].
///
/// ```
/// let mut ev = tevent::Context::new()?;
/// let name = ev.block_on(async {
///     tevent::with(|ev| ev.backend_name().to_string())
/// })?;
/// assert_eq!(name, "epoll");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[track_caller]
pub fn with<R>(f: impl FnOnce(&mut Context) -> R) -> R {
    match try_with_task(|ev, _| f(ev)) {
        Some(r) => r,
        None => panic!("tevent::with outside a task, or inside another with"),
    }
}

/// [`with`], or `None` outside a task's poll or inside another `with`.
///
/// ```
/// assert_eq!(tevent::try_with(|ev| ev.has_events()), None); // not in a task
/// ```
pub fn try_with<R>(f: impl FnOnce(&mut Context) -> R) -> Option<R> {
    try_with_task(|ev, _| f(ev))
}

/// [`with`] that also gives the current task's heap object: the parent to
/// give what the task owns, so that it goes with the task.
///
/// # Panics
/// As [`with`].
///
/// ```
/// let mut ev = tevent::Context::new()?;
/// ev.block_on(async {
///     let buf = tevent::with_task(|ev, me| ev.heap_mut().alloc_zeroed(me, 64))?;
///     tevent::with(|ev| assert_eq!(ev.heap().size(buf), Ok(64)));
///     Ok::<_, talloc::Error>(())
/// })??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[track_caller]
pub fn with_task<R>(f: impl FnOnce(&mut Context, AnyPtr) -> R) -> R {
    match try_with_task(f) {
        Some(r) => r,
        None => panic!("tevent::with_task outside a task, or inside a with"),
    }
}

/// [`try_with`] that also gives the current task's heap object.
pub(crate) fn try_with_task<R>(f: impl FnOnce(&mut Context, AnyPtr) -> R) -> Option<R> {
    SLOT.with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        let slot = s.as_mut()?;
        let task = slot.task?;
        Some(f(&mut slot.ev, task))
    })
}
