//! `Remote` as C's threaded context (`tevent_threaded_context`): rule E12 as
//! our design states it, and the C test `multi_tevent_threaded_2`.
//!
//! Departures from C, on purpose: scheduling after the loop is gone is
//! `ScheduleError` with the closure handed back (C: a silent no-op); an immediate
//! freed on the loop while its threaded schedule is queued simply does not
//! run (C aborts).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use tevent::Remote;
use tevent::{Context, Immediate};

/// Runs `ev` until `done`, failing after 10 s.
fn run_until(ev: &mut Context, what: &str, mut done: impl FnMut(&mut Context) -> bool) {
    ev.set_wait_timeout(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(ev) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        ev.loop_once().expect("loop_once");
    }
}

fn spin(ev: &mut Context, passes: usize) {
    ev.set_wait_timeout(Duration::from_millis(1));
    for _ in 0..passes {
        ev.loop_once().expect("loop_once");
    }
}

/// Counts its drops and remembers the thread of the last one.
#[derive(Clone, Default)]
struct Dropped(Arc<Mutex<Vec<ThreadId>>>);

struct Token(Dropped);

impl Drop for Token {
    fn drop(&mut self) {
        self.0 .0.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn e12_handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Remote>();
    check::<Immediate>();
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let t2 = tctx.clone();
    assert!(t2.is_alive());
    assert!(format!("{tctx:?}").contains("Remote"));
}

#[test]
fn e12_closures_run_on_the_loop_thread_in_order() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    thread::spawn(move || {
        for i in 0..100 {
            let l = l.clone();
            tctx.schedule(move |_| l.lock().unwrap().push((i, thread::current().id())))
                .unwrap();
        }
    })
    .join()
    .unwrap();
    run_until(&mut ev, "100 closures", |_| {
        log.lock().unwrap().len() == 100
    });
    let log = log.lock().unwrap();
    let me = thread::current().id();
    assert!(log.iter().all(|&(_, t)| t == me));
    let order: Vec<i32> = log.iter().map(|&(i, _)| i).collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>(), "first in, first out");
}

#[test]
fn e12_fifo_per_sender_with_concurrent_senders() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    const SENDERS: usize = 4;
    const EACH: usize = 1000;
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let tctx = tctx.clone();
            let log = log.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    let log = log.clone();
                    tctx.schedule(move |_| log.lock().unwrap().push((s, i)))
                        .unwrap();
                }
            })
        })
        .collect();
    run_until(&mut ev, "every closure", |_| {
        log.lock().unwrap().len() == SENDERS * EACH
    });
    for t in threads {
        t.join().unwrap();
    }
    let log = log.lock().unwrap();
    for s in 0..SENDERS {
        let mine: Vec<usize> = log.iter().filter(|m| m.0 == s).map(|m| m.1).collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "sender {s}");
    }
}

#[test]
fn e12_closure_gets_the_loop_context() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let inbox = ev.heap_mut().new_context(None).unwrap();
    thread::spawn(move || {
        tctx.schedule(move |ev| {
            ev.heap_mut().alloc_str(inbox, "made on the loop").unwrap();
        })
        .unwrap();
    })
    .join()
    .unwrap();
    run_until(&mut ev, "the closure", |ev| {
        ev.heap().total_blocks(inbox).unwrap() == 2
    });
}

#[test]
fn e12_schedule_after_the_loop_is_gone_hands_the_closure_back() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    drop(ev);
    assert!(!tctx.is_alive());
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let err = tctx
        .schedule(move |_| {
            r.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "the event context is gone");
    assert_eq!(format!("{err:?}"), "ScheduleError(..)");
    // The closure came back whole: run it here.
    let f = err.into_inner();
    let mut other = Context::new().unwrap();
    f(&mut other);
    assert_eq!(ran.load(Ordering::Relaxed), 1);
}

#[test]
fn e12_schedule_immediate_after_the_loop_is_gone() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let im = ev.create_immediate(None).unwrap();
    drop(ev);
    let d = Dropped::default();
    let tok = Token(d.clone());
    let err = tctx
        .schedule_immediate(im, move |_, _| drop(tok))
        .unwrap_err();
    assert!(d.0.lock().unwrap().is_empty(), "handed back, not dropped");
    drop(err);
    assert_eq!(d.0.lock().unwrap().len(), 1);
}

#[test]
fn e12_queued_closures_are_dropped_with_the_loop() {
    let d = Dropped::default();
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let dest = thread::spawn(move || {
        let mut ev = Context::new().unwrap();
        tx.send(ev.remote().unwrap()).unwrap();
        go_rx.recv().unwrap();
        drop(ev);
        thread::current().id()
    });
    let tctx = rx.recv().unwrap();
    for _ in 0..5 {
        let tok = Token(d.clone());
        tctx.schedule(move |_| -> () {
            let _keep = &tok;
            panic!("must not run")
        })
        .unwrap();
    }
    go_tx.send(()).unwrap();
    let dest_id = dest.join().unwrap();
    let drops = d.0.lock().unwrap().clone();
    assert_eq!(drops.len(), 5, "no leak");
    assert!(
        drops.iter().all(|&t| t == dest_id),
        "dropped on the loop's thread"
    );
    assert!(!tctx.is_alive());
}

#[test]
fn e12_schedule_immediate_runs_the_loops_own_immediate() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let im = ev.create_immediate(owner).unwrap();
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    thread::spawn(move || {
        tctx.schedule_immediate(im, move |ev, me| {
            assert!(ev.heap().contains(me.erase()));
            *g.lock().unwrap() = Some(me);
        })
        .unwrap();
    })
    .join()
    .unwrap();
    run_until(&mut ev, "the immediate", |_| got.lock().unwrap().is_some());
    assert_eq!(got.lock().unwrap().unwrap(), im, "the same immediate");
    // Ownership stays on the loop: the immediate is still there, unqueued,
    // and works as a local immediate.
    assert_eq!(ev.heap().parent(im.erase()).unwrap(), Some(owner.erase()));
    assert!(!ev.immediate_is_scheduled(im).unwrap());
    let again = Arc::new(AtomicUsize::new(0));
    let a = again.clone();
    ev.schedule_immediate(im, move |_, _| {
        a.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(again.load(Ordering::Relaxed), 1);
}

#[test]
fn e12_freed_immediate_does_not_run_and_its_handler_is_dropped() {
    // C aborts when a queued threaded immediate is freed; here the handler
    // is dropped, not run.
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let im = ev.create_immediate(owner).unwrap();
    let d = Dropped::default();
    let tok = Token(d.clone());
    thread::spawn(move || {
        tctx.schedule_immediate(im, move |_, _| -> () {
            let _keep = &tok;
            panic!("a freed immediate ran")
        })
        .unwrap();
    })
    .join()
    .unwrap();
    ev.free(owner).unwrap();
    spin(&mut ev, 3);
    assert_eq!(d.0.lock().unwrap().len(), 1, "the handler was dropped");
    assert_eq!(ev.heap().live_objects(), 0);
}

#[test]
fn e12_handler_panic_reaches_loop_once_and_the_loop_goes_on() {
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    tctx.schedule(|_| -> () { panic!("boom in a threaded closure") })
        .unwrap();
    tctx.schedule(move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ev.loop_once()))
        .expect_err("the panic reaches the caller");
    assert_eq!(
        err.downcast_ref::<&str>(),
        Some(&"boom in a threaded closure")
    );
    ev.loop_once().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(tctx.is_alive());
    tctx.schedule(|_| {}).unwrap();
    ev.loop_once().unwrap();
}

fn wakes_a_blocked_loop(backend: &str) {
    let mut ev = Context::with_backend(backend).unwrap();
    let tctx = ev.remote().unwrap();
    ev.set_wait_timeout(Duration::from_secs(30));
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        tctx.schedule(move |_| {
            g.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    });
    let start = Instant::now();
    for _ in 0..2 {
        if got.load(Ordering::Relaxed) == 0 {
            ev.loop_once().unwrap();
        }
    }
    assert_eq!(got.load(Ordering::Relaxed), 1);
    assert!(start.elapsed() < Duration::from_secs(10), "not woken");
    t.join().unwrap();
}

/// E13, as it applies here: any loop (not just poll_mt) has the wake-up
/// fd, so a thread's schedule wakes a loop blocked in the kernel.
#[test]
fn e13_schedule_wakes_a_blocked_epoll_loop() {
    wakes_a_blocked_loop("epoll");
}

#[test]
fn e13_schedule_wakes_a_blocked_poll_loop() {
    wakes_a_blocked_loop("poll");
}

/// `multi_tevent_threaded_2`: 100 threads each schedule, through a
/// threaded context, an immediate the main thread created; all 100 run
/// on the main thread.
#[test]
fn multi_tevent_threaded_2() {
    const THREADS: usize = 100;
    let mut ev = Context::new().unwrap();
    let tctx = ev.remote().unwrap();
    let ims: Vec<Immediate> = (0..THREADS)
        .map(|_| ev.create_immediate(None).unwrap())
        .collect();
    let base = ev.heap().live_objects();
    let ran = Arc::new(Mutex::new(vec![0u32; THREADS]));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = ims
        .iter()
        .enumerate()
        .map(|(i, &im)| {
            let tctx = tctx.clone();
            let ran = ran.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                tctx.schedule_immediate(im, move |_, me| {
                    assert_eq!(me, im);
                    ran.lock().unwrap()[i] += 1;
                })
                .map_err(|_| "gone")
                .unwrap();
            })
        })
        .collect();
    run_until(&mut ev, "100 immediates", |_| {
        ran.lock().unwrap().iter().sum::<u32>() == THREADS as u32
    });
    for t in threads {
        t.join().unwrap();
    }
    assert!(ran.lock().unwrap().iter().all(|&n| n == 1));
    spin(&mut ev, 2);
    assert_eq!(ran.lock().unwrap().iter().sum::<u32>(), THREADS as u32);
    assert_eq!(
        ev.heap().live_objects(),
        base,
        "the immediates stay, nothing more"
    );
    assert!(!ev.has_events());
}
