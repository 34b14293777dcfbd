//! [`Context`]: the event loop and the heap it owns.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use talloc::{AnyPtr, Talloc};

use crate::backend::{Backend, NAMES};
use crate::registry::{Registry, Shared};
use crate::Error;

/// Index into [`NAMES`] of the default backend.
static DEFAULT_BACKEND: AtomicUsize = AtomicUsize::new(0);
/// Gives every context its own id, to notice a context replaced from
/// inside one of its callbacks.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An event loop that owns a talloc heap (C's `struct tevent_context`).
///
/// Every event is an object in [`heap`](Context::heap): fd events
/// ([`add_fd`](Context::add_fd)), timers ([`add_timer`](Context::add_timer)),
/// immediates ([`create_immediate`](Context::create_immediate)) and signal
/// events ([`add_signal`](Context::add_signal)), each a child of the parent
/// the caller names. Freeing an event, or any of its ancestors, takes it off
/// the loop: no callback of a freed event ever runs. Callbacks get
/// `&mut Context`, so they may add, free and reschedule anything, their own
/// event included.
///
/// Dropping the context drops the heap and every event in it: fd events
/// close their I/O objects (or run their close functions), signal handlers
/// go and restore the signals' actions, and a [`Remote`](crate::Remote)
/// refuses further work (C's rule E3).
///
/// A context is not `Send`: its events and their callbacks belong to its
/// thread. Other threads reach it through [`remote`](Context::remote).
///
/// ```
/// use std::time::Duration;
/// use tevent::Context;
/// let mut ev = Context::new()?;
/// let conn = ev.heap_mut().new_context(None)?;      // owns the connection's events
/// ev.add_timer(conn, Duration::from_secs(30), |_, _, _| println!("idle timeout"))?;
/// let im = ev.create_immediate(conn)?;
/// ev.schedule_immediate(im, |_, _| println!("start"))?;
/// ev.heap_mut().free(conn)?;                        // cancels both
/// assert!(!ev.has_events());
/// ev.loop_wait()?;                                  // returns at once
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Context {
    /// Boxed, so that moving the context (as `task::lend` does at every
    /// poll of a task) moves a few words, not the heap's bookkeeping.
    pub(crate) heap: Box<Talloc>,
    pub(crate) reg: Shared,
    pub(crate) id: u64,
    /// The last time read from the clock (timers due by then are due now).
    pub(crate) now: Instant,
    pub(crate) wait_timeout: Duration,
}

impl Context {
    /// A loop on the default backend (epoll, unless
    /// [`set_default_backend`](Context::set_default_backend) chose another).
    ///
    /// ```
    /// let ev = tevent::Context::new()?;
    /// assert_eq!(ev.backend_name(), "epoll");
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn new() -> Result<Context, Error> {
        Context::with_backend(NAMES[DEFAULT_BACKEND.load(Ordering::Relaxed)])
    }

    /// A loop on the named backend (`tevent_context_init_byname`): one of
    /// [`backends`](Context::backends), else [`Error::UnknownBackend`].
    /// C's other names are taken too: `"standard"` is epoll, falling back
    /// to poll where epoll cannot be had (as C's standard backend does), and
    /// `"poll_mt"` is poll (every context here belongs to one thread; threads
    /// reach it through [`Remote`](crate::Remote)).
    ///
    /// ```
    /// let ev = tevent::Context::with_backend("poll")?;
    /// assert_eq!(ev.backend_name(), "poll");
    /// assert_eq!(tevent::Context::with_backend("standard")?.backend_name(), "epoll");
    /// assert_eq!(tevent::Context::with_backend("poll_mt")?.backend_name(), "poll");
    /// assert!(tevent::Context::with_backend("kqueue").is_err());
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn with_backend(name: &str) -> Result<Context, Error> {
        let backend = Backend::new(name)?;
        Ok(Context {
            heap: Box::new(Talloc::new()),
            reg: Rc::new(RefCell::new(Registry::new(backend))),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            now: Instant::now(),
            wait_timeout: Duration::from_secs(30),
        })
    }

    /// The backends there are, the default first (`tevent_backend_list`).
    ///
    /// ```
    /// assert_eq!(tevent::Context::backends(), ["epoll", "poll"]);
    /// ```
    pub fn backends() -> &'static [&'static str] {
        NAMES
    }

    /// Makes `name` the backend of [`Context::new`] for the whole process
    /// (`tevent_set_default_backend`).
    ///
    /// ```
    /// use tevent::Context;
    /// Context::set_default_backend("poll")?;
    /// assert_eq!(Context::new()?.backend_name(), "poll");
    /// Context::set_default_backend("epoll")?;
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn set_default_backend(name: &str) -> Result<(), Error> {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| Error::UnknownBackend(name.to_string()))?;
        DEFAULT_BACKEND.store(i, Ordering::Relaxed);
        Ok(())
    }

    /// The name of this loop's backend.
    ///
    /// ```
    /// assert_eq!(tevent::Context::with_backend("epoll")?.backend_name(), "epoll");
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn backend_name(&self) -> &'static str {
        self.reg.borrow().backend.name()
    }

    /// The heap that holds the events and whatever the program puts there.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// assert!(ev.heap().contains(im.erase()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heap(&self) -> &Talloc {
        &self.heap
    }

    /// The heap, mutably: freeing an event (or an ancestor) here takes it off
    /// the loop.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let state = ev.heap_mut().alloc(None, 0u32)?;
    /// ev.heap_mut()[state] += 1;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heap_mut(&mut self) -> &mut Talloc {
        &mut self.heap
    }

    /// Frees an object of the heap with its subtree, taking every event in it
    /// off the loop (shorthand for `heap_mut().free(p)`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let t = ev.add_timer(None, Duration::from_secs(1), |_, _, _| {})?;
    /// ev.free(t.erase())?;
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn free(&mut self, p: impl Into<AnyPtr>) -> Result<(), Error> {
        Ok(self.heap.free(p)?)
    }

    /// How long one `loop_once` waits when nothing is due (C: always 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut ev = tevent::Context::new()?;
    /// assert_eq!(ev.wait_timeout(), Duration::from_secs(30));
    /// ev.set_wait_timeout(Duration::from_millis(1));
    /// ev.loop_once()?;                       // nothing registered: back after 1 ms
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn set_wait_timeout(&mut self, timeout: Duration) {
        self.wait_timeout = timeout;
    }

    /// The wait timeout (see [`set_wait_timeout`](Context::set_wait_timeout)).
    ///
    /// ```
    /// assert_eq!(tevent::Context::new()?.wait_timeout().as_secs(), 30);
    /// # Ok::<(), tevent::Error>(())
    /// ```
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// Whether any event is registered (`tevent_common_have_events`): an fd
    /// event (even with empty flags), a pending timer, a queued immediate or
    /// a signal event. [`loop_wait`](Context::loop_wait) runs while this
    /// holds.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// assert!(!ev.has_events());             // created, not scheduled
    /// ev.schedule_immediate(im, |_, _| {})?;
    /// assert!(ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_events(&self) -> bool {
        self.reg.borrow().has_events()
    }
}

impl Context {
    /// The error for a handle whose registry entry is not there: the heap
    /// tells a freed event from another context's.
    pub(crate) fn stale(&self, p: AnyPtr) -> Error {
        match self.heap.parent(p) {
            Err(e) => e.into(),
            Ok(_) => Error::Stale,
        }
    }

    /// What an accessor found for the event `p`, or why nothing: the event
    /// was freed, or belongs to another context.
    pub(crate) fn found_or_stale<R>(&self, found: Option<R>, p: AnyPtr) -> Result<R, Error> {
        found.ok_or_else(|| self.stale(p))
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = self.reg.borrow();
        f.debug_struct("Context")
            .field("backend", &reg.backend.name())
            .field("fd_events", &reg.fds.len())
            .field("timers", &reg.timers.queued())
            .field("immediates", &reg.queued_immediates())
            .field("signal_events", &reg.sigs.len())
            .field("heap", &self.heap)
            .finish()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // Remote senders fail from now on; what they queued is dropped.
        let remote = self.reg.borrow_mut().remote.take();
        if let Some(r) = remote {
            drop(r.close());
        }
        // No task of this heap is woken on this thread from now on (the
        // remote is closed): take out those that were.
        crate::task::forget_woken(&self.heap);
        // Dropping the heap drops every event's node: each takes itself off
        // the loop, fds are closed (or given to their close functions),
        // signal actions are restored.
        let heap = std::mem::take(&mut *self.heap); // the box stays, empty
        drop(heap);
        let left = {
            let mut reg = self.reg.borrow_mut();
            let batch = std::mem::take(&mut reg.remote_batch);
            (reg.imms.take_all_once(), batch)
        };
        drop(left);
    }
}
