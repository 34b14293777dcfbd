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
        .schedule(move |_| -> () {
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

/// No wake-up is lost: a loop with nothing else to do and a wait timeout
/// of an hour serves a peer that sends one closure at a time, after a
/// random pause, so that sends land at every point of the loop's pass
/// (taking, running, arming the queue, inside the wait). Bursts between
/// them leave work taken without a wait, and stale wake-ups, behind. A
/// lost wake-up would hang the loop: the peer gives up after 20 s and
/// wakes it through a socket instead, and the test fails.
fn no_lost_wakeup(b: &str) {
    let mut ev = ctx(b);
    ev.set_wait_timeout(Duration::from_secs(3600));
    let remote = ev.remote().unwrap();
    let (alarm, mut alarm_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    ev.add_fd(None, alarm, tevent::FdFlags::READ, |_, _, _| -> () {
        panic!("a wake-up was lost")
    })
    .unwrap();
    let rounds: u64 = 10_000;
    let done = Arc::new(AtomicUsize::new(0));
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
    let peer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for i in 0..rounds {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // 0 to ~20 µs of spinning, now and then a sleep or a burst.
                let spin = Instant::now() + Duration::from_nanos(seed % 20_000);
                while Instant::now() < spin {
                    std::hint::spin_loop();
                }
                if seed % 16 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let burst = if seed % 8 == 1 { 5 } else { 1 };
                for k in 0..burst {
                    let ack = ack_tx.clone();
                    let done = done.clone();
                    remote
                        .schedule(move |_| {
                            if k + 1 == burst {
                                done.fetch_add(1, Ordering::Relaxed);
                                ack.send(i).unwrap();
                            }
                        })
                        .unwrap();
                }
                match ack_rx.recv_timeout(Duration::from_secs(20)) {
                    Ok(got) => assert_eq!(got, i),
                    Err(_) => {
                        std::io::Write::write_all(&mut alarm_peer, b"!").unwrap();
                        return;
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < rounds as usize {
        assert!(Instant::now() < deadline);
        ev.loop_once().unwrap();
    }
    peer.join().unwrap();
    assert_eq!(done.load(Ordering::Relaxed), rounds as usize);
}

both!(
    no_lost_wakeup,
    many_senders,
    request_reply,
    burst_is_batched,
    wakes_blocked_loop,
    context_gone,
    closures_schedule_more
);
