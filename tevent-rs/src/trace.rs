//! Trace hooks: a callback at the loop's trace points
//! (`tevent_set_trace_callback`) and one at each event's
//! (`tevent_set_trace_{fd,timer,immediate,signal,queue}_callback`, merged
//! into one callback that is told which kind of event it sees).
//!
//! The callbacks get no context: they observe. A trace callback that panics
//! is kept; the panic goes on to the caller.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use talloc::AnyPtr;

use crate::registry::Registry;
use crate::{Context, Immediate, QueueEntry, SignalEvent, TimerEvent};

/// A loop trace point (C's `enum tevent_trace_point`).
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use tevent::TracePoint;
/// let mut ev = tevent::Context::new()?;
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let s = seen.clone();
/// ev.set_trace_callback(move |p| s.borrow_mut().push(p));
/// ev.add_timer(None, Duration::from_millis(1), |_, _, _| {})?;
/// ev.loop_once()?;
/// assert_eq!(*seen.borrow(), [TracePoint::BeforeLoopOnce, TracePoint::BeforeWait,
///                             TracePoint::AfterWait, TracePoint::AfterLoopOnce]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracePoint {
    /// The loop is about to wait in the backend.
    BeforeWait,
    /// The backend wait returned.
    AfterWait,
    /// `loop_once` starts.
    BeforeLoopOnce,
    /// `loop_once` ends.
    AfterLoopOnce,
}

/// An event trace point (C's `enum tevent_event_trace_point`, plus
/// [`AfterHandler`](EventTrace::AfterHandler), which C does not have).
///
/// Per event, the points come in this order:
///
/// - fd, signal, queue entry: `Attach` when added; `BeforeHandler` and
///   `AfterHandler` around each call of its handler (a queue entry's
///   trigger, or a blocker's turn at the head); `Detach` when freed.
/// - timer: `Attach` when added, `Detach` then `Attach` on
///   [`update_timer`](crate::Context::update_timer); `BeforeHandler`,
///   `AfterHandler`, `Detach` when it fires.
/// - immediate: `Attach` when scheduled; `BeforeHandler`, `AfterHandler`,
///   `Detach` when it runs, or `Detach` at once if the handler reschedules,
///   cancels or frees it (as C reports it).
///
/// `AfterHandler` is left out when the handler panics.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use tevent::{EventTrace, TracedEvent};
/// let mut ev = tevent::Context::new()?;
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let s = seen.clone();
/// ev.set_event_trace_callback(move |e, p| {
///     if let TracedEvent::Timer(_) = e { s.borrow_mut().push(p) }
/// });
/// ev.add_timer(None, Duration::ZERO, |_, _, _| {})?;
/// ev.loop_once()?;
/// assert_eq!(*seen.borrow(), [EventTrace::Attach, EventTrace::BeforeHandler,
///                             EventTrace::AfterHandler, EventTrace::Detach]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventTrace {
    /// The event joins the loop (added, or an immediate scheduled).
    Attach,
    /// The event leaves the loop (freed, or an immediate cancelled,
    /// rescheduled or taken to run).
    Detach,
    /// Its handler is about to run.
    BeforeHandler,
    /// Its handler returned (ours: C has no such point).
    AfterHandler,
}

/// The event an event trace point is about.
///
/// ```
/// # use std::time::Duration;
/// # let mut ev = tevent::Context::new()?;
/// let t = ev.add_timer(None, Duration::ZERO, |_, _, _| {})?;
/// let e = tevent::TracedEvent::Timer(t);
/// assert_eq!(e.erase(), t.erase());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracedEvent {
    /// An fd event (its heap handle: fd event handles are typed by their I/O
    /// object).
    Fd(AnyPtr),
    /// A timer.
    Timer(TimerEvent),
    /// An immediate.
    Immediate(Immediate),
    /// A signal event.
    Signal(SignalEvent),
    /// A queue entry.
    QueueEntry(QueueEntry),
}

impl TracedEvent {
    /// The event's heap handle.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// ev.set_event_trace_callback(move |e, _| s.borrow_mut().push(e.erase()));
    /// let im = ev.create_immediate(None)?;
    /// ev.free(im.erase())?;
    /// assert!(seen.borrow().iter().all(|&p| p == im.erase()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        match self {
            TracedEvent::Fd(p) => p,
            TracedEvent::Timer(t) => t.erase(),
            TracedEvent::Immediate(i) => i.erase(),
            TracedEvent::Signal(s) => s.erase(),
            TracedEvent::QueueEntry(q) => q.erase(),
        }
    }
}

/// A loop trace callback, as [`Context::take_trace_callback`] hands it back.
pub type LoopTraceFn = Box<dyn FnMut(TracePoint)>;
/// An event trace callback, as [`Context::take_event_trace_callback`] hands
/// it back.
pub type EventTraceFn = Box<dyn FnMut(TracedEvent, EventTrace)>;

/// The context's trace callbacks (in the registry, so that heap objects
/// going away can report their detach).
#[derive(Default)]
pub(crate) struct Tracing {
    on_loop: Option<LoopTraceFn>,
    on_event: Option<EventTraceFn>,
    /// Whether an event callback is set (cheap to test on hot paths).
    pub(crate) events: bool,
    pub(crate) loop_points: bool,
}

/// Calls the event trace callback, if any, outside the registry borrow.
pub(crate) fn event(reg: &RefCell<Registry>, e: TracedEvent, p: EventTrace) {
    let cb = reg.borrow_mut().tracing.on_event.take();
    let Some(mut cb) = cb else { return };
    let r = catch_unwind(AssertUnwindSafe(|| cb(e, p)));
    {
        let mut reg = reg.borrow_mut();
        if reg.tracing.on_event.is_none() && reg.tracing.events {
            reg.tracing.on_event = Some(cb);
        }
    }
    if let Err(p) = r {
        resume_unwind(p);
    }
}

/// Calls the loop trace callback, if any.
pub(crate) fn point(reg: &RefCell<Registry>, p: TracePoint) {
    let cb = reg.borrow_mut().tracing.on_loop.take();
    let Some(mut cb) = cb else { return };
    let r = catch_unwind(AssertUnwindSafe(|| cb(p)));
    {
        let mut reg = reg.borrow_mut();
        if reg.tracing.on_loop.is_none() && reg.tracing.loop_points {
            reg.tracing.on_loop = Some(cb);
        }
    }
    if let Err(p) = r {
        resume_unwind(p);
    }
}

impl Context {
    /// Sets the loop trace callback (`tevent_set_trace_callback`), replacing
    /// any previous one.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use tevent::TracePoint;
    /// # let mut ev = tevent::Context::new()?;
    /// let passes = Rc::new(Cell::new(0));
    /// let p = passes.clone();
    /// ev.set_trace_callback(move |point| {
    ///     if point == TracePoint::AfterLoopOnce {
    ///         p.set(p.get() + 1);
    ///     }
    /// });
    /// for _ in 0..3 {
    ///     ev.add_timer(None, std::time::Duration::ZERO, |_, _, _| {})?;
    ///     ev.loop_once()?;
    /// }
    /// assert_eq!(passes.get(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_trace_callback(&mut self, cb: impl FnMut(TracePoint) + 'static) {
        let mut reg = self.reg.borrow_mut();
        reg.tracing.on_loop = Some(Box::new(cb));
        reg.tracing.loop_points = true;
    }

    /// Removes the loop trace callback.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// ev.set_trace_callback(|_| panic!("not called"));
    /// ev.clear_trace_callback();
    /// ev.add_timer(None, std::time::Duration::ZERO, |_, _, _| {})?;
    /// ev.loop_once()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_trace_callback(&mut self) {
        drop(self.take_trace_callback());
    }

    /// Takes the loop trace callback out (`tevent_get_trace_callback`), to
    /// chain it: the new callback owns the old one and calls it on.
    /// Called from inside the callback itself, it finds `None`.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tevent::TracePoint;
    /// # let mut ev = tevent::Context::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let l = log.clone();
    /// ev.set_trace_callback(move |p| l.borrow_mut().push(format!("first {p:?}")));
    /// let mut first = ev.take_trace_callback().expect("set above");
    /// let l = log.clone();
    /// ev.set_trace_callback(move |p| {
    ///     l.borrow_mut().push(format!("second {p:?}"));
    ///     first(p);
    /// });
    /// ev.loop_once()?;
    /// assert_eq!(log.borrow()[..2], ["second BeforeLoopOnce", "first BeforeLoopOnce"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_get_trace_callback")]
    pub fn take_trace_callback(&mut self) -> Option<LoopTraceFn> {
        let mut reg = self.reg.borrow_mut();
        reg.tracing.loop_points = false;
        reg.tracing.on_loop.take()
    }

    /// Sets the event trace callback, replacing any previous one: it sees
    /// every event's attach, detach and before-handler points.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tevent::{EventTrace, TracedEvent};
    /// # let mut ev = tevent::Context::new()?;
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// ev.set_event_trace_callback(move |e, p| s.borrow_mut().push((e, p)));
    /// let t = ev.add_timer(None, std::time::Duration::from_secs(60), |_, _, _| {})?;
    /// ev.free(t.erase())?;                    // never fires: attach, then detach
    /// let timer = TracedEvent::Timer(t);
    /// assert_eq!(*seen.borrow(), [(timer, EventTrace::Attach), (timer, EventTrace::Detach)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_event_trace_callback(&mut self, cb: impl FnMut(TracedEvent, EventTrace) + 'static) {
        let mut reg = self.reg.borrow_mut();
        reg.tracing.on_event = Some(Box::new(cb));
        reg.tracing.events = true;
    }

    /// Removes the event trace callback.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// ev.set_event_trace_callback(|_, _| -> () { panic!("not called") });
    /// ev.clear_event_trace_callback();
    /// ev.create_immediate(None)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_event_trace_callback(&mut self) {
        drop(self.take_event_trace_callback());
    }

    /// Takes the event trace callback out (C's
    /// `tevent_get_trace_{fd,timer,immediate,signal,queue}_callback`), to
    /// chain it as [`take_trace_callback`](Context::take_trace_callback)
    /// shows.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// assert!(ev.take_event_trace_callback().is_none());
    /// ev.set_event_trace_callback(|_, _| {});
    /// assert!(ev.take_event_trace_callback().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_get_trace_fd_callback")]
    #[doc(alias = "tevent_get_trace_timer_callback")]
    #[doc(alias = "tevent_get_trace_immediate_callback")]
    #[doc(alias = "tevent_get_trace_signal_callback")]
    #[doc(alias = "tevent_get_trace_queue_callback")]
    pub fn take_event_trace_callback(&mut self) -> Option<EventTraceFn> {
        let mut reg = self.reg.borrow_mut();
        reg.tracing.events = false;
        reg.tracing.on_event.take()
    }

    /// Reports an event trace point, when an event callback is set.
    #[inline]
    pub(crate) fn trace_event(&self, e: TracedEvent, p: EventTrace) {
        if self.reg.borrow().tracing.events {
            event(&self.reg, e, p);
        }
    }
}
