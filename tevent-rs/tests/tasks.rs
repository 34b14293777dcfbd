//! Tasks: futures owned by the heap, cancelled by freeing their owner. On
//! both backends.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use common::ctx;
use tevent::{Cancelled, Context};

/// Counts its drops: a future's state, dropped exactly once.
struct Dropped(Rc<Cell<u32>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A future that never finishes, counts its polls and keeps its latest
/// waker where the test can reach it.
struct Forever {
    polls: Rc<Cell<u32>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn run(ev: &mut Context, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        ev.loop_once().unwrap();
    }
    panic!("not done after 10,000 passes");
}

/// A task runs to its output; it counts as work until then, and its object
/// goes when it is done.
fn spawn_and_finish(b: &str) {
    let mut ev = ctx(b);
    let task = ev
        .spawn(None, async {
            tevent::sleep(Duration::from_millis(1)).await;
            tevent::yield_now().await;
            7
        })
        .unwrap();
    assert!(ev.has_events());
    assert!(ev.heap().contains(&task));
    ev.loop_wait().unwrap();
    assert_eq!(task.try_take(), Some(Ok(7)));
    assert_eq!(task.try_take(), Some(Err(Cancelled)), "taken once");
    assert!(!ev.heap().contains(&task));
    assert_eq!(ev.heap().live_objects(), 0);
}

/// Freeing the parent drops the future at once (its state's Drop runs
/// once), takes its timer off the loop, and a task awaiting it reads
/// Cancelled; nothing polls it again.
fn freeing_the_owner_cancels(b: &str) {
    let mut ev = ctx(b);
    let drops = Rc::new(Cell::new(0));
    let conn = ev.heap_mut().new_context(None).unwrap();
    let d = Dropped(drops.clone());
    let victim = ev
        .spawn(conn, async move {
            let _state = d;
            tevent::sleep(Duration::from_secs(3600)).await;
            unreachable!("freed before the hour is up");
        })
        .unwrap();
    let join = victim.join();
    let watcher = ev.spawn(None, join).unwrap();
    ev.loop_once().unwrap(); // both polled once
    ev.loop_once().unwrap();
    assert_eq!(drops.get(), 0);
    ev.free(conn).unwrap();
    assert_eq!(drops.get(), 1, "dropped at the free, not later");
    run(&mut ev, || watcher.is_finished());
    assert_eq!(watcher.try_take(), Some(Ok(Err(Cancelled))));
    assert_eq!(victim.try_take(), Some(Err(Cancelled)));
    assert!(!ev.has_events(), "the timer went with the task");
    assert_eq!(drops.get(), 1);
    assert_eq!(ev.heap().live_objects(), 0);
}

/// A waker of a freed task is harmless, also from another thread; the task
/// is never polled again.
fn a_freed_tasks_waker_does_nothing(b: &str) {
    let mut ev = ctx(b);
    ev.set_wait_timeout(Duration::from_millis(5));
    let polls = Rc::new(Cell::new(0));
    let waker = Rc::new(RefCell::new(None));
    let task = ev
        .spawn(
            None,
            Forever {
                polls: polls.clone(),
                waker: waker.clone(),
            },
        )
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(polls.get(), 1);
    let w = waker.borrow_mut().take().unwrap();
    w.wake_by_ref();
    ev.loop_once().unwrap();
    assert_eq!(polls.get(), 2, "a wake polls it again");
    ev.free(&task).unwrap();
    std::thread::spawn(move || w.wake()).join().unwrap();
    for _ in 0..3 {
        ev.loop_once().unwrap();
    }
    assert_eq!(polls.get(), 2);
    assert!(!ev.has_events());
}

/// A waker called on another thread wakes a sleeping loop.
fn a_waker_from_another_thread_wakes_the_loop(b: &str) {
    let mut ev = ctx(b);
    ev.set_wait_timeout(Duration::from_secs(20));
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let out = ev
        .block_on(std::future::poll_fn(move |cx| {
            if f.load(Ordering::Acquire) {
                return Poll::Ready("woken");
            }
            let (f, w) = (f.clone(), cx.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                f.store(true, Ordering::Release);
                w.wake();
            });
            Poll::Pending
        }))
        .unwrap();
    assert_eq!(out, "woken");
}

/// A task that frees itself: the future is dropped right after that poll,
/// and nothing polls it again.
fn a_task_that_frees_itself(b: &str) {
    let mut ev = ctx(b);
    let drops = Rc::new(Cell::new(0));
    let d = Dropped(drops.clone());
    let me = Rc::new(Cell::new(None));
    let m = me.clone();
    let task = ev
        .spawn(None, async move {
            let _state = d;
            tevent::with(|ev| ev.free(m.get().unwrap())).unwrap();
            tevent::yield_now().await;
            unreachable!("never polled again");
        })
        .unwrap();
    me.set(Some(task.erase()));
    ev.loop_once().unwrap();
    assert_eq!(drops.get(), 1);
    assert_eq!(task.try_take(), Some(Err(Cancelled)));
    assert!(!ev.has_events());
}

/// Requests and tasks meet: a request awaited, and tasks awaiting tasks.
fn requests_and_joins(b: &str) {
    let mut ev = ctx(b);
    let r = ev
        .block_on(async {
            let req = tevent::with(|ev| ev.wakeup_send(None, Duration::from_millis(1))).unwrap();
            tevent::recv(req).await.unwrap();
            let child = tevent::with(|ev| ev.spawn(None, async { 20 })).unwrap();
            let v = child.join().await.unwrap();
            tevent::with(|ev| ev.free(req)).unwrap();
            v + 1
        })
        .unwrap();
    assert_eq!(r, 21);
    assert_eq!(ev.heap().live_objects(), 0);
}

/// Two tasks that yield to each other take turns.
fn yield_ping_pong(b: &str) {
    let mut ev = ctx(b);
    let log = Rc::new(RefCell::new(Vec::new()));
    for name in ["ping", "pong"] {
        let log = log.clone();
        ev.spawn(None, async move {
            for _ in 0..3 {
                log.borrow_mut().push(name);
                tevent::yield_now().await;
            }
        })
        .unwrap();
    }
    ev.loop_wait().unwrap();
    assert_eq!(
        *log.borrow(),
        ["ping", "pong", "ping", "pong", "ping", "pong"]
    );
}

/// A panicking task: the panic reaches the caller of `loop_once`, the task
/// is freed, the loop goes on.
fn a_panicking_task(b: &str) {
    let mut ev = ctx(b);
    let task = ev
        .spawn(None, async {
            tevent::yield_now().await;
            panic!("boom in a task");
        })
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..3 {
            ev.loop_once().unwrap();
        }
    }));
    assert!(r.is_err());
    assert_eq!(task.try_take(), Some(Err(Cancelled)));
    assert!(!ev.has_events());
    assert_eq!(ev.block_on(async { 5 }).unwrap(), 5);
}

/// `with` lends the context inside a task only, once at a time.
fn with_is_for_tasks(b: &str) {
    let mut ev = ctx(b);
    assert_eq!(tevent::try_with(|_| ()), None);
    let nested = ev
        .block_on(async { tevent::with(|_| tevent::try_with(|_| ()).is_none()) })
        .unwrap();
    assert!(nested);
    assert_eq!(
        ev.block_on(async { tevent::with(|ev| ev.loop_once()) })
            .unwrap(),
        Err(tevent::Error::Nested)
    );
}

/// An async block as a request: done, failed, or cancelled by freeing the
/// request (its task goes with it).
fn async_blocks_as_requests(b: &str) {
    let mut ev = ctx(b);
    let ok = ev
        .req_spawn(None, async {
            tevent::yield_now().await;
            Ok::<_, String>(3)
        })
        .unwrap();
    let bad = ev
        .req_spawn(None, async { Err::<u8, _>("no".to_string()) })
        .unwrap();
    let drops = Rc::new(Cell::new(0));
    let d = Dropped(drops.clone());
    let slow = ev
        .req_spawn(None, async move {
            let _state = d;
            tevent::sleep(Duration::from_secs(3600)).await;
            Ok::<_, String>(())
        })
        .unwrap();
    ev.req_poll(ok).unwrap();
    ev.req_poll(bad).unwrap();
    assert_eq!(ev.req_recv(ok), Ok(Some(3)));
    assert_eq!(
        ev.req_recv(bad),
        Err(tevent::ReqError::Failed("no".to_string()))
    );
    ev.free(slow).unwrap();
    assert_eq!(drops.get(), 1);
    ev.free(ok).unwrap();
    ev.free(bad).unwrap();
    assert!(!ev.has_events());
    assert_eq!(ev.heap().live_objects(), 0);
}

/// Async I/O from tasks: an echo through a socket pair, both ends tasks on
/// one loop; freeing the owner takes the fd events off the loop.
fn async_io_echo(b: &str) {
    use std::os::unix::net::UnixStream;
    let mut ev = ctx(b);
    let (a, z) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    z.set_nonblocking(true).unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let echo = ev
        .spawn(owner, async move {
            let sock = tevent::Async::new(z)?;
            let mut buf = [0u8; 64];
            loop {
                let n = sock.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                sock.write_all(&buf[..n]).await?;
            }
        })
        .unwrap();
    let client = ev
        .spawn(None, async move {
            let sock = tevent::Async::new(a)?;
            let big = vec![7u8; 300_000]; // more than a socket buffer
            let mut back = Vec::new();
            let mut sent = 0;
            let mut buf = [0u8; 4096];
            while back.len() < big.len() {
                if sent < big.len() {
                    let n = sock.write(&big[sent..(sent + 4096).min(big.len())]).await?;
                    sent += n;
                }
                let n = sock.read(&mut buf).await?;
                back.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(back == big)
        })
        .unwrap();
    run(&mut ev, || client.is_finished());
    assert!(
        client.try_take().unwrap().unwrap().unwrap(),
        "the echo came back whole"
    );
    assert!(ev.has_events(), "the echo task waits on its socket");
    ev.free(owner).unwrap();
    assert!(echo.is_finished());
    for _ in 0..100 {
        if !ev.has_events() {
            break;
        }
        ev.loop_once().unwrap();
    }
    assert!(!ev.has_events(), "nothing left on the loop");
    assert_eq!(ev.heap().live_objects(), 0);
}

/// `Remote::spawn` from another thread: the future is made on the loop's
/// thread (it may use the loop's futures), and its output comes back to a
/// task of another loop that awaits the handle.
fn remote_spawn_round_trip(b: &str) {
    let mut worker = ctx(b);
    worker.set_wait_timeout(Duration::from_millis(2));
    let remote = worker.remote().unwrap();
    let owner = worker.heap_mut().new_context(None).unwrap();
    let b2 = b.to_string();
    let main = std::thread::spawn(move || {
        let mut ev = ctx(&b2);
        ev.block_on(async move {
            let job = remote
                .spawn(owner, || async {
                    tevent::sleep(Duration::from_millis(1)).await;
                    tevent::with(|ev| ev.heap().live_objects())
                })
                .unwrap();
            job.await
        })
        .unwrap()
    });
    while !main.is_finished() {
        worker.loop_once().unwrap();
    }
    // The owner, and the task under it while it ran (its timer was gone).
    assert_eq!(main.join().unwrap(), Ok(2));
    assert_eq!(worker.heap().live_objects(), 1);
}

/// The handle reads `Cancelled` when the task is freed (its parent freed
/// on the loop), when its parent was stale before it started, and when the
/// loop goes before running it; a spawn onto a loop that is gone gives the
/// maker back.
fn remote_spawn_cancelled(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let running = remote
        .spawn(owner, || async {
            tevent::sleep(Duration::from_secs(3600)).await;
        })
        .unwrap();
    ev.loop_once().unwrap(); // starts it
    ev.loop_once().unwrap(); // first poll: it sleeps
    assert!(!running.is_finished());
    ev.free(owner).unwrap();
    assert_eq!(running.try_take(), Some(Err(Cancelled)));

    let stale = remote.spawn(owner, || async { 1 }).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(stale.try_take(), Some(Err(Cancelled)));

    let queued = remote.spawn(None, || async { 2 }).unwrap();
    drop(ev);
    assert_eq!(queued.try_take(), Some(Err(Cancelled)));
    let back = remote.spawn(None, || async { 3 }).unwrap_err();
    let make = back.into_inner();
    let mut ev = ctx(b);
    assert_eq!(ev.block_on(make()).unwrap(), 3);
}

both!(
    spawn_and_finish,
    freeing_the_owner_cancels,
    a_freed_tasks_waker_does_nothing,
    a_waker_from_another_thread_wakes_the_loop,
    a_task_that_frees_itself,
    requests_and_joins,
    yield_ping_pong,
    a_panicking_task,
    with_is_for_tasks,
    async_blocks_as_requests,
    async_io_echo,
    remote_spawn_round_trip,
    remote_spawn_cancelled
);
