//! What can go wrong when sending to another loop.

use std::fmt;

use talloc::{Ptr, TransferError};

/// Why [`ProxySender::send`](crate::ProxySender::send) did not send. In
/// every case the data is still in the sender's heap.
///
/// ```
/// use tevent_thread::{SendError, ThreadProxy};
/// let mut ev = tevent::Context::new()?;
/// let sender = ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
/// let mut heap = talloc::Talloc::new();
/// let msg = heap.strdup(None, "hello")?;
/// heap.set_destructor(msg, |_, _| Ok(()))?;    // a closure cannot cross threads
/// match sender.send(&mut heap, msg, |_, _| ()) {
///     Err(SendError::Refused(e)) => assert_eq!(e.rule, talloc::TransferRule::Destructor),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(&heap[msg], "hello");              // nothing moved
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum SendError<T: ?Sized> {
    /// The data's handle (or the immediate's) is stale or foreign: nothing
    /// was sent.
    Handle(tevent::Error),
    /// [`schedule`](crate::ProxySender::schedule) got an immediate that is
    /// already scheduled on the sender's loop (C aborts): nothing was sent.
    ImmediateScheduled,
    /// A transfer rule refused an object of the subtree: nothing moved, the
    /// data handle still works.
    Refused(TransferError),
    /// The destination proxy or loop is gone. `data` is the data's handle in
    /// the sender's heap: the same handle when this was noticed before the
    /// data left, or a new one when the destination went away in between
    /// (then the subtree was put back under its old parent, and handles into
    /// it were renewed).
    Gone {
        /// Where the data is now.
        data: Ptr<T>,
    },
}

impl<T: ?Sized> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Handle(e) => f.debug_tuple("Handle").field(e).finish(),
            SendError::Refused(e) => f.debug_tuple("Refused").field(e).finish(),
            SendError::ImmediateScheduled => f.write_str("ImmediateScheduled"),
            SendError::Gone { data } => f.debug_struct("Gone").field("data", data).finish(),
        }
    }
}

impl<T: ?Sized> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Handle(e) => e.fmt(f),
            SendError::Refused(e) => e.fmt(f),
            SendError::ImmediateScheduled => f.write_str("the immediate is already scheduled"),
            SendError::Gone { .. } => f.write_str("the destination loop is gone"),
        }
    }
}

/// `Handle` and `Refused` are transparent: they show the error they hold,
/// which has no cause of its own.
impl<T: ?Sized> std::error::Error for SendError<T> {}

/// The destination loop is gone; the closure comes back, not run.
///
/// ```
/// use tevent_thread::{Gone, ThreadedContext};
/// let mut ev = tevent::Context::new()?;
/// let tctx = ThreadedContext::new(&mut ev)?;
/// drop(ev);
/// let (tx, rx) = std::sync::mpsc::channel();
/// let Err(Gone(f)) = tctx.schedule(move |_| tx.send(1).unwrap()) else {
///     panic!("the loop is gone")
/// };
/// assert!(rx.try_recv().is_err());              // handed back, not run
/// f(&mut tevent::Context::new()?);              // run it somewhere else
/// assert_eq!(rx.recv()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Gone<F>(
    /// The closure, handed back to the caller.
    pub F,
);

impl<F> fmt::Debug for Gone<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gone(..)")
    }
}

impl<F> fmt::Display for Gone<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the destination loop is gone")
    }
}

impl<F> std::error::Error for Gone<F> {}
