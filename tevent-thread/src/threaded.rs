//! [`ThreadedContext`]: schedule closures on a loop from any thread.

use tevent::{Context, Immediate, Remote, RemoteTask};

use crate::Gone;

/// A threaded context (`tevent_threaded_context`): a `Send + Sync` handle
/// through which any thread schedules work on a loop. Each piece of work
/// runs on the loop's thread as an immediate, pulled in at step 2 of
/// `loop_once`, first in first out.
///
/// Unlike C, scheduling after the loop is gone is an error the caller sees
/// ([`Gone`], with the closure handed back), not a silent no-op.
///
/// ```
/// use tevent_thread::ThreadedContext;
/// let mut ev = tevent::Context::new()?;
/// let tctx = ThreadedContext::new(&mut ev)?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// std::thread::spawn(move || {
///     for i in 0..3 {
///         let tx = tx.clone();
///         tctx.schedule(move |_ev| tx.send(i).unwrap()).unwrap();
///     }
/// }).join().unwrap();
/// for _ in 0..3 { ev.loop_once()?; }
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ThreadedContext {
    remote: Remote,
}

impl ThreadedContext {
    /// A threaded context for the loop `ev`
    /// (`tevent_threaded_context_create`).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let tctx = tevent_thread::ThreadedContext::new(&mut ev)?;
    /// assert!(tctx.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(ev: &mut Context) -> Result<ThreadedContext, tevent::Error> {
        Ok(ThreadedContext {
            remote: ev.remote()?,
        })
    }

    /// Whether the loop is still there.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let tctx = tevent_thread::ThreadedContext::new(&mut ev)?;
    /// drop(ev);
    /// assert!(!tctx.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.remote.is_alive()
    }

    /// Runs `f` on the loop's thread, as an immediate.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let tctx = tevent_thread::ThreadedContext::new(&mut ev)?;
    /// drop(ev);
    /// assert!(tctx.schedule(|_| ()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule<F>(&self, f: F) -> Result<(), Gone<F>>
    where
        F: FnOnce(&mut Context) + Send + 'static,
    {
        self.remote.schedule(f).map_err(|e| Gone(e.into_inner()))
    }

    /// Runs `handler` as the immediate `im`, which the destination loop
    /// created (`tevent_threaded_schedule_immediate`). If `im` was freed on
    /// the loop before its turn comes, nothing runs (no callback of a freed
    /// handle ever runs).
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// let mut ev = tevent::Context::new()?;
    /// let tctx = tevent_thread::ThreadedContext::new(&mut ev)?;
    /// let (live, freed) = (ev.create_immediate(None)?, ev.create_immediate(None)?);
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// for im in [live, freed] {
    ///     let runs = runs.clone();
    ///     tctx.schedule_immediate(im, move |_, _| { runs.fetch_add(1, Ordering::Relaxed); })
    ///         .map_err(|_| "gone")?;
    /// }
    /// ev.free(freed.erase())?;
    /// ev.loop_once()?;
    /// ev.loop_once()?;
    /// assert_eq!(runs.load(Ordering::Relaxed), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule_immediate<H>(&self, im: Immediate, handler: H) -> Result<(), Gone<H>>
    where
        H: FnOnce(&mut Context, Immediate) + Send + 'static,
    {
        let task = Box::new(ImmediateTask { im, handler });
        self.remote
            .schedule_task(task)
            .map_err(|e| Gone(e.into_inner().handler))
    }
}

/// [`ThreadedContext::schedule_immediate`]'s task: a typed task, so a
/// refused one gives its handler back without a shared slot.
struct ImmediateTask<H> {
    im: Immediate,
    handler: H,
}

impl<H> RemoteTask for ImmediateTask<H>
where
    H: FnOnce(&mut Context, Immediate) + Send + 'static,
{
    fn run(self: Box<Self>, ev: &mut Context) {
        let ImmediateTask { im, handler } = *self;
        if ev.heap().contains(im.erase()) {
            handler(ev, im);
        }
    }
}
