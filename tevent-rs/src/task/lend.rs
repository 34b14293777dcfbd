//! Lending the running task its context.
//!
//! A future gets no `&mut Context` from `poll`. While the loop polls a
//! task, it moves its context into a thread-local slot (leaving a spare,
//! empty context in its place, made once per thread) and moves it back
//! after the poll, on unwinding too. [`with`] borrows the context from
//! the slot for the length of a closure, so a borrow never spans an
//! `.await`. No `unsafe`: the context is moved, not aliased.

use std::cell::RefCell;

use talloc::AnyPtr;

use crate::Context;

/// The context lent to the task being polled, and that task.
struct Lent {
    ev: Context,
    task: AnyPtr,
}

thread_local! {
    static LENT: RefCell<Option<Lent>> = const { RefCell::new(None) };
    /// The context left in the loop's hands while its own is lent: empty,
    /// on the poll backend (no fd of its own), made once per thread.
    static SPARE: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with `ev` lent to the task `task`.
pub(super) fn lend<R>(ev: &mut Context, task: AnyPtr, f: impl FnOnce() -> R) -> R {
    let spare = SPARE
        .with(|s| s.borrow_mut().take())
        .unwrap_or_else(|| Context::with_backend("poll").expect("the poll backend needs no fd"));
    let real = std::mem::replace(ev, spare);
    LENT.with(|l| {
        let old = l.borrow_mut().replace(Lent { ev: real, task });
        debug_assert!(old.is_none(), "tasks are polled one at a time");
    });
    /// Puts the context back, also when `f` panics.
    struct Back<'a>(&'a mut Context);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            let lent = LENT
                .with(|l| l.borrow_mut().take())
                .expect("the lent context is back only once");
            let spare = std::mem::replace(self.0, lent.ev);
            SPARE.with(|s| *s.borrow_mut() = Some(spare));
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
    LENT.with(|l| {
        let mut l = l.try_borrow_mut().ok()?;
        let lent = l.as_mut()?;
        Some(f(&mut lent.ev, lent.task))
    })
}
