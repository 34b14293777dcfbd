//! What can go wrong when sending to another loop.

use std::fmt;

use talloc::{Ptr, TransferError};

/// Why [`ProxySender::send`](crate::ProxySender::send) did not send. In
/// every case the data is still in the sender's heap.
pub enum SendError<T: ?Sized> {
    /// The data's handle (or the immediate's) is stale or foreign: nothing
    /// was sent.
    Handle(tevent::Error),
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
            SendError::Gone { data } => f.debug_struct("Gone").field("data", data).finish(),
        }
    }
}

impl<T: ?Sized> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Handle(e) => write!(f, "cannot send: {e}"),
            SendError::Refused(e) => write!(f, "transfer refused: {e}"),
            SendError::Gone { .. } => f.write_str("the destination loop is gone"),
        }
    }
}

impl<T: ?Sized> std::error::Error for SendError<T> {}

/// The destination loop is gone; the closure comes back, not run.
pub struct Gone<F>(pub F);

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
