//! Callbacks that fail: what a handler may return, and where its error
//! goes.
//!
//! C's handlers return `void`: a handler that hits an error logs it, or
//! stores it somewhere and stops the loop by hand. Here a handler may return
//! `Result<(), CallbackError>` and use `?`; the error comes out of the
//! `loop_once` (or `loop_wait`) that ran the handler as
//! [`Error::Callback`], unless an error hook set with
//! [`set_error_hook`](Context::set_error_hook) handles it first. A handler
//! that returns `()` is as before.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::{Context, Error, When};

/// What a failing callback returns: any error, boxed (as `?` does for
/// `Box<dyn Error>`).
pub type CallbackError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What an event handler may return: `()`, or `Result<(), CallbackError>`
/// (so that `?` works in it).
///
/// ```
/// use std::time::Duration;
/// let mut ev = tevent::Context::new()?;
/// ev.add_timer(None, Duration::ZERO, |_, _, _| {})?;              // ()
/// ev.add_timer(None, Duration::ZERO, |_, _, _| {
///     let n: u32 = "12".parse()?;                                // `?` on any error
///     assert_eq!(n, 12);
///     Ok(())
/// })?;
/// ev.loop_wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HandlerResult: sealed::Sealed {
    /// The handler's verdict.
    #[doc(hidden)]
    fn into_result(self) -> Result<(), CallbackError>;
}

impl HandlerResult for () {
    #[inline(always)]
    fn into_result(self) -> Result<(), CallbackError> {
        Ok(())
    }
}

impl HandlerResult for Result<(), CallbackError> {
    #[inline(always)]
    fn into_result(self) -> Result<(), CallbackError> {
        self
    }
}

/// What a repeating timer's callback says about the timer
/// ([`add_repeating_timer`](Context::add_repeating_timer)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// The timer is done: it is freed, as a one-shot timer is.
    Done,
    /// Fire again at this time (an [`Instant`], or a
    /// [`Duration`](std::time::Duration) from now): the same timer, with
    /// the same handle and children.
    Again(When),
}

impl TimerAction {
    /// Fire again this long after the deadline that just fired (not after
    /// now), so that a periodic timer does not drift.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tevent::TimerAction;
    /// let deadline = Instant::now();
    /// let next = TimerAction::after(deadline, Duration::from_secs(1));
    /// assert_eq!(next, TimerAction::Again((deadline + Duration::from_secs(1)).into()));
    /// ```
    pub fn after(deadline: Instant, period: std::time::Duration) -> TimerAction {
        TimerAction::Again(When::At(deadline + period))
    }
}

/// What a repeating timer's callback may return: a [`TimerAction`], or
/// `Result<TimerAction, CallbackError>` (a failure frees the timer).
pub trait TimerResult: sealed::Sealed {
    /// The callback's verdict.
    #[doc(hidden)]
    fn into_action(self) -> Result<TimerAction, CallbackError>;
}

impl TimerResult for TimerAction {
    #[inline(always)]
    fn into_action(self) -> Result<TimerAction, CallbackError> {
        Ok(self)
    }
}

impl TimerResult for Result<TimerAction, CallbackError> {
    #[inline(always)]
    fn into_action(self) -> Result<TimerAction, CallbackError> {
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for Result<(), super::CallbackError> {}
    impl Sealed for super::TimerAction {}
    impl Sealed for Result<super::TimerAction, super::CallbackError> {}
}

/// A callback's error, as [`Error::Callback`] carries it: shared, so that
/// [`Error`] stays `Clone`; two are equal when they are the same error.
/// The error itself is the [`source`](std::error::Error::source).
///
/// ```
/// use std::time::Duration;
/// use tevent::Error;
/// let mut ev = tevent::Context::new()?;
/// ev.add_timer(None, Duration::ZERO, |_, _, _| Err("the peer went away".into()))?;
/// let Err(Error::Callback(failure)) = ev.loop_once() else { panic!() };
/// assert_eq!(failure.error().to_string(), "the peer went away");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CallbackFailure(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl CallbackFailure {
    pub(crate) fn new(e: CallbackError) -> CallbackFailure {
        CallbackFailure(Arc::from(e))
    }

    /// The error the callback returned.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for CallbackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallbackFailure").field(&self.0).finish()
    }
}

impl fmt::Display for CallbackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a callback failed")
    }
}

impl std::error::Error for CallbackFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for CallbackFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CallbackFailure {}

/// The hook that sees a callback's error first.
pub(crate) type ErrorHook =
    Box<dyn FnMut(&mut Context, CallbackError) -> Result<(), CallbackError>>;

impl Context {
    /// Sets the function that sees every error a callback returns, before
    /// it would come out of `loop_once`: it may handle it (`Ok(())`: the
    /// loop goes on as if nothing had failed) or pass it, or another error,
    /// on (`Err`). Without a hook every error comes out of the
    /// `loop_once` that ran the callback. A new hook replaces the old.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// let mut ev = tevent::Context::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let l = log.clone();
    /// ev.set_error_hook(move |_, e| {
    ///     l.borrow_mut().push(e.to_string());          // log it and go on
    ///     Ok(())
    /// });
    /// ev.add_timer(None, Duration::ZERO, |_, _, _| Err("lost a connection".into()))?;
    /// ev.add_timer(None, Duration::ZERO, |_, _, _| {})?;
    /// ev.loop_wait()?;                                  // no error comes out
    /// assert_eq!(*log.borrow(), ["lost a connection"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_error_hook(
        &mut self,
        hook: impl FnMut(&mut Context, CallbackError) -> Result<(), CallbackError> + 'static,
    ) {
        let old = self.reg.borrow_mut().failures.hook.replace(Box::new(hook));
        drop(old); // outside the borrow: its captures may run any Drop
    }

    /// Removes the error hook, so that errors come out of `loop_once`
    /// again; whether there was one.
    pub fn clear_error_hook(&mut self) -> bool {
        let old = self.reg.borrow_mut().failures.hook.take();
        old.is_some()
    }

    /// Where a callback's error goes: to the hook, or queued for the
    /// caller of `loop_once`.
    #[cold]
    pub(crate) fn callback_failed(&mut self, e: CallbackError) {
        let hook = self.reg.borrow_mut().failures.hook.take();
        let passed = match hook {
            Some(mut hook) => {
                let r = hook(self, e);
                let mut reg = self.reg.borrow_mut();
                // A hook set by the hook itself wins.
                if reg.failures.hook.is_none() {
                    reg.failures.hook = Some(hook);
                }
                r.err()
            }
            None => Some(e),
        };
        if let Some(e) = passed {
            let mut reg = self.reg.borrow_mut();
            reg.failures.queue.push_back(CallbackFailure::new(e));
        }
    }

    /// Routes what a handler returned.
    #[inline(always)]
    pub(crate) fn handled(&mut self, r: impl HandlerResult) {
        if let Err(e) = r.into_result() {
            self.callback_failed(e);
        }
    }

    /// Reports an error as if a handler had returned it: the error hook
    /// sees it, else it comes out of the next `loop_once` (the one running,
    /// inside a callback). For code that runs on the loop's behalf without
    /// being one of its handlers (a task of one's own type sent with
    /// [`Remote::schedule_task`](crate::Remote::schedule_task), a library's
    /// own dispatch).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// ev.report(Err::<(), _>("a delivery was lost".into()));
    /// ev.report(()); // nothing to report
    /// assert!(matches!(ev.loop_once(), Err(tevent::Error::Callback(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report(&mut self, r: impl HandlerResult) {
        self.handled(r)
    }

    /// The oldest error a callback returned that has not come out yet.
    pub(crate) fn next_failure(&self) -> Option<Error> {
        let mut reg = self.reg.borrow_mut();
        if reg.failures.queue.is_empty() {
            return None;
        }
        reg.failures.queue.pop_front().map(Error::Callback)
    }
}

/// The errors of a context's callbacks on their way out, and the hook.
#[derive(Default)]
pub(crate) struct Failures {
    pub(crate) queue: std::collections::VecDeque<CallbackFailure>,
    pub(crate) hook: Option<ErrorHook>,
}
