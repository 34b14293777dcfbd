//! The four workloads on calloop 0.14's futures executor
//! (`calloop::futures::executor`): an event source whose callback receives
//! each task's output, inserted into an [`EventLoop`] that the thread
//! dispatches. Every repetition builds its own loop and executor.
//!
//! calloop gives no join handle, no yield and no sleep future that waits
//! for the loop, so this file has what a calloop user would write for
//! them: the output comes through the executor's callback, and
//! [`YieldNow`] and [`Sleep`] are a few lines each.
//!
//! Each function runs one repetition and returns the timed nanoseconds;
//! the operation count is `n`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use calloop::channel::{self, Event};
use calloop::futures::{executor, Scheduler};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopHandle, RegistrationToken};
use futures_channel::oneshot;

use crate::ns;

/// A loop with an executor whose tasks' `u64` outputs land in the
/// dispatch state (`Some(output)`), and the executor's scheduler.
fn output_loop() -> (EventLoop<'static, Option<u64>>, Scheduler<u64>) {
    let event_loop: EventLoop<'static, Option<u64>> = EventLoop::try_new().expect("loop");
    let (exec, sched) = executor::<u64>().expect("executor");
    event_loop
        .handle()
        .insert_source(exec, |v, _, out: &mut Option<u64>| *out = Some(v))
        .expect("insert executor");
    (event_loop, sched)
}

/// N times: schedule an empty task `async move { i }` and dispatch the
/// loop until the executor's callback has delivered its output. calloop
/// has no join handle, so there is no driver task here: delivering the
/// output to the callback, which the thread that dispatches the loop reads,
/// is calloop's idiomatic form.
pub fn task_spawn_complete(n: u64) -> u64 {
    let (mut event_loop, sched) = output_loop();
    let mut out = None;
    let t0 = Instant::now();
    for i in 0..n {
        sched.schedule(async move { i }).expect("schedule");
        loop {
            event_loop
                .dispatch(Some(Duration::ZERO), &mut out)
                .expect("dispatch");
            if let Some(v) = out.take() {
                assert_eq!(v, i, "task output");
                break;
            }
        }
    }
    ns(t0.elapsed())
}

/// Gives the executor a turn: the first poll wakes the task and is
/// pending, the second is ready (what `tevent::yield_now` and
/// `tokio::task::yield_now` do; calloop has none).
struct YieldNow(bool);

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

/// Two tasks share a counter; each bumps it and yields ([`YieldNow`])
/// until it reaches N; the loop is dispatched until it does. The count of
/// finished tasks is the loop's data (checked after the clock stops).
pub fn task_yield_pingpong(n: u64) -> u64 {
    let mut event_loop: EventLoop<'static, u32> = EventLoop::try_new().expect("loop");
    let (exec, sched) = executor::<()>().expect("executor");
    event_loop
        .handle()
        .insert_source(exec, |(), _, finished: &mut u32| *finished += 1)
        .expect("insert executor");
    let count = Rc::new(Cell::new(0u64));
    let mut finished = 0u32;
    let t0 = Instant::now();
    for _ in 0..2 {
        let c = count.clone();
        sched
            .schedule(async move {
                while c.get() < n {
                    c.set(c.get() + 1);
                    YieldNow(false).await;
                }
            })
            .expect("schedule");
    }
    while count.get() < n {
        event_loop
            .dispatch(Some(Duration::ZERO), &mut finished)
            .expect("dispatch");
    }
    let t = ns(t0.elapsed());
    assert_eq!(count.get(), n, "yield count");
    while finished < 2 {
        event_loop
            .dispatch(Some(Duration::ZERO), &mut finished)
            .expect("dispatch");
    }
    t
}

/// Waits for a zero-length calloop timer: the first poll inserts a
/// [`Timer`] source through a clone of the loop's handle, whose callback
/// marks it fired, wakes the task and drops the source; ready once the
/// callback ran. This is what a calloop user writes to sleep on the loop.
/// (calloop's own `TimeoutFuture` checks the clock instead: already past
/// its deadline it is ready at its first poll, without a loop turn, and
/// its timer stays registered until the next dispatch; it would not time
/// a timer at all here.)
struct Sleep {
    handle: LoopHandle<'static, Option<u64>>,
    timer: Option<RegistrationToken>,
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

fn sleep_zero(handle: &LoopHandle<'static, Option<u64>>) -> Sleep {
    Sleep {
        handle: handle.clone(),
        timer: None,
        fired: Rc::default(),
        waker: Rc::default(),
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.fired.get() {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        if self.timer.is_none() {
            let (fired, waker) = (self.fired.clone(), self.waker.clone());
            let token = self
                .handle
                .insert_source(Timer::from_duration(Duration::ZERO), move |_, _, _| {
                    fired.set(true);
                    if let Some(w) = waker.borrow_mut().take() {
                        w.wake();
                    }
                    TimeoutAction::Drop
                })
                .expect("insert timer");
            self.timer = Some(token);
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // Dropped before it fired: take the timer off the loop.
        if let (Some(t), false) = (self.timer, self.fired.get()) {
            self.handle.remove(t);
        }
    }
}

/// One task awaits N zero-length sleeps ([`Sleep`]) in turn; the loop is
/// dispatched until the executor's callback has its output.
pub fn task_timer_await(n: u64) -> u64 {
    let (mut event_loop, sched) = output_loop();
    let handle = event_loop.handle();
    let mut out = None;
    let t0 = Instant::now();
    sched
        .schedule(async move {
            let mut k = 0;
            for _ in 0..n {
                sleep_zero(&handle).await;
                k += 1;
            }
            k
        })
        .expect("schedule");
    while out.is_none() {
        event_loop
            .dispatch(Some(Duration::ZERO), &mut out)
            .expect("dispatch");
    }
    let t = ns(t0.elapsed());
    assert_eq!(out, Some(n), "sleep count");
    t
}

/// A request and the channel its reply goes back on.
type Request = (u64, oneshot::Sender<u64>);

/// What the server's loop callback keeps.
#[derive(Default)]
struct Served {
    count: u64,
    closed: bool,
}

/// A task on this thread's executor sends request i through a
/// `calloop::channel` to a server thread dispatching its own calloop loop,
/// whose channel callback answers `i + 1` on the request's
/// `futures_channel` oneshot; N round trips in turn. Both threads block in
/// `dispatch(None, ..)` while they wait. The server's loop is built
/// (untimed) before the clock starts.
pub fn task_thread_ask_roundtrip(n: u64) -> u64 {
    let (req_tx, req_rx) = channel::channel::<Request>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut event_loop: EventLoop<'static, Served> = EventLoop::try_new().expect("loop");
        event_loop
            .handle()
            .insert_source(req_rx, |ev, _, st: &mut Served| match ev {
                Event::Msg((i, reply)) => {
                    reply.send(i + 1).expect("reply");
                    st.count += 1;
                }
                Event::Closed => st.closed = true,
            })
            .expect("insert channel");
        ready_tx.send(()).expect("ready");
        let mut st = Served::default();
        while !st.closed {
            event_loop.dispatch(None, &mut st).expect("dispatch");
        }
        st.count
    });
    let (mut event_loop, sched) = output_loop();
    let mut out = None;
    ready_rx.recv().expect("server ready");
    let t0 = Instant::now();
    sched
        .schedule(async move {
            let mut k = 0;
            for i in 0..n {
                let (tx, rx) = oneshot::channel();
                req_tx.send((i, tx)).expect("send request");
                assert_eq!(rx.await.expect("reply"), i + 1, "reply");
                k += 1;
            }
            k // `req_tx` goes here: the server sees `Closed`.
        })
        .expect("schedule");
    while out.is_none() {
        event_loop.dispatch(None, &mut out).expect("dispatch");
    }
    let t = ns(t0.elapsed());
    assert_eq!(out, Some(n), "round trips");
    assert_eq!(server.join().expect("server"), n, "requests served");
    t
}
