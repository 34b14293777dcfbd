//! [`Remote`]: how other threads hand work to a loop.
//!
//! A mutex-protected FIFO of `Send` closures plus one eventfd. A sender
//! writes the eventfd only when the queue goes from empty to non-empty, so a
//! burst of sends costs the loop one wake-up. At step 2 of every
//! `loop_once` (E4) the loop moves the whole queue, in order, onto its
//! immediate queue, where each closure runs as an ordinary immediate: one
//! per `loop_once`, after the immediates queued before it.
//!
//! This is the base of the tevent-thread crate's `ThreadProxy` and
//! `ThreadedContext`.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::backend::Internal;
use crate::{Context, Error};

/// A closure sent to a loop from another thread.
pub type RemoteFn = Box<dyn FnOnce(&mut Context) + Send>;

pub(crate) struct RemoteInner {
    /// `None` once the context is gone.
    queue: Mutex<Option<VecDeque<RemoteFn>>>,
    /// Set (under the lock) when the queue holds something: the loop's cheap
    /// check before it takes the lock.
    pending: AtomicBool,
    wake: EventFd,
}

/// A `Send + Sync` handle through which any thread schedules closures on a
/// context's loop ([`Context::remote`]). Each closure runs on the loop's
/// thread as an immediate, in the order they were sent (first in, first
/// out across all senders, as the lock orders them).
///
/// Once the context is gone, [`schedule`](Remote::schedule) fails with
/// [`ScheduleError`], which hands the closure back.
///
/// ```
/// use std::thread;
/// let mut ev = tevent::Context::new()?;
/// let remote = ev.remote()?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let worker = thread::spawn(move || {
///     remote.schedule(move |_ev| tx.send("ran on the loop thread").unwrap()).unwrap();
/// });
/// worker.join().unwrap();
/// ev.loop_once()?;
/// assert_eq!(rx.recv()?, "ran on the loop thread");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Remote {
    inner: Arc<RemoteInner>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// [`Remote::schedule`] failed because the context is gone; the closure
/// comes back.
///
/// ```
/// let mut ev = tevent::Context::new()?;
/// let remote = ev.remote()?;
/// drop(ev);
/// let err = remote.schedule(|_| ()).unwrap_err();
/// let _closure = err.into_inner();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ScheduleError<F>(F);

impl<F> ScheduleError<F> {
    /// The closure that was not scheduled.
    ///
    /// See [`ScheduleError`] for an example.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> fmt::Debug for ScheduleError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScheduleError(..)")
    }
}

impl<F> fmt::Display for ScheduleError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event context is gone")
    }
}

impl<F> std::error::Error for ScheduleError<F> {}

impl Remote {
    /// Queues `f` to run on the loop's thread, with the loop's context.
    /// Never runs it inline, even when called on the loop's own thread.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let remote = ev.remote()?;
    /// remote.schedule(|ev| { ev.heap_mut().strdup(None, "made by a remote closure").unwrap(); })?;
    /// assert_eq!(ev.heap().live_objects(), 0);
    /// ev.loop_once()?;
    /// assert_eq!(ev.heap().live_objects(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule<F>(&self, f: F) -> Result<(), ScheduleError<F>>
    where
        F: FnOnce(&mut Context) + Send + 'static,
    {
        let mut guard = self.inner.queue.lock();
        let Some(q) = guard.as_mut() else {
            return Err(ScheduleError(f));
        };
        let was_empty = q.is_empty();
        q.push_back(Box::new(f));
        self.inner.pending.store(true, Ordering::Release);
        drop(guard);
        if was_empty {
            // The counter cannot overflow: the loop reads it at every drain.
            let _ = self.inner.wake.write(1);
        }
        Ok(())
    }

    /// [`schedule`](Remote::schedule) for an already boxed closure.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let f: tevent::RemoteFn = Box::new(|_| println!("hi"));
    /// ev.remote()?.schedule_boxed(f)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule_boxed(&self, f: RemoteFn) -> Result<(), ScheduleError<RemoteFn>> {
        let mut guard = self.inner.queue.lock();
        let Some(q) = guard.as_mut() else {
            return Err(ScheduleError(f));
        };
        let was_empty = q.is_empty();
        q.push_back(f);
        self.inner.pending.store(true, Ordering::Release);
        drop(guard);
        if was_empty {
            let _ = self.inner.wake.write(1);
        }
        Ok(())
    }

    /// Whether the context still exists (it may go right after this says
    /// yes).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let remote = ev.remote()?;
    /// assert!(remote.is_alive());
    /// drop(ev);
    /// assert!(!remote.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.inner.queue.lock().is_some()
    }

    /// Whether two handles lead to the same context.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// assert!(ev.remote()?.same_context(&ev.remote()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn same_context(&self, other: &Remote) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl RemoteInner {
    fn new() -> Result<RemoteInner, Error> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(Error::Os)?;
        Ok(RemoteInner {
            queue: Mutex::new(Some(VecDeque::new())),
            pending: AtomicBool::new(false),
            wake,
        })
    }

    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Resets the eventfd.
    pub(crate) fn drain(&self) {
        let _ = self.wake.read();
    }

    /// Everything queued, in order (empty when nothing is pending).
    pub(crate) fn take(&self) -> VecDeque<RemoteFn> {
        if !self.pending.load(Ordering::Acquire) {
            return VecDeque::new();
        }
        // Read the eventfd before taking the queue: a send after the take
        // finds the queue empty and writes it again.
        let _ = self.wake.read();
        let mut guard = self.queue.lock();
        self.pending.store(false, Ordering::Relaxed);
        match guard.as_mut() {
            Some(q) => std::mem::take(q),
            None => VecDeque::new(),
        }
    }

    /// The context is going: later sends fail. Gives back what was queued.
    pub(crate) fn close(&self) -> VecDeque<RemoteFn> {
        self.queue.lock().take().unwrap_or_default()
    }
}

impl Context {
    /// The context's [`Remote`] (created on first use; every call gives a
    /// handle to the same queue).
    ///
    /// A pending remote closure does not count as an event for
    /// [`loop_wait`](Context::loop_wait), as C's threaded immediates do not:
    /// a loop that must wait for other threads needs an event of its own (a
    /// long timer, say) or [`loop_until`](Context::loop_until).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let r = ev.remote()?;
    /// std::thread::spawn(move || r.schedule(|_| {}).unwrap()).join().unwrap();
    /// ev.loop_once()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remote(&mut self) -> Result<Remote, Error> {
        let mut reg = self.reg.borrow_mut();
        if let Some(inner) = &reg.remote {
            return Ok(Remote {
                inner: inner.clone(),
            });
        }
        let inner = Arc::new(RemoteInner::new()?);
        reg.backend
            .add_internal(Internal::Remote, inner.wake_fd())?;
        reg.remote = Some(inner.clone());
        Ok(Remote { inner })
    }
}
