//! Tasks: futures that run on the loop and live in its heap.
//!
//! [`Context::spawn`] puts a future in a heap object, a child of the parent
//! it names. The loop polls it when it is woken; freeing the task, its
//! parent or any ancestor drops the future at once, with everything it
//! registered (its timers are children of the task). The spawner awaits
//! the output through the [`Task`] handle, which reads [`Cancelled`] if the
//! task was freed first. Wakers are `Send + Sync`: on the loop's thread a
//! wake is a push onto a thread-local list; from another thread it goes
//! through the loop's [`Remote`](crate::Remote) queue and wakes the loop
//! (wake.rs). A waker of a freed task does nothing.
//!
//! Inside a task, [`with`] lends the running task its context for the
//! length of a closure: the borrow never spans an `.await`.

mod futures;
mod io;
mod lend;
mod remote_spawn;
mod signals;
mod wake;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use talloc::{AnyPtr, IntoParent};

pub use futures::{recv, sleep, sleep_until, yield_now, Recv, Sleep, YieldNow};
pub use io::{Async, Ready};
pub use lend::{try_with, with, with_task};
pub use remote_spawn::RemoteJoin;
pub use signals::{signals, RecvSignal, Signals};
pub(crate) use wake::{forget_woken, take_woken};

use wake::TaskWaker;

use crate::registry::Registry;
use crate::{Context, Error};

/// A spawned future's heap object: 32 bytes, so the heap keeps it inline
/// (no allocation of its own). What else a task needs lives in the boxed
/// future (see [`Context::spawn`]).
struct TaskNode {
    /// The future, out of the node while it is polled.
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// Out of the node while it is polled, as the future is.
    waker: Option<Waker>,
}

/// Counts a live task in the registry (a live task is work, for
/// `has_events`) until the task's future is done or dropped.
struct Live(Rc<RefCell<Registry>>);

impl Live {
    fn new(reg: &Rc<RefCell<Registry>>) -> Live {
        reg.borrow_mut().tasks += 1;
        Live(reg.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Futures are dropped outside any registry borrow: by a poll, or by
        // a heap free (which never runs inside one, as for timers).
        self.0.borrow_mut().tasks -= 1;
    }
}

/// Polls a task once, if it is still there (the loop's step for a woken
/// task, and what a wake from another thread schedules); false if it was
/// not (freed since its wake: nothing polls a freed task).
pub(crate) fn poll(ev: &mut Context, task: AnyPtr) -> bool {
    let Ok(node) = ev.heap.downcast::<TaskNode>(task) else {
        return false;
    };
    let Some((mut fut, waker)) = ev
        .heap
        .get_mut(node)
        .ok()
        .and_then(|n| Some((n.fut.take()?, n.waker.take()?)))
    else {
        return false;
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lend::lend(ev, task, || {
            fut.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_ready()
        })
    }));
    match r {
        Ok(false) => match ev.heap.get_mut(node) {
            Ok(n) => {
                n.fut = Some(fut);
                n.waker = Some(waker);
            }
            Err(_) => drop(fut), // it freed itself while it ran
        },
        Ok(true) => {
            drop(fut);
            let _ = ev.heap.free(task); // done: the object goes, as a fired timer
        }
        Err(p) => {
            drop(fut);
            let _ = ev.heap.free(task);
            std::panic::resume_unwind(p);
        }
    }
    true
}

/// The spawner's side of a task: its output once it is done, or
/// [`Cancelled`] if it was freed first. Dropping the handle does not stop
/// the task (the heap owns it); free the task for that.
pub struct Task<T> {
    ptr: AnyPtr,
    state: Rc<RefCell<JoinState<T>>>,
}

enum JoinState<T> {
    Running(Option<Waker>),
    Done(T),
    Taken,
    Cancelled,
}

impl<T> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task {
            ptr: self.ptr,
            state: self.state.clone(),
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.state.borrow() {
            JoinState::Running(_) => "running",
            JoinState::Done(_) => "done",
            JoinState::Taken => "taken",
            JoinState::Cancelled => "cancelled",
        };
        write!(f, "Task({:?}, {state})", self.ptr)
    }
}

impl<T> From<&Task<T>> for AnyPtr {
    fn from(t: &Task<T>) -> AnyPtr {
        t.ptr
    }
}

impl<T> IntoParent for &Task<T> {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.ptr)
    }
}

impl<T> Task<T> {
    /// The task's heap object (free it to cancel the task).
    pub fn erase(&self) -> AnyPtr {
        self.ptr
    }

    /// Whether the task has finished, or was cancelled.
    pub fn is_finished(&self) -> bool {
        !matches!(&*self.state.borrow(), JoinState::Running(_))
    }

    /// The output, taken, if the task is done: `None` while it runs,
    /// `Some(Err(Cancelled))` if it was freed first or the output was
    /// taken already.
    pub fn try_take(&self) -> Option<Result<T, Cancelled>> {
        let mut s = self.state.borrow_mut();
        match std::mem::replace(&mut *s, JoinState::Taken) {
            JoinState::Running(w) => {
                *s = JoinState::Running(w);
                None
            }
            JoinState::Done(v) => Some(Ok(v)),
            JoinState::Taken | JoinState::Cancelled => {
                *s = JoinState::Cancelled;
                Some(Err(Cancelled))
            }
        }
    }

    /// A future of the task's output, for another task to await.
    pub fn join(&self) -> Join<T> {
        Join(self.clone())
    }
}

/// The future [`Task::join`] gives.
#[must_use = "futures do nothing unless awaited"]
pub struct Join<T>(Task<T>);

impl<T> fmt::Debug for Join<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Join").field(&self.0).finish()
    }
}

impl<T> Future for Join<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.0.try_take() {
            return Poll::Ready(r);
        }
        if let JoinState::Running(w) = &mut *self.0.state.borrow_mut() {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Sets the output (or cancellation) of a task when the wrapped future
/// finishes or is dropped.
struct Output<T>(Rc<RefCell<JoinState<T>>>);

impl<T> Output<T> {
    fn finish(&self, value: T) {
        let old = std::mem::replace(&mut *self.0.borrow_mut(), JoinState::Done(value));
        if let JoinState::Running(Some(w)) = old {
            w.wake();
        }
    }
}

impl<T> Drop for Output<T> {
    fn drop(&mut self) {
        let mut s = self.0.borrow_mut();
        if matches!(&*s, JoinState::Running(_)) {
            if let JoinState::Running(Some(w)) = std::mem::replace(&mut *s, JoinState::Cancelled) {
                drop(s);
                w.wake();
            }
        }
    }
}

/// The task was freed before it finished (or its output was taken
/// already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task was cancelled")
    }
}

impl std::error::Error for Cancelled {}

impl Context {
    /// Runs `fut` on this loop as a task, an object in the heap under
    /// `parent`. It is first polled from the loop (never inside `spawn`),
    /// then whenever its waker is woken. Freeing the task, its parent or
    /// any ancestor drops the future at once (right after its current
    /// poll, if it frees itself); a finished task's object goes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut ev = tevent::Context::new()?;
    /// let conn = ev.heap_mut().new_context(None)?;
    /// let task = ev.spawn(conn, async {
    ///     tevent::sleep(Duration::from_millis(1)).await;
    ///     42
    /// })?;
    /// let other = ev.spawn(None, async { tevent::sleep(Duration::from_secs(3600)).await })?;
    /// ev.free(&other)?;                           // cancelled: its timer goes too
    /// while !task.is_finished() {
    ///     ev.loop_once()?;
    /// }
    /// assert_eq!(task.try_take(), Some(Ok(42)));
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn<F>(&mut self, parent: impl IntoParent, fut: F) -> Result<Task<F::Output>, Error>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let remote = self.remote()?;
        let state = Rc::new(RefCell::new(JoinState::Running(None)));
        let ptr = self.heap.alloc_local(
            parent,
            TaskNode {
                fut: None,
                waker: None,
            },
        )?;
        let wake = Arc::new(TaskWaker::new(ptr.erase(), remote));
        let waker = Waker::from(wake.clone());
        let live = Live::new(&self.reg);
        let out = Output(state.clone());
        // Everything the task needs besides its node, in one box.
        let body = async move {
            let _live = live; // dropped last: once done, the task is no work
            let mut fut = std::pin::pin!(fut);
            let v = std::future::poll_fn(|cx| {
                wake.polling(); // a wake from here on schedules another poll
                fut.as_mut().poll(cx)
            })
            .await;
            out.finish(v);
        };
        waker.wake_by_ref();
        self.heap[ptr] = TaskNode {
            fut: Some(Box::pin(body)),
            waker: Some(waker),
        };
        Ok(Task {
            ptr: ptr.erase(),
            state,
        })
    }

    /// A request whose work is an async block (C-style callers and async
    /// code share one loop and one cancellation rule): `fut` runs as a task
    /// under the request, so freeing the request cancels it; when it
    /// finishes, `Ok(v)` makes the request done with `Some(v)` as its state,
    /// `Err(e)` fails it with `e`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut ev = tevent::Context::new()?;
    /// let req = ev.req_spawn(None, async {
    ///     tevent::sleep(Duration::from_millis(1)).await;
    ///     Ok::<_, String>("slept")
    /// })?;
    /// ev.req_poll(req)?;
    /// assert_eq!(ev.req_recv(req), Ok(Some("slept")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_spawn<F, T, E>(
        &mut self,
        parent: impl IntoParent,
        fut: F,
    ) -> Result<crate::Req<Option<T>, E>, Error>
    where
        F: Future<Output = Result<T, E>> + 'static,
        T: 'static,
        E: 'static,
    {
        let req = self.req_create(parent, None::<T>)?;
        let work = async move {
            let r = fut.await;
            with(|ev| match r {
                Ok(v) => {
                    if let Ok(state) = ev.heap_mut().get_mut(req.state()) {
                        *state = Some(v);
                    }
                    let _ = ev.req_done(req);
                }
                Err(e) => {
                    let _ = ev.req_error(req, e);
                }
            });
        };
        if let Err(e) = self.spawn(req, work) {
            let _ = self.free(req);
            return Err(e);
        }
        Ok(req)
    }

    /// Runs `fut` as a task under the top level and the loop until it is
    /// done; its output, or [`Error::Stale`] if something freed the task.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let n = ev.block_on(async {
    ///     tevent::yield_now().await;
    ///     tevent::with(|ev| ev.heap().live_objects())
    /// })?;
    /// assert_eq!(n, 1); // the task itself
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn block_on<F>(&mut self, fut: F) -> Result<F::Output, Error>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let task = self.spawn(None, fut)?;
        loop {
            if let Some(r) = task.try_take() {
                return r.map_err(|Cancelled| Error::Stale);
            }
            self.loop_once()?;
        }
    }
}
