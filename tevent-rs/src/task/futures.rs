//! Futures for the loop's own events, owned by the task that awaits them:
//! what they register is a child of the task in the heap, so freeing the
//! task removes it from the loop, and dropping the future removes it too.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::lend::{try_with, try_with_task};
use crate::{Req, ReqError, TimerEvent, When};

/// What a timer and the future waiting on it share.
#[derive(Default)]
struct Alarm {
    fired: bool,
    waker: Option<Waker>,
}

/// Waits until a deadline, on a timer that is a child of the awaiting task
/// (see [`sleep`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    when: When,
    timer: Option<TimerEvent>,
    alarm: Rc<RefCell<Alarm>>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("timer", &self.timer)
            .field("fired", &self.alarm.borrow().fired)
            .finish()
    }
}

/// Waits `d` (counted from the first poll), on the loop's timers.
///
/// # Panics
/// When polled outside a task of a tevent loop.
///
/// ```
/// use std::time::{Duration, Instant};
/// let mut ev = tevent::Context::new()?;
/// let t0 = Instant::now();
/// ev.block_on(tevent::sleep(Duration::from_millis(2)))?;
/// assert!(t0.elapsed() >= Duration::from_millis(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sleep(d: Duration) -> Sleep {
    Sleep {
        when: When::After(d),
        timer: None,
        alarm: Rc::default(),
    }
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        when: When::At(deadline),
        timer: None,
        alarm: Rc::default(),
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut alarm = self.alarm.borrow_mut();
        if alarm.fired {
            return Poll::Ready(());
        }
        alarm.waker = Some(cx.waker().clone());
        drop(alarm);
        if self.timer.is_none() {
            let (when, alarm) = (self.when, self.alarm.clone());
            let added = try_with_task(|ev, task| {
                ev.add_timer(task, when, move |_, _, _| {
                    let mut a = alarm.borrow_mut();
                    a.fired = true;
                    if let Some(w) = a.waker.take() {
                        w.wake();
                    }
                })
            })
            .expect("tevent::sleep polled outside a task of a tevent loop");
            match added {
                Ok(t) => self.timer = Some(t),
                // No room for a timer: report it and wake at once.
                Err(e) => {
                    let _ = try_with(|ev| ev.report(Err::<(), _>(e.into())));
                    return Poll::Ready(());
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(t), false) = (self.timer, self.alarm.borrow().fired) {
            // Outside a poll the task itself is being freed, and its timer
            // with it (it is the task's child): nothing to do then.
            let _ = try_with(|ev| ev.free(t));
        }
    }
}

/// Gives the loop a turn: the task is polled again after what is queued
/// now (see [`yield_now`]).
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow(bool);

/// Lets the loop run other work before the task goes on: the task is
/// polled again after the tasks and immediates queued now. Timers and fd
/// events get their turn too, at the latest after 64 task polls in a row
/// (a non-blocking look at the fds), so a task that yields in a loop
/// starves neither.
///
/// ```
/// let mut ev = tevent::Context::new()?;
/// let turns = ev.block_on(async {
///     let mut n = 0;
///     for _ in 0..3 {
///         tevent::yield_now().await;
///         n += 1;
///     }
///     n
/// })?;
/// assert_eq!(turns, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A request's result, awaited (see [`recv`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<S: 'static, E: 'static> {
    req: Req<S, E>,
    waker: Rc<RefCell<Option<Waker>>>,
    armed: bool,
}

impl<S, E> fmt::Debug for Recv<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").field("req", &self.req).finish()
    }
}

/// Awaits a request made the callback way: its state once it is done (as
/// [`req_recv`](crate::Context::req_recv) gives it), or why not. It takes
/// the request's callback for itself.
///
/// ```
/// use std::time::Duration;
/// let mut ev = tevent::Context::new()?;
/// let r = ev.block_on(async {
///     let req = tevent::with(|ev| ev.wakeup_send(None, Duration::from_millis(1)))?;
///     tevent::recv(req).await?;
///     Ok::<_, Box<dyn std::error::Error>>("woken")
/// })?;
/// assert_eq!(r?, "woken");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recv<S: 'static, E: 'static>(req: Req<S, E>) -> Recv<S, E> {
    Recv {
        req,
        waker: Rc::default(),
        armed: false,
    }
}

impl<S: 'static, E: 'static> Future for Recv<S, E> {
    type Output = Result<S, ReqError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        let req = self.req;
        let arm = !self.armed;
        let waker = self.waker.clone();
        let r = try_with(|ev| {
            match ev.req_recv(req) {
                Err(ReqError::InProgress) => {}
                done => return Some(done),
            }
            if arm {
                let set = ev.req_set_callback(req, move |_, _| {
                    if let Some(w) = waker.borrow_mut().take() {
                        w.wake();
                    }
                });
                if let Err(e) = set {
                    return Some(Err(ReqError::Gone(e)));
                }
            }
            None
        })
        .expect("tevent::recv polled outside a task of a tevent loop");
        self.armed = true;
        match r {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }
}
