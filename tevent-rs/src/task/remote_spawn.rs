//! [`Remote::spawn`]: a task started on a loop from any thread, whose
//! output comes back through a `Send` handle that any thread, or any task
//! of another loop, can await.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;
use talloc::{AnyPtr, IntoParent};

use super::Cancelled;
use crate::{Context, Remote, RemoteTask, ScheduleError};

/// Where the output waits for the handle.
enum Slot<T> {
    Running(Option<Waker>),
    Done(T),
    /// Cancelled, or the output taken.
    Gone,
}

type Shared<T> = Arc<Mutex<Slot<T>>>;

/// The task's side: sets the output, or `Gone` if the task is dropped
/// first (freed, refused, or never started because the loop went).
struct Sender<T>(Shared<T>);

impl<T> Sender<T> {
    fn finish(self, value: T) {
        let old = std::mem::replace(&mut *self.0.lock(), Slot::Done(value));
        if let Slot::Running(Some(w)) = old {
            w.wake();
        }
        // Drop sees `Done` and does nothing.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut slot = self.0.lock();
        if let Slot::Running(w) = &mut *slot {
            let w = w.take();
            *slot = Slot::Gone;
            drop(slot);
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// The handle [`Remote::spawn`] gives: `Send`, awaited from any thread or
/// any executor, it gives the task's output, or [`Cancelled`] if the task
/// was freed (or its loop went) before it finished. Dropping it does not
/// stop the task: the loop's heap owns it.
#[must_use = "the output is lost unless the handle is awaited or taken"]
pub struct RemoteJoin<T> {
    slot: Shared<T>,
}

impl<T> fmt::Debug for RemoteJoin<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.slot.lock() {
            Slot::Running(_) => "running",
            Slot::Done(_) => "done",
            Slot::Gone => "gone",
        };
        write!(f, "RemoteJoin({state})")
    }
}

impl<T> RemoteJoin<T> {
    /// Whether the task has finished, or was cancelled.
    pub fn is_finished(&self) -> bool {
        !matches!(&*self.slot.lock(), Slot::Running(_))
    }

    /// The output, taken, if the task is done: `None` while it runs,
    /// `Some(Err(Cancelled))` if it was cancelled or the output was taken.
    pub fn try_take(&self) -> Option<Result<T, Cancelled>> {
        let mut slot = self.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Gone) {
            Slot::Running(w) => {
                *slot = Slot::Running(w);
                None
            }
            Slot::Done(v) => Some(Ok(v)),
            Slot::Gone => Some(Err(Cancelled)),
        }
    }
}

impl<T> Future for RemoteJoin<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Gone) {
            Slot::Running(w) => {
                let w = match w {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *slot = Slot::Running(Some(w));
                Poll::Pending
            }
            Slot::Done(v) => Poll::Ready(Ok(v)),
            Slot::Gone => Poll::Ready(Err(Cancelled)),
        }
    }
}

/// What goes through the remote queue: the future's maker, its parent,
/// and the output's sender (whose drop, if the loop never runs it, tells
/// the handle).
struct Start<M, T> {
    make: M,
    parent: Option<AnyPtr>,
    out: Sender<T>,
}

impl<M, F> RemoteTask for Start<M, F::Output>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future + 'static,
    F::Output: Send + 'static,
{
    fn run(self: Box<Self>, ev: &mut Context) {
        let Start { make, parent, out } = *self;
        // A parent freed meanwhile refuses the spawn: `out` is dropped, and
        // the handle reads `Cancelled`.
        let _ = ev.spawn(parent, async move {
            let v = make().await;
            out.finish(v);
        });
    }
}

impl Remote {
    /// Starts a task on this remote's loop, from any thread: `make` is sent
    /// there and called on the loop's thread, and the future it makes runs
    /// as a task under `parent` (a handle of that loop's heap, or `None`
    /// for its top level). The future itself need not be `Send` (it may
    /// use the loop's own futures); its output must be. Awaiting the
    /// returned [`RemoteJoin`], on any thread, gives the output, or
    /// [`Cancelled`] if the task was freed or never started (a stale
    /// `parent`, the loop gone first).
    ///
    /// This is how a loop hands work to another loop and gets the result
    /// back: a task on the first awaits the handle, and the second loop's
    /// thread, finishing the task, wakes it through the first loop's own
    /// remote queue.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut worker = tevent::Context::new()?;
    /// worker.set_wait_timeout(Duration::from_millis(5)); // to see `main` end soon
    /// let remote = worker.remote()?;
    /// let main = std::thread::spawn(move || {
    ///     let mut ev = tevent::Context::new().unwrap();
    ///     ev.block_on(async move {
    ///         let job = remote.spawn(None, || async {
    ///             tevent::sleep(Duration::from_millis(1)).await; // on the worker's loop
    ///             6 * 7
    ///         });
    ///         job.map_err(|_| "the worker is gone")?.await.map_err(|_| "cancelled")
    ///     })
    ///     .unwrap()
    /// });
    /// while !main.is_finished() {
    ///     worker.loop_once()?;
    /// }
    /// assert_eq!(main.join().unwrap(), Ok(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ScheduleError`] if the loop is gone; it gives `make` back.
    pub fn spawn<M, F>(
        &self,
        parent: impl IntoParent,
        make: M,
    ) -> Result<RemoteJoin<F::Output>, ScheduleError<M>>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let slot: Shared<F::Output> = Arc::new(Mutex::new(Slot::Running(None)));
        let start = Box::new(Start {
            make,
            parent: parent.into_parent(),
            out: Sender(slot.clone()),
        });
        match self.schedule_task(start) {
            Ok(()) => Ok(RemoteJoin { slot }),
            Err(e) => Err(ScheduleError::new(e.into_inner().make)),
        }
    }
}
