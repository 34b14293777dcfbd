//! [`Remote`]: how other threads hand work to a loop.
//!
//! A mutex-protected FIFO of `Send` tasks plus one eventfd. Before it
//! waits, the loop *arms* the queue (under the lock, and only if the queue
//! is empty; otherwise it takes the work instead of waiting); the first
//! send after that disarms it and writes the eventfd. So a sender makes a
//! system call only when the loop may be asleep, a burst of sends costs the
//! loop one wake-up, and a busy loop gets none. The loop reads the eventfd
//! only when a wait reports it. At step 2 of every `loop_once` (E4) the loop
//! takes the whole queue, in order, and each task then runs as an ordinary
//! immediate: one per `loop_once`, after the immediates queued before it.
//!
//! The buffers keep their capacity: a take swaps the senders' buffer with
//! an empty one of the loop's. When nothing else is queued
//! (the usual case) the loop runs the batch straight from its buffer, ahead
//! of the immediate queue (everything in that queue was scheduled after the
//! batch); otherwise each task joins the immediate queue's tail.
//!
//! This is the base of the tevent-thread crate's `ThreadProxy`, and it is
//! what C calls a threaded context (`tevent_threaded_context`).

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::backend::Internal;
use crate::callback::HandlerResult;
use crate::registry::Registry;
use crate::{Context, Error, Immediate};

/// A closure sent to a loop from another thread.
///
/// ```
/// use tevent::RemoteFn;
/// let mut ev = tevent::Context::new()?;
/// let jobs: Vec<RemoteFn> = vec![
///     Box::new(|ev| { ev.heap_mut().alloc_str(None, "a").unwrap(); }),
///     Box::new(|ev| { ev.heap_mut().alloc_str(None, "b").unwrap(); }),
/// ];
/// let remote = ev.remote()?;
/// for job in jobs {
///     remote.schedule_boxed(job)?;
/// }
/// ev.loop_once()?;
/// ev.loop_once()?;
/// assert_eq!(ev.heap().live_objects(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type RemoteFn = Box<dyn FnOnce(&mut Context) + Send>;

/// Work for a loop, sent with [`Remote::schedule_task`], which hands the
/// task back whole, with its type, when the loop is gone. Every `Send`
/// closure that takes the context is one; a type of one's own lets the
/// sender take its parts back out of a refused task without sharing them
/// (no `Arc<Mutex<Option<_>>>` slot).
///
/// ```
/// use tevent::{Context, RemoteTask};
///
/// struct Job {
///     input: Vec<u8>,
/// }
///
/// impl RemoteTask for Job {
///     fn run(self: Box<Self>, ev: &mut Context) {
///         ev.heap_mut().alloc_slice(None, &self.input[..]).unwrap();
///     }
/// }
///
/// let mut ev = Context::new()?;
/// let remote = ev.remote()?;
/// remote.schedule_task(Box::new(Job { input: vec![1, 2, 3] }))?;
/// ev.loop_once()?;
/// assert_eq!(ev.heap().live_objects(), 1);
///
/// drop(ev);
/// let back = remote.schedule_task(Box::new(Job { input: vec![4] })).unwrap_err();
/// assert_eq!(back.into_inner().input, [4]);   // the task, not run
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RemoteTask: Send + 'static {
    /// Runs the task on the loop's thread, with the loop's context.
    ///
    /// ```
    /// use tevent::{Context, RemoteTask};
    /// // Every `Send` closure that takes the context is a task.
    /// let task: Box<dyn RemoteTask> = Box::new(|ev: &mut Context| {
    ///     ev.heap_mut().new_context(None).unwrap();
    /// });
    /// let mut ev = Context::new()?;
    /// task.run(&mut ev);                       // what the loop does with it
    /// assert_eq!(ev.heap().live_objects(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn run(self: Box<Self>, ev: &mut Context);
}

impl<F> RemoteTask for F
where
    F: FnOnce(&mut Context) + Send + 'static,
{
    #[inline]
    fn run(self: Box<Self>, ev: &mut Context) {
        (*self)(ev)
    }
}

/// [`Remote::schedule`]'s task: a closure whose result goes where every
/// callback's does. Typed, so a refused one gives the closure back.
struct Closure<F, R>(F, PhantomData<fn() -> R>);

impl<F, R> RemoteTask for Closure<F, R>
where
    F: FnOnce(&mut Context) -> R + Send + 'static,
    R: HandlerResult + 'static,
{
    #[inline]
    fn run(self: Box<Self>, ev: &mut Context) {
        let r = (self.0)(ev);
        ev.report(r);
    }
}

/// [`Remote::schedule_immediate`]'s task.
struct ImmediateTask<H, R>(Immediate, H, PhantomData<fn() -> R>);

impl<H, R> RemoteTask for ImmediateTask<H, R>
where
    H: FnOnce(&mut Context, Immediate) -> R + Send + 'static,
    R: HandlerResult + 'static,
{
    fn run(self: Box<Self>, ev: &mut Context) {
        let ImmediateTask(im, handler, _) = *self;
        if ev.heap().contains(im) {
            let r = handler(ev, im);
            ev.report(r);
        }
    }
}

/// What the queue holds: one allocation per task, the task itself.
pub(crate) type Task = Box<dyn RemoteTask>;

/// The part of the queue under the lock.
struct Queue {
    tasks: VecDeque<Task>,
    /// Set by the loop before it waits (with `tasks` empty), cleared by the
    /// first send after that, which then writes the eventfd, and by a take.
    armed: bool,
}

pub(crate) struct RemoteInner {
    /// `None` once the context is gone.
    queue: Mutex<Option<Queue>>,
    /// Set (under the lock) when the queue holds something: the loop's cheap
    /// check before it takes the lock.
    pending: AtomicBool,
    /// Cleared when the context goes (a cheaper look than the lock, for
    /// wakes on the loop's own thread, which cannot race with it).
    open: AtomicBool,
    wake: EventFd,
}

/// A `Send + Sync` handle through which any thread schedules closures (or
/// [`RemoteTask`]s) on a context's loop ([`Context::remote`]). Each runs on
/// the loop's thread as an immediate, in the order they were sent (first
/// in, first out across all senders, as the lock orders them).
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
    pub(crate) fn new(f: F) -> ScheduleError<F> {
        ScheduleError(f)
    }

    /// The closure that was not scheduled.
    ///
    /// See [`ScheduleError`] for an example.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let remote = ev.remote()?;
    /// drop(ev);
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let err = remote.schedule(move |_| tx.send("ran").unwrap()).unwrap_err();
    /// let f = err.into_inner();                 // the closure, not run
    /// assert!(rx.try_recv().is_err());
    /// f(&mut tevent::Context::new()?);
    /// assert_eq!(rx.recv()?, "ran");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// Queues `f` to run on the loop's thread, with the loop's context
    /// (C's `tevent_threaded_context` is this handle). Never runs it inline,
    /// even when called on the loop's own thread. `f` may return `()` or
    /// `Result<(), CallbackError>`: an error comes out of the loop's
    /// `loop_once`, as any callback's does.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let remote = ev.remote()?;
    /// remote.schedule(|ev| { ev.heap_mut().alloc_str(None, "made by a remote closure").unwrap(); })?;
    /// assert_eq!(ev.heap().live_objects(), 0);
    /// ev.loop_once()?;
    /// assert_eq!(ev.heap().live_objects(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_threaded_context_create")]
    pub fn schedule<F, R>(&self, f: F) -> Result<(), ScheduleError<F>>
    where
        F: FnOnce(&mut Context) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let task = Box::new(Closure(f, PhantomData));
        self.push(task).map_err(|b| ScheduleError(b.0))
    }

    /// Runs `handler` as the immediate `im`, which the loop's own thread
    /// created (`tevent_threaded_schedule_immediate`). If `im` was freed on
    /// the loop before its turn comes, nothing runs: no callback of a freed
    /// handle ever runs.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// let mut ev = tevent::Context::new()?;
    /// let remote = ev.remote()?;
    /// let (live, freed) = (ev.create_immediate(None)?, ev.create_immediate(None)?);
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// for im in [live, freed] {
    ///     let runs = runs.clone();
    ///     std::thread::spawn({
    ///         let remote = remote.clone();
    ///         move || remote.schedule_immediate(im, move |_, _| { runs.fetch_add(1, Ordering::Relaxed); })
    ///     })
    ///     .join()
    ///     .unwrap()?;
    /// }
    /// ev.free(freed)?;
    /// ev.loop_once()?;
    /// ev.loop_once()?;
    /// assert_eq!(runs.load(Ordering::Relaxed), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_threaded_schedule_immediate")]
    pub fn schedule_immediate<H, R>(
        &self,
        im: Immediate,
        handler: H,
    ) -> Result<(), ScheduleError<H>>
    where
        H: FnOnce(&mut Context, Immediate) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let task = Box::new(ImmediateTask(im, handler, PhantomData));
        self.push(task).map_err(|b| ScheduleError(b.1))
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
        self.push(Box::new(f)).map_err(|b| ScheduleError(*b))
    }

    /// [`schedule`](Remote::schedule) for a boxed task of a type of one's
    /// own: once the context is gone, the error gives back the same box,
    /// typed, so the sender can take its contents out again. See
    /// [`RemoteTask`] for an example.
    ///
    /// ```
    /// use tevent::{Context, RemoteTask};
    /// struct Count(u32);
    /// impl RemoteTask for Count {
    ///     fn run(self: Box<Self>, ev: &mut Context) {
    ///         ev.heap_mut().alloc(None, self.0).unwrap();
    ///     }
    /// }
    /// let mut ev = Context::new()?;
    /// let remote = ev.remote()?;
    /// std::thread::spawn(move || remote.schedule_task(Box::new(Count(7))).map_err(|_| "gone").unwrap())
    ///     .join()
    ///     .unwrap();
    /// ev.loop_once()?;
    /// let p = ev.heap().top_level().next().unwrap();
    /// assert_eq!(ev.heap()[ev.heap().downcast::<u32>(p)?], 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule_task<T: RemoteTask>(&self, task: Box<T>) -> Result<(), ScheduleError<Box<T>>> {
        self.push(task).map_err(ScheduleError)
    }

    /// Queues a task (boxed before the lock is taken; the push into the
    /// buffer only allocates when the buffer must grow, which a busy queue
    /// soon stops doing: the buffers keep their capacity).
    #[inline]
    fn push<T: RemoteTask>(&self, task: Box<T>) -> Result<(), Box<T>> {
        let mut guard = self.inner.queue.lock(); // S1
        let Some(q) = guard.as_mut() else {
            return Err(task); // S2
        };
        q.tasks.push_back(task); // S3
        self.inner.pending.store(true, Ordering::Release); // S4
        let wake = std::mem::replace(&mut q.armed, false); // S5
        drop(guard); // S6
        if wake {
            // S7: the loop is waiting, or about to. The counter cannot
            // overflow: it grows by one per arming of the loop at most.
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

    /// Whether the context still exists, as seen without the lock: exact on
    /// the loop's own thread, a hint elsewhere.
    pub(crate) fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::Acquire)
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
            .map_err(Error::os)?;
        Ok(RemoteInner {
            queue: Mutex::new(Some(Queue {
                tasks: VecDeque::new(),
                armed: false,
            })),
            pending: AtomicBool::new(false),
            open: AtomicBool::new(true),
            wake,
        })
    }

    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Resets the eventfd, after a wait reported it (L7). This is the only
    /// place the loop reads it.
    pub(crate) fn drain(&self) {
        let _ = self.wake.read();
    }

    /// Swaps everything queued, in order, into `out` (which must be empty)
    /// and leaves `out`'s buffer behind for the senders: the two buffers
    /// keep their capacity, so a busy queue neither reallocates under the
    /// lock nor frees a buffer per batch. Called once `pending` was seen
    /// set (L1, in `Registry::pull_remote`). The loop is awake: senders
    /// need not wake it until it arms the queue again.
    #[inline]
    fn take_into(&self, out: &mut VecDeque<Task>) {
        debug_assert!(out.is_empty());
        let mut guard = self.queue.lock(); // L2
        self.pending.store(false, Ordering::Relaxed); // L3
        if let Some(q) = guard.as_mut() {
            std::mem::swap(&mut q.tasks, out); // L4
            q.armed = false;
        }
        // L5: unlock.
    }

    /// Before the loop waits (A1–A3): true if it may wait, the queue armed
    /// so that the next send writes the eventfd; false if something is
    /// queued, which the loop then takes instead of waiting.
    pub(crate) fn arm(&self) -> bool {
        let mut guard = self.queue.lock(); // A1
        match guard.as_mut() {
            Some(q) if q.tasks.is_empty() => {
                q.armed = true; // A2
                true
            }
            Some(_) => false,
            None => true,
        }
        // A3: unlock.
    }

    /// In a forked child: as [`close`](RemoteInner::close), unless a thread
    /// of the parent held the lock when the process forked (that thread
    /// does not exist here, so the lock is never let go): then the queue is
    /// left as it is, and nothing in this process can reach it but old
    /// handles, whose sends then wait forever... which is why the lock is
    /// only tried.
    pub(crate) fn abandon(&self) -> VecDeque<Task> {
        self.open.store(false, Ordering::Release);
        match self.queue.try_lock() {
            Some(mut q) => q.take().map(|q| q.tasks).unwrap_or_default(),
            None => VecDeque::new(),
        }
    }

    /// The context is going: later sends fail. Gives back what was queued.
    pub(crate) fn close(&self) -> VecDeque<Task> {
        self.open.store(false, Ordering::Release);
        self.queue
            .lock()
            .take()
            .map(|q| q.tasks)
            .unwrap_or_default()
    }
}

impl Registry {
    /// E4 step 2: takes the remote queue. With no immediate queued, the
    /// batch joins the loop's own batch buffer, which runs before the
    /// immediate queue: every immediate queued later is queued after the
    /// batch, so the order is the one a push onto the queue would give,
    /// without a slab entry per task. Otherwise each task goes to the
    /// queue's tail.
    #[inline(always)]
    pub(crate) fn pull_remote(&mut self) {
        let Some(inner) = &self.remote else {
            return;
        };
        // L1: the cheap check; nothing pending, no lock.
        if !inner.pending.load(Ordering::Acquire) {
            return;
        }
        if self.imms.queued() == 0 && self.remote_batch.is_empty() {
            inner.take_into(&mut self.remote_batch);
            return;
        }
        let mut more = std::mem::take(&mut self.remote_spare);
        inner.take_into(&mut more);
        if self.imms.queued() == 0 {
            self.remote_batch.append(&mut more);
        } else {
            for t in more.drain(..) {
                self.imms
                    .push_once(Box::new(move |ev: &mut Context| t.run(ev)));
            }
        }
        self.remote_spare = more;
    }

    /// Drops the remote queue (in a forked child: its eventfd is shared
    /// with the parent, and its senders are the parent's threads): its old
    /// handles fail from now on, and the next [`Context::remote`] makes a
    /// new one. Gives back the tasks to drop, outside the registry.
    pub(crate) fn forget_remote(&mut self) -> Vec<Task> {
        let mut gone: Vec<Task> = self.remote_batch.drain(..).collect();
        if let Some(inner) = self.remote.take() {
            self.backend.remove_internal(inner.wake_fd());
            gone.extend(inner.abandon());
        }
        gone
    }

    /// Arms the remote queue before a wait: false if remote work is queued,
    /// to be taken instead of waiting.
    #[inline]
    pub(crate) fn arm_remote(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.arm())
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
