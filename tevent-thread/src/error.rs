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
/// let msg = heap.alloc_str(None, "hello")?;
/// heap.set_destructor(msg, |_, _| Ok(()))?;    // a closure cannot cross threads
/// match sender.send(&mut heap, msg, |_, _| ()) {
///     Err(SendError::Transfer(e)) => assert_eq!(e.rule, talloc::TransferRule::Destructor),
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
    Transfer(TransferError),
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
            SendError::Transfer(e) => f.debug_tuple("Refused").field(e).finish(),
            SendError::ImmediateScheduled => f.write_str("ImmediateScheduled"),
            SendError::Gone { data } => f.debug_struct("Gone").field("data", data).finish(),
        }
    }
}

impl<T: ?Sized> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Handle(e) => e.fmt(f),
            SendError::Transfer(e) => e.fmt(f),
            SendError::ImmediateScheduled => f.write_str("the immediate is already scheduled"),
            SendError::Gone { .. } => f.write_str("the destination loop is gone"),
        }
    }
}

/// `Handle` and `Refused` are transparent: they show the error they hold,
/// which has no cause of its own.
impl<T: ?Sized> std::error::Error for SendError<T> {}

/// A message that arrived but could not be put in the destination's heap
/// (the heap is full, or a memory limit refused it). Its data is freed; the
/// error goes where a failing callback's does on the destination loop: to
/// its error hook, or out of its `loop_once` as
/// [`tevent::Error::Callback`], whose source this is. C drops such a
/// message without a word.
///
/// ```
/// use tevent_thread::DeliveryError;
/// let e = DeliveryError { error: tevent::Error::TooManyEvents };
/// assert_eq!(e.to_string(), "a proxy message could not be delivered");
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// Why the destination refused the message (a heap error, or no room
    /// for another event).
    pub error: tevent::Error,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a proxy message could not be delivered")
    }
}

/// The cause is the heap's [`error`](DeliveryError::error).
impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why [`ProxySender::send_value`](crate::ProxySender::send_value) did not
/// send: the value comes back in every case.
///
/// ```
/// use tevent_thread::{SendValueError, ThreadProxy};
/// let mut ev = tevent::Context::new()?;
/// let sender = ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
/// drop(ev);
/// let err = sender.send_value(vec![1, 2], |_, _| ()).unwrap_err();
/// assert!(matches!(err, SendValueError::Gone(_)));
/// assert_eq!(err.into_value(), [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum SendValueError<T> {
    /// The destination proxy or its loop is gone.
    Gone(T),
    /// Something the send needed could not be made: the value could not be
    /// packed (no memory, or over 4 GiB), or a call's reply proxy.
    Failed(tevent::Error, T),
}

impl<T> SendValueError<T> {
    /// The value that was not sent.
    pub fn into_value(self) -> T {
        match self {
            SendValueError::Gone(v) | SendValueError::Failed(_, v) => v,
        }
    }
}

impl<T> fmt::Debug for SendValueError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendValueError::Gone(_) => f.write_str("Gone(..)"),
            SendValueError::Failed(e, _) => {
                f.debug_tuple("Failed").field(e).finish_non_exhaustive()
            }
        }
    }
}

impl<T> fmt::Display for SendValueError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendValueError::Gone(_) => f.write_str("the destination loop is gone"),
            SendValueError::Failed(..) => f.write_str("the value could not be sent"),
        }
    }
}

/// `Failed` gives the error as its `source`.
impl<T> std::error::Error for SendValueError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendValueError::Failed(e, _) => Some(e),
            SendValueError::Gone(_) => None,
        }
    }
}
