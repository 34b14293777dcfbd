//! [`Signals`]: a signal's deliveries, awaited one at a time by a task.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::lend::{try_with, with_task};
use crate::{Delivery, Error, SaFlags, SignalEvent, SignalNumber};

/// What the signal handler and the stream share.
#[derive(Default)]
struct Inbox {
    deliveries: VecDeque<Delivery>,
    waker: Option<Waker>,
    /// The handler is gone (`SA_RESETHAND` after its call, or it was
    /// freed): nothing more comes.
    closed: bool,
}

/// The deliveries of one signal, for the task that made it: a signal
/// handler under the task (freeing the task, or dropping the stream,
/// removes it), whose calls queue up until [`recv`](Signals::recv) takes
/// them, so none is lost between two awaits.
///
/// ```
/// use tevent::{SaFlags, Signal};
/// let mut ev = tevent::Context::new()?;
/// let got = ev.block_on(async {
///     let mut usr1 = tevent::signals(Signal::SIGUSR1, SaFlags::SA_RESTART)?;
///     nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1)?;
///     let d = usr1.recv().await.expect("the handler is there");
///     Ok::<_, Box<dyn std::error::Error>>(d.signal)
/// })??;
/// assert_eq!(got, Signal::SIGUSR1);
/// assert!(!ev.has_events()); // the handler went with the task
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Signals {
    event: SignalEvent,
    inbox: Rc<RefCell<Inbox>>,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("event", &self.event)
            .field("queued", &self.inbox.borrow().deliveries.len())
            .finish()
    }
}

/// Handles `signum` for the current task from now on, as
/// [`add_signal`](crate::Context::add_signal) does with the same flags:
/// each call of the handler becomes one [`Delivery`] of the stream
/// (`SA_SIGINFO` gives one per delivery, with its `siginfo`).
///
/// # Errors
/// Those of `add_signal`: [`Error::InvalidSignal`] for a number it refuses.
///
/// # Panics
/// Outside a task of a tevent loop.
pub fn signals(signum: impl SignalNumber, flags: SaFlags) -> Result<Signals, Error> {
    let inbox: Rc<RefCell<Inbox>> = Rc::default();
    let handler = Closer(inbox.clone());
    let event = with_task(|ev, task| {
        ev.add_signal(task, signum, flags, move |_, _, d| {
            handler.0.borrow_mut().deliveries.push_back(d);
            handler.wake();
        })
    })?;
    Ok(Signals { event, inbox })
}

/// The handler's hold on the inbox: when the handler goes (however it is
/// freed), the stream is closed and a waiting `recv` woken to say so.
struct Closer(Rc<RefCell<Inbox>>);

impl Closer {
    fn wake(&self) {
        let w = self.0.borrow_mut().waker.take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.borrow_mut().closed = true;
        self.wake();
    }
}

impl Signals {
    /// The next delivery, oldest first; `None` once the handler is gone
    /// (after its one call with `SA_RESETHAND`, or once something freed
    /// it) and everything delivered before was taken.
    pub fn recv(&mut self) -> RecvSignal<'_> {
        RecvSignal(self)
    }

    /// The signal event under the task, to steal it elsewhere or free it.
    pub fn event(&self) -> SignalEvent {
        self.event
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Outside a poll the task itself is being freed, and the handler
        // with it (it is the task's child).
        let _ = try_with(|ev| ev.free(self.event));
    }
}

/// The future [`Signals::recv`] gives.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct RecvSignal<'a>(&'a mut Signals);

impl Future for RecvSignal<'_> {
    type Output = Option<Delivery>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Delivery>> {
        let mut inbox = self.0.inbox.borrow_mut();
        if let Some(d) = inbox.deliveries.pop_front() {
            return Poll::Ready(Some(d));
        }
        if inbox.closed {
            return Poll::Ready(None);
        }
        inbox.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
