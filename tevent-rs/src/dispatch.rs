//! Running the loop: `loop_once` (tevent's rule E4), `loop_wait`,
//! `loop_until`.
//!
//! One `loop_once` does the first of these that has work, then returns:
//!
//! 1. every pending signal;
//! 2. (not counted as work) every closure sent through a
//!    [`Remote`](crate::Remote) moves onto the immediate queue;
//! 3. one immediate, the head of the queue, or one poll of an async task
//!    woken on this thread: the two take turns while both wait, and after
//!    64 task polls in a row steps 4 and 5 get a turn (the wait does not
//!    block then);
//! 4. one timer, if the first is due;
//! 5. otherwise it waits, until the first timer is due or for the wait
//!    timeout, and runs at most one fd handler (or the timer that became due).
//!
//! A callback that returns an error: the pass ends as usual and the error
//! comes out of `loop_once` as `Error::Callback` (unless the error hook
//! handles it), one per call when several are queued (callback.rs).
//!
//! A callback that panics: the panic reaches the caller of `loop_once`; the
//! event keeps its callback (a timer is freed, as after any firing) and the
//! context stays usable.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use talloc::AnyPtr;

use crate::backend::{Backend, Waited};
use crate::immediate::{ImmHandler, OnceFn, Popped};
use crate::registry::{internal_fds, Shared};
use crate::remote::Task;
use crate::slab::Id;
use crate::timer::FireFn;
use crate::trace::{self, EventTrace, TracePoint, TracedEvent};
use crate::{Context, Error, FdFlags, Immediate, TimerEvent, Wrapped};

/// Woken tasks polled in a row at most, before timers and fds get a turn
/// (tokio checks its I/O driver every 61 scheduler ticks).
const TASK_POLLS_PER_WAIT: u32 = 64;

/// What `loop_once` does next.
enum Step {
    Signals,
    /// An immediate's handler, and whether events are traced.
    Immediate(Immediate, ImmHandler, bool),
    /// A one-shot closure.
    Once(OnceFn),
    /// A task from another thread, taken at step 2.
    Remote(Task),
    /// An async task woken on this thread, to poll.
    Poll(AnyPtr),
    Timer(FireFn, TimerEvent, Instant, bool),
    /// Nothing to run: wait, until the next timer's deadline if any.
    Wait(Option<Instant>),
}

/// Marks the context's registry as inside `loop_once`, until dropped (even by
/// a panic). It holds the registry itself, so a context swapped out by a
/// callback is still reset.
struct Nesting(Shared);

impl Drop for Nesting {
    fn drop(&mut self) {
        self.0.borrow_mut().depth = 0;
    }
}

impl Context {
    /// Dispatches at most one unit of events (`tevent_loop_once`; see the
    /// order above). With nothing registered it waits for the wait timeout
    /// and returns `Ok` (E6).
    ///
    /// Called from inside one of this context's callbacks it does nothing and
    /// returns [`Error::Nested`] (E7); the context stays usable.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// let mut ev = tevent::Context::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let l = log.clone();
    /// ev.add_timer(None, Duration::ZERO, move |_, _, _| l.borrow_mut().push("timer"))?;
    /// let im = ev.create_immediate(None)?;
    /// let l = log.clone();
    /// ev.schedule_immediate(im, move |ev, _| {
    ///     l.borrow_mut().push("immediate");
    ///     assert_eq!(ev.loop_once(), Err(tevent::Error::Nested));
    /// })?;
    /// ev.loop_once()?;
    /// ev.loop_once()?;
    /// assert_eq!(*log.borrow(), ["immediate", "timer"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loop_once(&mut self) -> Result<(), Error> {
        let (nesting, tracing) = {
            let mut reg = self.reg.borrow_mut();
            if reg.depth > 0 {
                return Err(Error::Nested);
            }
            reg.depth = 1;
            (Nesting(Rc::clone(&self.reg)), reg.tracing.loop_points)
        };
        if tracing {
            trace::point(&self.reg, TracePoint::BeforeLoopOnce);
        }
        let r = self.loop_once_inner();
        if tracing {
            trace::point(&self.reg, TracePoint::AfterLoopOnce);
        }
        drop(nesting);
        r.map_err(|e| *e)?;
        match self.next_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `loop_once` while any event is registered
    /// ([`has_events`](Context::has_events)); returns `Ok` once none is
    /// left (`tevent_loop_wait`, E6).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let mut ev = tevent::Context::new()?;
    /// let n = Rc::new(Cell::new(0));
    /// for ms in [3, 1, 2] {
    ///     let n = n.clone();
    ///     ev.add_timer(None, Duration::from_millis(ms), move |_, _, _| n.set(n.get() + 1))?;
    /// }
    /// ev.loop_wait()?;
    /// assert_eq!(n.get(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loop_wait(&mut self) -> Result<(), Error> {
        // Refused inside a callback even when nothing is pending, like
        // every other nested loop call.
        self.refuse_nested()?;
        while self.has_events() {
            self.loop_once()?;
        }
        Ok(())
    }

    /// Runs `loop_once` until `done` returns true (checked before each pass;
    /// C's deprecated `tevent_loop_until`).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let mut ev = tevent::Context::new()?;
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// ev.add_timer(None, Duration::from_millis(1), move |_, _, _| f.set(true))?;
    /// ev.add_timer(None, Duration::from_secs(3600), |_, _, _| {})?;
    /// ev.loop_until(|_| fired.get())?;       // does not wait an hour
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn loop_until(&mut self, mut done: impl FnMut(&mut Context) -> bool) -> Result<(), Error> {
        self.refuse_nested()?;
        while !done(self) {
            self.loop_once()?;
        }
        Ok(())
    }

    /// `Err(Nested)` inside a callback of this context (E7).
    fn refuse_nested(&self) -> Result<(), Error> {
        if self.reg.borrow().depth > 0 {
            return Err(Error::Nested);
        }
        Ok(())
    }

    // Inlined so that its `Result` is not returned through memory (a
    // store-forwarding stall that costs a fifth of an immediate's time).
    #[inline(always)]
    // The error is boxed: an `Ok` is then one word, cheap to hand back.
    fn loop_once_inner(&mut self) -> Result<(), Box<Error>> {
        loop {
            match self.next_step() {
                Step::Signals => {
                    if self.run_signals() {
                        return Ok(());
                    }
                }
                Step::Immediate(handle, f, traced) => {
                    self.run_immediate(handle, f, traced);
                    return Ok(());
                }
                Step::Once(f) => {
                    if let Err(p) = self.call(f) {
                        resume_unwind(p);
                    }
                    return Ok(());
                }
                Step::Remote(t) => {
                    if let Err(p) = self.call(|ev| t.run(ev)) {
                        resume_unwind(p);
                    }
                    return Ok(());
                }
                // A task freed since its wake is skipped in this pass, not
                // given a pass of its own.
                Step::Poll(task) => {
                    if crate::task::poll(self, task) {
                        return Ok(());
                    }
                }
                Step::Timer(fire, handle, deadline, traced) => {
                    self.run_timer(fire, handle, deadline, traced);
                    return Ok(());
                }
                // Remote work came after the take: go round and take it.
                Step::Wait(_) if !self.reg.borrow().arm_remote() => {}
                Step::Wait(next) => match self.wait_once(next).map_err(Box::new)? {
                    Waited::Fd(id, flags) => {
                        if self.run_fd(id, flags) {
                            return Ok(());
                        }
                    }
                    Waited::Internal(which) => self.reg.borrow().drain_internal(which),
                    // Something was ready but nobody is told (a hang-up on a
                    // write-only event): C's loop_once returns here too.
                    Waited::Nothing => return Ok(()),
                    Waited::Interrupted => {}
                    Waited::Timeout => match next {
                        // A timer came due: the next round fires it.
                        Some(deadline) if Self::due(&mut self.now, deadline) => {}
                        // The wait timeout passed with nothing to do (E6).
                        _ => return Ok(()),
                    },
                },
            }
        }
    }

    /// Steps 1 to 4 of E4 under one look at the registry: what to run now,
    /// or how long to wait.
    #[inline(always)]
    fn next_step(&mut self) -> Step {
        let mut reg = self.reg.borrow_mut();
        let reg = &mut *reg;
        if reg.sigs.pending() {
            return Step::Signals;
        }
        reg.pull_remote();
        // Taken remote tasks first: every queued immediate came after them.
        if let Some(t) = reg.remote_batch.pop_front() {
            return Step::Remote(t);
        }
        // Woken tasks and immediates take turns, so that neither starves
        // the other; the check costs nothing while no task lives. Every
        // TASK_POLLS_PER_WAIT polls, timers and fds get a turn too (the
        // wait does not block while tasks are ready): a task that keeps
        // yielding cannot starve them.
        if reg.tasks > 0 {
            if reg.woken.is_empty() {
                crate::task::take_woken(&self.heap, &mut reg.woken);
            }
            // Queued immediates go before timers and fds anyway (E4): the
            // turn waits until they are done, tasks alternating with them.
            let io_turn = reg.task_polls >= TASK_POLLS_PER_WAIT && reg.imms.queued() == 0;
            if !io_turn && (reg.tasks_turn || reg.imms.queued() == 0) {
                if let Some(t) = reg.woken.pop_front() {
                    reg.tasks_turn = false;
                    reg.task_polls += 1;
                    return Step::Poll(t);
                }
            }
            reg.tasks_turn = true;
        }
        let traced = reg.tracing.events;
        match reg.imms.pop_front() {
            Some(Popped::Handler(im, f)) => return Step::Immediate(im, f, traced),
            Some(Popped::Once(f)) => return Step::Once(f),
            None => {}
        }
        match reg.timers.first() {
            Some((in_run, deadline)) if Self::due(&mut self.now, deadline) => {
                match reg.timers.take_first(in_run) {
                    Some((fire, handle, deadline)) => {
                        reg.task_polls = 0; // the timers had their turn
                        Step::Timer(fire, handle, deadline, traced)
                    }
                    None => Step::Wait(None),
                }
            }
            Some((_, deadline)) => Step::Wait(Some(deadline)),
            None => Step::Wait(None),
        }
    }

    /// Runs a callback, catching a panic so that the caller can put things
    /// back before it goes on.
    #[inline]
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Context) -> R,
    ) -> Result<R, Box<dyn Any + Send>> {
        catch_unwind(AssertUnwindSafe(|| f(self)))
    }

    /// E4 step 3: one immediate.
    #[inline(always)]
    fn run_immediate(&mut self, handle: Immediate, mut f: ImmHandler, traced: bool) {
        let me = self.id;
        let e = TracedEvent::Immediate(handle);
        if traced {
            // C reports the Detach once the handler is done with it.
            self.reg.borrow_mut().imms.owe_detach(handle.id());
            trace::event(&self.reg, e, EventTrace::BeforeHandler);
        }
        let r = self.call_handler(
            handle.erase(),
            || Wrapped::Immediate(handle),
            |ev| f(ev, handle),
        );
        if self.id == me {
            let (back, owed) = {
                let mut reg = self.reg.borrow_mut();
                let owed = traced && reg.imms.take_detach_owed(handle.id());
                (reg.imms.restore(handle.id(), f), owed)
            };
            drop(back);
            if traced && r.is_ok() {
                self.trace_event(e, EventTrace::AfterHandler);
            }
            if owed {
                self.trace_event(e, EventTrace::Detach);
            }
        }
        if let Err(p) = r {
            resume_unwind(p);
        }
    }

    /// Whether a deadline has passed, reading the clock only when the last
    /// reading says no.
    #[inline]
    fn due(now: &mut Instant, deadline: Instant) -> bool {
        if deadline <= *now {
            return true;
        }
        *now = Instant::now();
        deadline <= *now
    }

    /// E4 step 4: one due timer.
    #[inline]
    fn run_timer(&mut self, fire: FireFn, handle: TimerEvent, deadline: Instant, traced: bool) {
        if traced {
            trace::event(
                &self.reg,
                TracedEvent::Timer(handle),
                EventTrace::BeforeHandler,
            );
        }
        let me = self.id;
        let r = self.call_handler(
            handle.erase(),
            || Wrapped::Timer {
                event: handle,
                deadline,
            },
            |ev| fire(ev, handle, deadline),
        );
        if self.id == me {
            if traced && r.is_ok() {
                self.trace_event(TracedEvent::Timer(handle), EventTrace::AfterHandler);
            }
            // E8: a timer is freed once it fired (unless its callback did),
            // unless it is a repeating timer that asked to fire again.
            let again = matches!(r, Ok(Some(at)) if self.rearm_timer(handle, at));
            if !again {
                let _ = self.heap.free(handle.erase());
            }
        }
        if let Err(p) = r {
            resume_unwind(p);
        }
    }

    /// E4 step 5: [`wait`](Self::wait), without blocking while woken
    /// tasks are waiting their turn; afterwards they have theirs again.
    fn wait_once(&mut self, next: Option<Instant>) -> Result<Waited, Error> {
        let tasks_ready = !self.reg.borrow().woken.is_empty();
        let waited = if tasks_ready {
            self.wait(Some(self.now))
        } else {
            self.wait(next)
        };
        self.reg.borrow_mut().task_polls = 0;
        waited
    }

    /// Waits for an fd, the next timer or the wait timeout.
    fn wait(&mut self, next: Option<Instant>) -> Result<Waited, Error> {
        let timeout = match next {
            Some(deadline) => {
                self.now = Instant::now();
                deadline
                    .saturating_duration_since(self.now)
                    .min(self.wait_timeout)
            }
            None => self.wait_timeout,
        };
        let tracing = self.reg.borrow().tracing.loop_points;
        if tracing {
            trace::point(&self.reg, TracePoint::BeforeWait);
        }
        let waited = {
            let mut reg = self.reg.borrow_mut();
            let reg = &mut *reg;
            match &reg.backend {
                Backend::Poll(_) => {
                    let internal = internal_fds(&reg.sigs, &reg.remote);
                    reg.backend
                        .wait(&self.heap, &mut reg.fds, &internal, Some(timeout))
                }
                Backend::Epoll(_) => reg
                    .backend
                    .wait(&self.heap, &mut reg.fds, &[], Some(timeout)),
            }
        };
        if tracing {
            trace::point(&self.reg, TracePoint::AfterWait);
        }
        waited
    }

    /// Calls an fd event's handler; false if the event is gone.
    fn run_fd(&mut self, id: Id, flags: FdFlags) -> bool {
        let Some((mut cb, node)) = self
            .reg
            .borrow_mut()
            .fds
            .get_mut(id)
            .and_then(|e| Some((e.cb.take()?, e.node?)))
        else {
            return false;
        };
        self.trace_event(TracedEvent::Fd(node), EventTrace::BeforeHandler);
        let me = self.id;
        let r = self.call_handler(
            node,
            || Wrapped::Fd { event: node, flags },
            |ev| cb(ev, flags),
        );
        if self.id == me {
            if r.is_ok() {
                self.trace_event(TracedEvent::Fd(node), EventTrace::AfterHandler);
            }
            let back = {
                let mut reg = self.reg.borrow_mut();
                match reg.fds.get_mut(id) {
                    Some(e) if e.cb.is_none() => {
                        e.cb = Some(cb);
                        None
                    }
                    _ => Some(cb),
                }
            };
            drop(back);
        }
        if let Err(p) = r {
            resume_unwind(p);
        }
        true
    }
}
