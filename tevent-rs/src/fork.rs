//! After `fork`: [`Context::re_initialise`] and [`cached_getpid`].
//!
//! A forked child inherits the context's memory, and with it fds it shares
//! with the parent: the epoll instance, the signal wake pipe, the eventfd
//! of the [`Remote`](crate::Remote) queue. Used from both processes they
//! would steal each other's wake-ups (and the child's epoll changes would
//! be the parent's too). `re_initialise` gives the child's context fds of
//! its own and keeps every event.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Context, Error};

/// The pid [`cached_getpid`] gives; 0 until first asked.
static CACHED_PID: AtomicU32 = AtomicU32::new(0);

/// The process id, without a system call after the first
/// (`tevent_cached_getpid`).
///
/// C refreshes its cache in a `pthread_atfork` child hook; here the cache
/// is refreshed by [`Context::re_initialise`], which a child calls after
/// `fork` anyway. In a child that has not called it yet, this is still the
/// parent's pid: call `re_initialise` first (or `std::process::id()`).
///
/// ```
/// assert_eq!(tevent::cached_getpid(), std::process::id());
/// ```
pub fn cached_getpid() -> u32 {
    match CACHED_PID.load(Ordering::Relaxed) {
        0 => refresh_pid(),
        pid => pid,
    }
}

fn refresh_pid() -> u32 {
    let pid = std::process::id();
    CACHED_PID.store(pid, Ordering::Relaxed);
    pid
}

impl Context {
    /// Makes the context work in a child process after `fork`
    /// (`tevent_re_initialise`): a new backend instance, with every fd
    /// event registered again; a signal wake pipe of the child's own; and
    /// a new [`Remote`](crate::Remote) queue. Every event stays, with its
    /// handler, flags and tags; it also refreshes [`cached_getpid`].
    ///
    /// Work other threads sent before the fork is dropped unrun (the
    /// parent runs it), and the context's old `Remote` handles fail from
    /// now on: threads do not survive a fork, so a child's senders must
    /// take a new handle. Call it in the child before anything else runs on
    /// the context, and on each context the child keeps.
    ///
    /// C detaches every event and leaves the caller to add them again
    /// (its epoll backend re-adds fds by itself when it notices the new
    /// pid); here they all keep working. An fd that cannot be registered
    /// again (it was closed behind the loop's back) gives its
    /// [`Error::BadFd`] after the rest is done.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let mut ev = tevent::Context::new()?;
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// ev.add_timer(None, Duration::ZERO, move |_, _, _| f.set(true))?;
    /// // (in the child, after fork:)
    /// ev.re_initialise()?;
    /// ev.loop_once()?;
    /// assert!(fired.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_re_initialise")]
    pub fn re_initialise(&mut self) -> Result<(), Error> {
        let fresh = self.reg.borrow().backend.renewed()?;
        let (old_backend, forgotten, firsts) = {
            let mut reg = self.reg.borrow_mut();
            let reg = &mut *reg;
            let old = fresh.map(|b| std::mem::replace(&mut reg.backend, b));
            if let Err(e) = reg.renew_signal_wake() {
                // Nothing changed yet but the backend: put it back.
                if let Some(old) = old {
                    reg.backend = old;
                }
                return Err(e);
            }
            let forgotten = reg.forget_remote();
            let firsts = match old {
                Some(_) => reg.fds.forget_registrations(),
                None => Vec::new(),
            };
            (old, forgotten, firsts)
        };
        // Closes this process's copy of the old instance only.
        drop(old_backend);
        drop(forgotten);
        refresh_pid();
        let mut first_error = None;
        for id in firsts {
            let mut reg = self.reg.borrow_mut();
            let reg = &mut *reg;
            let Some(fd) = reg.fds.get(id).and_then(|e| e.io_fd(&self.heap)) else {
                continue;
            };
            if let Err(e) = reg.backend.sync(&mut reg.fds, fd) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
