//! The error types: [`Error`], [`AddFdError`], which hands the I/O object
//! back, and [`OsError`], a system call's error number.

use std::fmt;
use std::io;
use std::os::fd::RawFd;

/// The error number (`errno`) a system call of the loop failed with: the
/// crate's own type, so that the system-call crate underneath is not part
/// of the API. It converts into a [`std::io::Error`].
///
/// ```
/// use tevent::OsError;
/// let e = OsError::from_raw_os_error(2);                // ENOENT
/// assert_eq!(e.raw_os_error(), 2);
/// assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
/// let io: std::io::Error = e.into();
/// assert_eq!(io.raw_os_error(), Some(2));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OsError(i32);

impl OsError {
    /// The error of this `errno` value.
    pub const fn from_raw_os_error(code: i32) -> OsError {
        OsError(code)
    }

    /// The `errno` value.
    pub const fn raw_os_error(self) -> i32 {
        self.0
    }

    /// What kind of error it is, as [`std::io::Error::kind`] says.
    pub fn kind(self) -> io::ErrorKind {
        io::Error::from_raw_os_error(self.0).kind()
    }
}

impl Error {
    /// The error of a failed system call (inside the crate: no nix type in
    /// the API).
    pub(crate) fn os(e: nix::errno::Errno) -> Error {
        Error::Os(errno(e))
    }
}

/// The crate's error number for a nix one.
pub(crate) fn errno(e: nix::errno::Errno) -> OsError {
    OsError(e as i32)
}

impl fmt::Debug for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OsError({:?})", nix::errno::Errno::from_raw(self.0))
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&io::Error::from_raw_os_error(self.0), f)
    }
}

impl std::error::Error for OsError {}

impl From<OsError> for io::Error {
    fn from(e: OsError) -> io::Error {
        io::Error::from_raw_os_error(e.0)
    }
}

/// Why an operation of the loop did nothing.
///
/// Every operation that returns an `Error` left the context as it was, and
/// the loop stays usable.
///
/// ```
/// use std::time::Duration;
/// use tevent::{Context, Error};
/// let mut ev = Context::new()?;
/// let t = ev.add_timer(None, Duration::from_secs(1), |_, _, _| {})?;
/// ev.heap_mut().free(t.erase())?;
/// assert_eq!(ev.update_timer(t, Duration::from_secs(2)), Err(Error::Stale));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The handle's event was freed (directly or with an ancestor).
    Stale,
    /// The handle belongs to another context.
    ForeignHeap,
    /// A heap operation failed (a stale parent, a memory limit...).
    Heap(talloc::Error),
    /// `loop_once` was called from inside a callback of the same context
    /// (tevent's rule E7). The call did nothing; the outer loop goes on.
    Nested,
    /// The fd is not valid (closed, or not something the backend can watch,
    /// such as a regular file for epoll).
    BadFd {
        /// The fd number.
        fd: RawFd,
        /// What the system said.
        errno: OsError,
    },
    /// The signal number is out of range, cannot be caught (`SIGKILL`,
    /// `SIGSTOP`) or is not supported (real-time signals).
    InvalidSignal(i32),
    /// Too many contexts of this process have signal handlers at once.
    TooManySignalContexts,
    /// No backend has this name (see [`Context::backends`](crate::Context::backends)).
    UnknownBackend(String),
    /// The timer is firing: its callback is running, and it is freed when the
    /// callback returns (tevent's rule E8). Add a new timer instead.
    TimerFiring,
    /// The immediate has no handler to run again: schedule it with one.
    NoHandler,
    /// The request has already finished (done, failed, timed out...).
    NotInProgress,
    /// The queue is running: stop it before untriggering an entry.
    QueueRunning,
    /// The wrapper is in use already: inside
    /// [`use_wrapper`](crate::Context::use_wrapper) or one of its handlers
    /// (C aborts).
    WrapperBusy,
    /// The wrapper's `before_use` hook said no.
    WrapperRefused,
    /// The request already has a profile (C fails the request with
    /// `EINVAL`; here the request goes on).
    AlreadyProfiled,
    /// The context holds as many events of this kind as its handles can
    /// name (2^32 - 1, less slots retired because their generation ran out).
    TooManyEvents,
    /// A system call of the backend failed.
    Os(OsError),
    /// A callback returned an error (and no error hook handled it); the
    /// loop is still usable.
    Callback(crate::CallbackFailure),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Stale => f.write_str("the event was freed"),
            Error::ForeignHeap => f.write_str("the handle belongs to another context"),
            Error::Heap(e) => e.fmt(f),
            Error::Nested => f.write_str("nested loop_once refused"),
            Error::BadFd { fd, .. } => write!(f, "fd {fd} cannot be watched"),
            Error::InvalidSignal(n) => write!(f, "signal {n} cannot be handled"),
            Error::TooManySignalContexts => {
                f.write_str("too many contexts with signal handlers in this process")
            }
            Error::UnknownBackend(name) => write!(f, "no backend named {name:?}"),
            Error::TimerFiring => f.write_str("the timer is firing and is freed afterwards"),
            Error::NoHandler => f.write_str("the immediate has no handler"),
            Error::NotInProgress => f.write_str("the request has already finished"),
            Error::QueueRunning => f.write_str("the queue is running"),
            Error::WrapperBusy => f.write_str("the wrapper is in use already"),
            Error::WrapperRefused => f.write_str("the wrapper refused to be used"),
            Error::AlreadyProfiled => f.write_str("the request already has a profile"),
            Error::TooManyEvents => f.write_str("the context has no room for another event"),
            Error::Os(e) => e.fmt(f),
            Error::Callback(e) => e.fmt(f),
        }
    }
}

/// `Heap`, `Os` and `Callback` are transparent: they show the error they
/// hold, and its cause is theirs (a callback's own error). `BadFd` names the
/// fd and gives what the system said as its `source`.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::BadFd { errno, .. } => Some(errno),
            Error::Callback(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<talloc::Error> for Error {
    fn from(e: talloc::Error) -> Error {
        match e {
            talloc::Error::Stale => Error::Stale,
            talloc::Error::ForeignHeap => Error::ForeignHeap,
            e => Error::Heap(e),
        }
    }
}

/// So that `?` works on `alloc` in functions returning [`Error`] (the
/// value is dropped).
impl<T> From<talloc::AllocError<T>> for Error {
    fn from(e: talloc::AllocError<T>) -> Error {
        e.error.into()
    }
}

/// A failed [`add_fd`](crate::Context::add_fd): the error, and the I/O
/// object, handed back untouched.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use tevent::{Context, Error, FdFlags};
/// let mut ev = Context::new()?;
/// let gone = ev.heap_mut().new_context(None)?;
/// ev.heap_mut().free(gone)?;
/// let (a, _b) = UnixStream::pair()?;
/// let err = ev.add_fd(gone, a, FdFlags::READ, |_, _, _| {}).unwrap_err();
/// assert_eq!(err.error(), &Error::Stale);
/// let a: UnixStream = err.into_io();          // still open
/// # drop(a);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AddFdError<F> {
    error: Error,
    io: F,
}

impl<F> AddFdError<F> {
    pub(crate) fn new(error: Error, io: F) -> Self {
        AddFdError { error, io }
    }

    /// Why the event was not added.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// use tevent::{Context, Error, FdFlags};
    /// let mut ev = Context::new()?;
    /// let (a, b) = UnixStream::pair()?;
    /// ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// // Handles from another context are refused.
    /// let mut other = Context::new()?;
    /// let foreign = other.heap_mut().new_context(None)?;
    /// let err = ev.add_fd(foreign, b, FdFlags::READ, |_, _, _| {}).unwrap_err();
    /// assert_eq!(err.error(), &Error::ForeignHeap);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The I/O object, back to the caller.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use tevent::{Context, FdFlags};
    /// let mut ev = Context::new()?;
    /// let gone = ev.heap_mut().new_context(None)?;
    /// ev.heap_mut().free(gone)?;
    /// let (a, mut b) = UnixStream::pair()?;
    /// let mut a = ev.add_fd(gone, a, FdFlags::READ, |_, _, _| {}).unwrap_err().into_io();
    /// b.write_all(b"x")?;                          // the socket was not closed
    /// let mut buf = [0u8; 1];
    /// a.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_io(self) -> F {
        self.io
    }

    /// Both parts.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::{Context, FdFlags};
    /// # let mut ev = Context::new()?;
    /// # let gone = ev.heap_mut().new_context(None)?;
    /// # ev.heap_mut().free(gone)?;
    /// # let (a, _b) = UnixStream::pair()?;
    /// let (error, io) = ev.add_fd(gone, a, FdFlags::READ, |_, _, _| {}).unwrap_err().into_parts();
    /// # let _ = (error, io);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_parts(self) -> (Error, F) {
        (self.error, self.io)
    }
}

impl<F> fmt::Debug for AddFdError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddFdError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for AddFdError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot add the fd event")
    }
}

impl<F> std::error::Error for AddFdError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<F> From<AddFdError<F>> for Error {
    fn from(e: AddFdError<F>) -> Error {
        e.error
    }
}
