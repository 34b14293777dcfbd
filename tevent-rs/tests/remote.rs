//! `Remote`: other threads scheduling closures on a loop. Also C's thread
//! torture cases (`multi_tevent_threaded*`), rewritten on `Remote`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::ctx;
use tevent::{Context, Remote};

const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
const _: () = assert_send_sync_clone::<Remote>();

/// Many threads, many closures each: all arrive, each sender's in order
/// (C's multi_tevent_threaded_2: 100 threads, one message each).
fn many_senders(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let (senders, each) = (8, 500);
    let got = Arc::new(parking_lot::Mutex::new(vec![Vec::new(); senders]));
    let arrived = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(senders));
    let mut threads = Vec::new();
    for s in 0..senders {
        let remote = remote.clone();
        let barrier = barrier.clone();
        let arrived = arrived.clone();
        let got = got.clone();
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            for i in 0..each {
                let arrived = arrived.clone();
                let got = got.clone();
                remote
                    .schedule(move |ev: &mut Context| {
                        arrived.fetch_add(1, Ordering::Relaxed);
                        got.lock()[s].push(i);
                        // Closures reach the loop's heap.
                        ev.heap_mut().alloc(None, (s, i)).unwrap();
                    })
                    .unwrap();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    ev.loop_until(|_| {
        arrived.load(Ordering::Relaxed) == senders * each || Instant::now() > deadline
    })
    .unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(arrived.load(Ordering::Relaxed), senders * each);
    assert_eq!(ev.heap().live_objects(), senders * each);
    for s in got.lock().iter() {
        assert_eq!(*s, (0..each).collect::<Vec<_>>());
    }
}

/// A request/reply between two loops on two threads, each with its own
/// Remote (C's multi_tevent_threaded_1): the master's handler replies into
/// the worker's loop, which finds the reply in its heap.
fn request_reply(b: &str) {
    let mut master = ctx(b);
    let to_master = master.remote().unwrap();
    let backend = b.to_string();
    let rounds = 200;
    let worker = std::thread::spawn(move || {
        let mut ev = ctx(&backend);
        let to_worker = ev.remote().unwrap();
        for i in 0..rounds {
            let back = to_worker.clone();
            to_master
                .schedule(move |_master: &mut Context| {
                    back.schedule(move |ev: &mut Context| {
                        ev.heap_mut().alloc(None, i).unwrap();
                    })
                    .unwrap();
                })
                .unwrap();
            ev.loop_until(|ev| ev.heap().live_objects() == i + 1)
                .unwrap();
        }
        ev.heap().live_objects()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    master.set_wait_timeout(Duration::from_millis(10));
    while !worker.is_finished() && Instant::now() < deadline {
        master.loop_once().unwrap();
    }
    assert_eq!(worker.join().unwrap(), rounds);
}

/// A burst sent while the loop is busy is pulled in at once (one wake-up)
/// and then runs one closure per loop_once, after what was queued before.
fn burst_is_batched(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let sender = {
        let remote = remote.clone();
        let n = n.clone();
        std::thread::spawn(move || {
            for _ in 0..100 {
                let n = n.clone();
                remote
                    .schedule(move |_| {
                        n.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
            }
        })
    };
    sender.join().unwrap();
    ev.loop_once().unwrap();
    assert_eq!(n.load(Ordering::Relaxed), 1);
    // The other 99 are ordinary immediates now.
    assert!(ev.has_events());
    ev.loop_wait().unwrap();
    assert_eq!(n.load(Ordering::Relaxed), 100);
}

/// A loop blocked in its wait wakes up for a remote closure.
fn wakes_blocked_loop(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        remote.schedule(move |_| tx.send(()).unwrap()).unwrap();
    });
    let t0 = Instant::now();
    ev.loop_once().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(rx.try_recv().is_ok());
    t.join().unwrap();
}

/// After the context is gone, schedule fails and hands the closure back;
/// closures still queued are dropped, not run.
fn context_gone(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Tell(Arc<AtomicUsize>);
    impl Drop for Tell {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let tell = Tell(dropped.clone());
    remote
        .schedule(move |_| {
            let _keep = &tell;
            panic!("never runs");
        })
        .unwrap();
    drop(ev);
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
    assert!(!remote.is_alive());
    let err = remote.schedule(|ev: &mut Context| ev.set_wait_timeout(Duration::ZERO));
    let f = err.unwrap_err().into_inner();
    let mut other = ctx(b);
    f(&mut other);
    assert_eq!(other.wait_timeout(), Duration::ZERO);
    assert!(remote.schedule_boxed(Box::new(|_| ())).is_err());
}

/// Closures may schedule more work: immediates, and more remote closures.
fn closures_schedule_more(b: &str) {
    let mut ev = ctx(b);
    let remote = ev.remote().unwrap();
    let again = remote.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    remote
        .schedule(move |ev: &mut Context| {
            let im = ev.create_immediate(None).unwrap();
            let tx2 = tx.clone();
            ev.schedule_immediate(im, move |_, _| tx2.send("immediate").unwrap())
                .unwrap();
            again.schedule(move |_| tx.send("remote").unwrap()).unwrap();
        })
        .unwrap();
    for _ in 0..3 {
        ev.loop_once().unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["immediate", "remote"]);
}

both!(
    many_senders,
    request_reply,
    burst_is_batched,
    wakes_blocked_loop,
    context_gone,
    closures_schedule_more
);
