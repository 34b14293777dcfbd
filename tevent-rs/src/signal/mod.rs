//! Signal events: a callback when the process receives a signal, run by the
//! loop (never inside the signal handler).
//!
//! The signal handler only counts and wakes the loop through a self-pipe
//! (see `process.rs`); each `loop_once` first runs every pending signal
//! (E4 step 1): signal numbers in ascending order, each read only once the
//! handlers of the lower ones ran (a signal they raise or a handler they
//! add counts in the same pass), the handlers of one signal newest first.
//! Deliveries belong to the signal, not to a handler: a handler added while
//! its signal is pending gets the delivery, even when the handler that was
//! there when it was caught is gone. A plain handler gets the deliveries since its last
//! call coalesced into one `count`; an `SA_SIGINFO` handler gets one call
//! per delivery, with its `siginfo` (E5). An `SA_RESETHAND` handler is
//! freed after its first call. The first handler of a signal in the
//! process installs the action, the last one restores the action found
//! before.

mod number;
mod os;
mod process;

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use talloc::{AnyPtr, IntoParent, Ptr};

use crate::backend::Internal;
use crate::callback::HandlerResult;
use crate::registry::Registry;
use crate::slab::{Id, Slab};
use crate::trace::{self, EventTrace, TracedEvent};
use crate::{Context, Error, Wrapped};

pub use number::{SaFlags, Signal};
pub(crate) use process::drain;
use process::CATCHABLE;

/// The number of signal numbers (`tevent_num_signals`): valid numbers are
/// below it. Only the standard signals 1 to 31 can have handlers.
///
/// ```
/// assert_eq!(tevent::num_signals(), 65);
/// ```
pub fn num_signals() -> i32 {
    65
}

/// How many `siginfo` records are kept per signal between two dispatches
/// (`tevent_sa_info_queue_count`); older ones are delivered without info.
///
/// ```
/// assert_eq!(tevent::sa_info_queue_count(), 256);
/// ```
pub fn sa_info_queue_count() -> usize {
    process::RING as usize
}

/// A signal number: an `i32` or a [`Signal`].
///
/// ```
/// use tevent::{Signal, SignalNumber};
/// assert_eq!(Signal::SIGUSR1.signum(), 10);
/// assert_eq!(10.signum(), 10);
/// ```
pub trait SignalNumber {
    /// The number.
    ///
    /// ```
    /// use tevent::{Signal, SignalNumber};
    /// assert_eq!(Signal::SIGTERM.signum(), 15);
    /// // For an `i32`, call it through the trait: `i32` has a `signum` of its own.
    /// assert_eq!(SignalNumber::signum(15), 15);
    /// ```
    fn signum(self) -> i32;
}

impl SignalNumber for i32 {
    fn signum(self) -> i32 {
        self
    }
}

impl SignalNumber for Signal {
    fn signum(self) -> i32 {
        self.number()
    }
}

/// What the kernel told about one delivery (`siginfo_t`), for handlers
/// added with `SA_SIGINFO`.
///
/// ```
/// let info = tevent::SigInfo { signo: 10, code: 0, errno: 0, pid: 1, uid: 0, status: 0, value: 0 };
/// assert_eq!(info.pid, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    /// The signal number.
    pub signo: i32,
    /// How it was sent (`si_code`: `SI_USER`, `SI_QUEUE`...).
    pub code: i32,
    /// `si_errno`.
    pub errno: i32,
    /// The sender's process id (for signals sent by a process).
    pub pid: i32,
    /// The sender's real user id.
    pub uid: u32,
    /// The exit status or signal (for `SIGCHLD`).
    pub status: i32,
    /// The value sent with `sigqueue` (`si_value`, as an integer).
    pub value: usize,
}

/// One call of a signal handler.
///
/// ```
/// use tevent::{Delivery, Signal};
/// let d = Delivery { signal: Signal::SIGUSR1, count: 2, info: None };
/// assert_eq!(d.count, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The signal.
    pub signal: Signal,
    /// How many deliveries this call stands for: for a plain handler, all
    /// since its last call; for an `SA_SIGINFO` handler 1, or more when
    /// records were lost (then `info` is `None`).
    pub count: u64,
    /// The delivery's `siginfo`, for `SA_SIGINFO` handlers.
    pub info: Option<SigInfo>,
}

/// A handle to a signal event: a child, in the context's heap, of the
/// parent it was added under. Freeing it removes the handler; the last
/// handler of a signal in the process restores the signal's old action.
///
/// ```no_run
/// use tevent::{Context, SaFlags, Signal};
/// let mut ev = Context::new()?;
/// ev.add_signal(None, Signal::SIGTERM, SaFlags::SA_RESTART, |ev, _, d| {
///     println!("terminating after {} SIGTERM(s)", d.count);
/// })?;
/// ev.loop_wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SignalEvent {
    ptr: Ptr<SignalNode>,
    id: Id,
}

impl SignalEvent {
    /// The type-erased heap handle, to free or steal the event.
    ///
    /// ```
    /// # use tevent::{SaFlags, Signal};
    /// # let mut ev = tevent::Context::new()?;
    /// let se = ev.add_signal(None, Signal::SIGWINCH, SaFlags::empty(), |_, _, _| {})?;
    /// ev.heap_mut().free(se.erase())?;       // SIGWINCH's old action is back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

crate::handle_traits!(SignalEvent, "SignalEvent");

type SignalCallback = Box<dyn FnMut(&mut Context, SignalEvent, Delivery)>;

/// The heap object of a signal event.
pub(crate) struct SignalNode {
    id: Id,
    reg: Rc<RefCell<Registry>>,
}

impl Drop for SignalNode {
    fn drop(&mut self) {
        let (gone, traced) = {
            let mut reg = self.reg.borrow_mut();
            let gone = reg.remove_signal(self.id);
            if let Some(node) = gone.as_ref().and_then(|e| e.node) {
                reg.wrappers.unbind(node.erase());
            }
            (gone, reg.tracing.events)
        };
        if let (true, Some(ptr)) = (traced, gone.as_ref().and_then(|e| e.node)) {
            let se = SignalEvent { ptr, id: self.id };
            trace::event(&self.reg, TracedEvent::Signal(se), EventTrace::Detach);
        }
        drop(gone);
    }
}

pub(crate) struct SigEntry {
    node: Option<Ptr<SignalNode>>,
    signal: Signal,
    flags: SaFlags,
    cb: Option<SignalCallback>,
    /// The caller's tag (`tevent_signal_set_tag`).
    tag: u64,
}

/// A context's signal handlers and how far it has read each signal.
#[derive(Default)]
pub(crate) struct Signals {
    slab: Slab<SigEntry>,
    /// Handlers per signal, oldest first.
    by_signal: [Vec<Id>; CATCHABLE],
    seen: [u64; CATCHABLE],
    info_pos: [u64; CATCHABLE],
    /// What was caught for a signal but not yet run when its last handler
    /// went: the next handler added gets it, as in C, whose counters are
    /// per signal rather than per handler.
    parked: [Parked; CATCHABLE],
    /// A handler was added for a parked signal: look, whatever the
    /// generation says.
    recheck: bool,
    last_gen: u64,
    wake: Option<(usize, &'static OwnedFd)>,
}

impl Signals {
    /// Lets a test fill the store (see `Slab::set_capacity`).
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.slab.set_capacity(cap);
    }

    /// Number of signal events.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether a delivery happened since the last pass (perhaps of a signal
    /// this context has no handler for).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.slab.len() > 0 && (self.recheck || process::generation() != self.last_gen)
    }

    /// The read end of the context's self-pipe, while it has handlers.
    pub(crate) fn wake_fd(&self) -> Option<&'static OwnedFd> {
        self.wake.map(|(_, fd)| fd)
    }
}

impl Registry {
    fn add_signal_entry(&mut self, signal: Signal, flags: SaFlags) -> Result<Id, Error> {
        let sig = signal.number() as usize;
        // Room first, so that a full slab changes nothing below.
        if self.sigs.slab.vacant_id().is_none() {
            return Err(Error::TooManyEvents);
        }
        let fresh_wake = self.sigs.wake.is_none();
        if fresh_wake {
            let (slot, rd) = process::acquire_wake()?;
            if let Err(e) = self.backend.add_internal(Internal::Signals, rd.as_fd()) {
                process::release_wake(slot);
                return Err(e);
            }
            self.sigs.wake = Some((slot, rd));
            self.sigs.last_gen = process::generation();
        }
        if let Err(e) = process::install(signal, flags) {
            if fresh_wake {
                self.release_signal_wake();
            }
            return Err(e);
        }
        let (slot, _) = self.sigs.wake.expect("acquired above");
        if self.sigs.by_signal[sig].is_empty() {
            self.sigs.seen[sig] = process::received(sig);
            self.sigs.info_pos[sig] = process::written(sig);
            process::set_interest(slot, sig, true);
            self.sigs.recheck |= !self.sigs.parked[sig].is_empty();
        }
        let id = self
            .sigs
            .slab
            .insert(SigEntry {
                node: None,
                signal,
                flags,
                cb: None,
                tag: 0,
            })
            .map_err(|_| Error::TooManyEvents)?;
        self.sigs.by_signal[sig].push(id);
        Ok(id)
    }

    /// Moves the context's signal wake-ups to a pipe of this process (after
    /// `fork`, the one it has is shared with the parent), registered with
    /// the (new) backend.
    pub(crate) fn renew_signal_wake(&mut self) -> Result<(), Error> {
        let Some((old, _)) = self.sigs.wake else {
            return Ok(());
        };
        let (slot, rd) = process::acquire_wake()?;
        if let Err(e) = self.backend.add_internal(Internal::Signals, rd.as_fd()) {
            process::release_wake(slot);
            return Err(e);
        }
        process::copy_interest(old, slot);
        process::release_wake(old);
        self.sigs.wake = Some((slot, rd));
        Ok(())
    }

    fn release_signal_wake(&mut self) {
        if let Some((slot, rd)) = self.sigs.wake.take() {
            self.backend.remove_internal(rd.as_fd());
            process::release_wake(slot);
        }
    }

    /// Takes a handler out; the last one of the context gives its wake slot
    /// back.
    pub(crate) fn remove_signal(&mut self, id: Id) -> Option<SigEntry> {
        let e = self.sigs.slab.remove(id)?;
        let sig = e.signal.number() as usize;
        self.sigs.by_signal[sig].retain(|x| *x != id);
        process::uninstall(e.signal);
        if self.sigs.by_signal[sig].is_empty() {
            let caught = self.sigs.catch_up(sig);
            self.sigs.parked[sig].add(caught);
            if let Some((slot, _)) = self.sigs.wake {
                process::set_interest(slot, sig, false);
            }
        }
        if self.sigs.slab.len() == 0 {
            self.release_signal_wake();
        }
        Some(e)
    }
}

/// Deliveries of one signal not yet handed to its handlers.
#[derive(Default)]
struct Parked {
    /// For plain handlers: how many.
    count: u64,
    /// For `SA_SIGINFO` handlers: the records still in the ring...
    infos: Vec<SigInfo>,
    /// ...and how many were overwritten before we read them.
    lost: u64,
}

impl Parked {
    fn is_empty(&self) -> bool {
        self.count == 0 && self.infos.is_empty() && self.lost == 0
    }

    fn add(&mut self, more: Parked) {
        self.count += more.count;
        self.infos.extend(more.infos);
        self.lost += more.lost;
    }
}

impl Signals {
    /// Reads what the process caught of `sig` since this context last
    /// looked, and moves its reading position on.
    fn catch_up(&mut self, sig: usize) -> Parked {
        let received = process::received(sig);
        let written = process::written(sig);
        let mut caught = Parked {
            count: received - self.seen[sig],
            ..Parked::default()
        };
        for n in self.info_pos[sig]..written {
            match process::info(sig, n) {
                Some(i) => caught.infos.push(i),
                None => caught.lost += 1,
            }
        }
        self.seen[sig] = received;
        self.info_pos[sig] = written;
        caught
    }

    /// The pending deliveries of `sig` and its handlers (newest first), if
    /// it has both. A signal with none left is dropped (C's pass marks
    /// its counter seen whether or not a handler is left).
    fn take_pending(&mut self, sig: usize) -> Option<(Signal, Parked, Vec<Id>)> {
        let mut pending = std::mem::take(&mut self.parked[sig]);
        let first = *self.by_signal[sig].first()?;
        pending.add(self.catch_up(sig));
        if pending.is_empty() {
            return None;
        }
        let signal = self.slab.get(first)?.signal;
        Some((
            signal,
            pending,
            self.by_signal[sig].iter().rev().copied().collect(),
        ))
    }
}

impl Context {
    /// Adds a handler for a signal (`tevent_add_signal`), a child of `parent`
    /// in the heap. `flags` may hold `SA_RESTART`, `SA_RESETHAND` (the
    /// handler is freed after its first call) and `SA_SIGINFO` (one call per
    /// delivery, with its [`SigInfo`]). The action installed for the signal
    /// uses the `SA_RESTART` flag of the process's first handler, as in C.
    /// `SA_RESETHAND` is never given to the kernel (C passes it on): there it
    /// would reset the signal for every handler at the first delivery, so a
    /// second signal could kill the process while other handlers are still
    /// registered. The reset happens here instead: the handler is freed, and
    /// the old action comes back when the last handler of the signal goes.
    ///
    /// Numbers outside 1 to 31, `SIGKILL` and `SIGSTOP` give
    /// [`Error::InvalidSignal`].
    ///
    /// ```
    /// use tevent::{Context, Error, SaFlags, Signal};
    /// let mut ev = Context::new()?;
    /// assert_eq!(ev.add_signal(None, 99, SaFlags::empty(), |_, _, _| {}).unwrap_err(),
    ///            Error::InvalidSignal(99));
    /// let se = ev.add_signal(None, Signal::SIGUSR2, SaFlags::SA_RESTART, |_, _, d| {
    ///     assert_eq!(d.signal, Signal::SIGUSR2);
    /// })?;
    /// # ev.heap_mut().free(se.erase())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_signal<C, R>(
        &mut self,
        parent: impl IntoParent,
        signum: impl SignalNumber,
        flags: SaFlags,
        mut cb: C,
    ) -> Result<SignalEvent, Error>
    where
        C: FnMut(&mut Context, SignalEvent, Delivery) -> R + 'static,
        R: HandlerResult,
    {
        let n = signum.signum();
        let signal = match Signal::new(n) {
            Some(s) if s != Signal::SIGKILL && s != Signal::SIGSTOP => s,
            _ => return Err(Error::InvalidSignal(n)),
        };
        let parent = parent.into_parent();
        if let Some(p) = parent {
            if !self.heap().contains(p) {
                self.heap().parent(p)?;
            }
        }
        let id = self.reg.borrow_mut().add_signal_entry(signal, flags)?;
        let node = SignalNode {
            id,
            reg: self.reg.clone(),
        };
        let ptr = self.heap_mut().alloc_local(parent, node)?;
        {
            let mut reg = self.reg.borrow_mut();
            if let Some(e) = reg.sigs.slab.get_mut(id) {
                e.node = Some(ptr);
                e.cb = Some(Box::new(move |ev, se, d| {
                    let r = cb(ev, se, d);
                    ev.handled(r)
                }));
            }
            reg.wrappers.bind(ptr.erase());
        }
        let se = SignalEvent { ptr, id };
        self.trace_event(TracedEvent::Signal(se), EventTrace::Attach);
        Ok(se)
    }

    /// The tag of a signal event (`tevent_signal_get_tag`): the caller's number,
    /// 0 until [`set_signal_tag`](Context::set_signal_tag) sets it.
    ///
    /// ```
    /// use tevent::{SaFlags, Signal};
    /// # let mut ev = tevent::Context::new()?;
    /// let se = ev.add_signal(None, Signal::SIGUSR2, SaFlags::empty(), |_, _, _| {})?;
    /// ev.set_signal_tag(se, 3)?;
    /// assert_eq!(ev.signal_tag(se)?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signal_tag(&self, se: SignalEvent) -> Result<u64, Error> {
        let tag = self
            .reg
            .borrow()
            .sigs
            .slab
            .get(se.id)
            .filter(|e| e.node == Some(se.ptr))
            .map(|e| e.tag);
        self.found_or_stale(tag, se.erase())
    }

    /// Sets the tag of a signal event (`tevent_signal_set_tag`).
    /// The loop never reads it: it is there for the caller (and for trace
    /// callbacks) to tell events apart.
    pub fn set_signal_tag(&mut self, se: SignalEvent, tag: u64) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let set = reg
            .sigs
            .slab
            .get_mut(se.id)
            .filter(|e| e.node == Some(se.ptr))
            .map(|e| e.tag = tag);
        drop(reg);
        self.found_or_stale(set, se.erase())
    }

    /// The signal a signal event handles.
    ///
    /// ```
    /// # use tevent::{SaFlags, Signal};
    /// # let mut ev = tevent::Context::new()?;
    /// let se = ev.add_signal(None, Signal::SIGWINCH, SaFlags::empty(), |_, _, _| {})?;
    /// assert_eq!(ev.signal_of(se)?, Signal::SIGWINCH);
    /// # ev.free(se.erase())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signal_of(&self, se: SignalEvent) -> Result<Signal, Error> {
        let reg = self.reg.borrow();
        match reg.sigs.slab.get(se.id) {
            Some(e) if e.node == Some(se.ptr) => Ok(e.signal),
            _ => {
                drop(reg);
                Err(self.stale(se.erase()))
            }
        }
    }

    /// E4 step 1: runs every pending signal. Whether there was one.
    ///
    /// Each signal number is looked at in turn, after the handlers of the
    /// numbers below it ran, as in C: a higher signal that one of them
    /// raises, or a handler one of them adds, is seen in the same pass.
    pub(crate) fn run_signals(&mut self) -> bool {
        {
            let mut reg = self.reg.borrow_mut();
            let sigs = &mut reg.sigs;
            let gen = process::generation();
            if sigs.slab.len() == 0 || (gen == sigs.last_gen && !sigs.recheck) {
                return false;
            }
            sigs.last_gen = gen;
            sigs.recheck = false;
            if let Some((_, rd)) = sigs.wake {
                process::drain(rd);
            }
        }
        let me = self.id;
        let mut ran = false;
        for sig in 1..CATCHABLE {
            let work = self.reg.borrow_mut().sigs.take_pending(sig);
            let Some((signal, pending, handlers)) = work else {
                continue;
            };
            ran = true;
            for id in handlers {
                if !self.deliver(id, signal, &pending) || self.id != me {
                    return true;
                }
            }
        }
        ran
    }

    /// Hands one signal's pending deliveries to one handler. False if the
    /// context was replaced under us.
    fn deliver(&mut self, id: Id, signal: Signal, p: &Parked) -> bool {
        let me = self.id;
        let taken = {
            let mut reg = self.reg.borrow_mut();
            reg.sigs
                .slab
                .get_mut(id)
                .and_then(|e| Some((e.cb.take()?, e.node?, e.flags)))
        };
        let Some((mut cb, node, flags)) = taken else {
            return true;
        };
        let handle = SignalEvent { ptr: node, id };
        let mut calls = Vec::new();
        if flags.contains(SaFlags::SA_SIGINFO) {
            calls.extend(p.infos.iter().map(|i| Delivery {
                signal,
                count: 1,
                info: Some(*i),
            }));
            if p.lost > 0 {
                calls.push(Delivery {
                    signal,
                    count: p.lost,
                    info: None,
                });
            }
        } else if p.count > 0 {
            calls.push(Delivery {
                signal,
                count: p.count,
                info: None,
            });
        }
        let mut panic = None;
        for d in calls {
            self.trace_event(TracedEvent::Signal(handle), EventTrace::BeforeHandler);
            let what = || Wrapped::Signal {
                event: handle,
                delivery: d,
            };
            match self.call_handler(handle.erase(), what, |ev| cb(ev, handle, d)) {
                Ok(()) if self.id == me => {
                    self.trace_event(TracedEvent::Signal(handle), EventTrace::AfterHandler);
                }
                Ok(()) => {}
                Err(e) => {
                    panic = Some(e);
                    break;
                }
            }
            if self.id != me || self.reg.borrow().sigs.slab.get(id).is_none() {
                break;
            }
        }
        if self.id != me {
            return false;
        }
        let back = {
            let mut reg = self.reg.borrow_mut();
            match reg.sigs.slab.get_mut(id) {
                Some(e) if e.cb.is_none() => {
                    e.cb = Some(cb);
                    None
                }
                _ => Some(cb),
            }
        };
        drop(back);
        if flags.contains(SaFlags::SA_RESETHAND) {
            let _ = self.heap_mut().free(node);
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        true
    }
}
