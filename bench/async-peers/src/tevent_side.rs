//! The four workloads on tevent-rs (ours): a [`Context`] per repetition,
//! tasks spawned on it, the loop's own futures (`tevent::yield_now`,
//! `tevent::sleep`), and tevent-thread's typed [`Service`] across threads.
//!
//! Each function runs one repetition and returns the timed nanoseconds;
//! the operation count is `n`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tevent::Context;
use tevent_thread::{Responder, Service};

use crate::ns;

/// From inside one driver task, N times: spawn an empty task
/// `async move { i }` on the loop lent to the driver (`tevent::with`) and
/// await its output through [`tevent::Task::join`].
pub fn task_spawn_complete(n: u64) -> u64 {
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    ev.block_on(async move {
        for i in 0..n {
            let t = tevent::with(|ev| ev.spawn(None, async move { i })).expect("spawn");
            assert_eq!(t.join().await, Ok(i), "task output");
        }
    })
    .expect("block_on");
    let t = ns(t0.elapsed());
    assert_eq!(ev.heap().live_objects(), 0, "every task freed");
    t
}

/// Two tasks share a counter; each bumps it and yields
/// (`tevent::yield_now`) until it reaches N. Timed until it does.
pub fn task_yield_pingpong(n: u64) -> u64 {
    let mut ev = Context::new().expect("context");
    let count = Rc::new(Cell::new(0u64));
    let t0 = Instant::now();
    for _ in 0..2 {
        let c = count.clone();
        ev.spawn(None, async move {
            while c.get() < n {
                c.set(c.get() + 1);
                tevent::yield_now().await;
            }
        })
        .expect("spawn");
    }
    while count.get() < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    assert_eq!(count.get(), n, "yield count");
    ev.loop_wait().expect("loop_wait");
    t
}

/// One task awaits N zero-length sleeps in turn (`tevent::sleep`): a timer
/// added, fired and freed per await.
pub fn task_timer_await(n: u64) -> u64 {
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    let done = ev
        .block_on(async move {
            let mut k = 0;
            for _ in 0..n {
                tevent::sleep(Duration::ZERO).await;
                k += 1;
            }
            k
        })
        .expect("block_on");
    let t = ns(t0.elapsed());
    assert_eq!(done, n, "sleep count");
    t
}

/// A task on a worker thread asks the main thread's loop, through a
/// tevent-thread [`Service`], for `i + 1`, N times in turn
/// (`client.ask(i).await`); the worker times its N round trips. (The
/// `task_thread_ask_roundtrip` of tevent-thread's `thread_workloads`.)
pub fn task_thread_ask_roundtrip(n: u64) -> u64 {
    let mut ev = Context::new().expect("context");
    let served = Arc::new(AtomicU64::new(0));
    let s = served.clone();
    let service = Service::new(&mut ev, None, move |_, i: u64, reply: Responder<u64>| {
        s.fetch_add(1, Ordering::Relaxed);
        reply.send(i + 1)?;
        Ok(())
    })
    .expect("Service::new");
    let client = service.client(&ev).expect("client");
    let worker = std::thread::spawn(move || {
        let mut ev = Context::new().expect("context");
        let t0 = Instant::now();
        ev.block_on(async move {
            for i in 0..n {
                assert_eq!(client.ask(i).await, Ok(i + 1), "reply");
            }
        })
        .expect("block_on");
        let elapsed = ns(t0.elapsed());
        drop(ev); // a context is not Send: its own thread frees it
        elapsed
    });
    while served.load(Ordering::Relaxed) < n {
        ev.loop_once().expect("loop_once");
    }
    let elapsed = worker.join().expect("worker");
    assert_eq!(served.load(Ordering::Relaxed), n, "requests served");
    ev.free(service).expect("free");
    elapsed
}
