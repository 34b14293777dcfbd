//! The four workloads on tokio's current-thread runtime with a
//! [`LocalSet`]: what a tokio user writes for `!Send` tasks on one thread,
//! the closest match to a tevent loop. Every repetition builds its own
//! runtime, with the time driver (`enable_time`) and nothing else: the
//! crate is built with the `rt`, `time` and `sync` features only, so there
//! is no I/O driver, and an idle runtime parks its thread on a condition
//! variable rather than in `epoll_wait`.
//!
//! The work of each workload runs in a task (`spawn_local`) that the
//! `LocalSet::block_on` future awaits, as `tevent::Context::block_on` runs
//! its future as a task.
//!
//! Each function runs one repetition and returns the timed nanoseconds;
//! the operation count is `n`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{self, LocalSet};

use crate::ns;

/// A current-thread runtime with the time driver.
fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// From inside one driver task, N times: `spawn_local` an empty task
/// `async move { i }` and await its `JoinHandle`.
pub fn task_spawn_complete(n: u64) -> u64 {
    let rt = runtime();
    let local = LocalSet::new();
    let t0 = Instant::now();
    local.block_on(&rt, async move {
        task::spawn_local(async move {
            for i in 0..n {
                let out = task::spawn_local(async move { i }).await.expect("join");
                assert_eq!(out, i, "task output");
            }
        })
        .await
        .expect("driver task");
    });
    ns(t0.elapsed())
}

/// Two tasks share a counter; each bumps it and yields
/// (`tokio::task::yield_now`) until it reaches N. Timed until both tasks
/// are done (one more poll each than tevent's loop needs to see N).
pub fn task_yield_pingpong(n: u64) -> u64 {
    let rt = runtime();
    let local = LocalSet::new();
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    let t0 = Instant::now();
    local.block_on(&rt, async move {
        let tasks = [(); 2].map(|()| {
            let c = c.clone();
            task::spawn_local(async move {
                while c.get() < n {
                    c.set(c.get() + 1);
                    task::yield_now().await;
                }
            })
        });
        for t in tasks {
            t.await.expect("yield task");
        }
    });
    let t = ns(t0.elapsed());
    assert_eq!(count.get(), n, "yield count");
    t
}

/// One task awaits N zero-length sleeps in turn
/// (`tokio::time::sleep(Duration::ZERO)`).
pub fn task_timer_await(n: u64) -> u64 {
    let rt = runtime();
    let local = LocalSet::new();
    let t0 = Instant::now();
    let done = local.block_on(&rt, async move {
        task::spawn_local(async move {
            let mut k = 0;
            for _ in 0..n {
                tokio::time::sleep(Duration::ZERO).await;
                k += 1;
            }
            k
        })
        .await
        .expect("sleep task")
    });
    let t = ns(t0.elapsed());
    assert_eq!(done, n, "sleep count");
    t
}

/// A request and the channel its reply goes back on.
type Request = (u64, oneshot::Sender<u64>);

/// A task on this thread sends request i over an unbounded mpsc channel to
/// a server thread running its own current-thread runtime, which answers
/// `i + 1` on the request's oneshot; N round trips in turn. The server's
/// runtime is built (untimed) before the clock starts.
pub fn task_thread_ask_roundtrip(n: u64) -> u64 {
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<Request>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = runtime();
        ready_tx.send(()).expect("ready");
        rt.block_on(async move {
            let mut served = 0u64;
            while let Some((i, reply)) = req_rx.recv().await {
                reply.send(i + 1).expect("reply");
                served += 1;
            }
            served
        })
    });
    let rt = runtime();
    let local = LocalSet::new();
    ready_rx.recv().expect("server ready");
    let t0 = Instant::now();
    local.block_on(&rt, async move {
        task::spawn_local(async move {
            for i in 0..n {
                let (tx, rx) = oneshot::channel();
                req_tx.send((i, tx)).expect("send request");
                assert_eq!(rx.await.expect("reply"), i + 1, "reply");
            }
            // `req_tx` goes here: the server's loop ends.
        })
        .await
        .expect("client task");
    });
    let t = ns(t0.elapsed());
    assert_eq!(server.join().expect("server"), n, "requests served");
    t
}
