//! The behaviours of C tevent's torture suite (`testsuite.c`, its
//! event and loop tests) and of its Python binding tests, rewritten, on both
//! backends. The signal cases (`context`, `free_wrapper`) are in
//! `signals.rs`; the thread cases are in `remote.rs`.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{ctx, pair, Log};
use tevent::{Context, FdEvent, FdFlags};

/// C's `fd1`: one byte at a time across a socketpair by switching flags:
/// WRITE on one end, then READ on the other, then both silent while a timer
/// restarts the cycle; at the end the peer closes and the reader sees the
/// hang-up as READ (EOF), then goes silent with empty flags.
fn fd1(b: &str) {
    struct St {
        cycles: u32,
        w: Option<FdEvent<UnixStream>>,
        r: Option<FdEvent<UnixStream>>,
    }
    let mut ev = ctx(b);
    let (s0, s1) = pair();
    let st = Rc::new(RefCell::new(St {
        cycles: 0,
        w: None,
        r: None,
    }));
    let st0 = st.clone();
    let w = ev
        .add_fd(None, s0, FdFlags::WRITE, move |ev, me, flags| {
            assert_eq!(flags, FdFlags::WRITE);
            ev.fd_io(me).unwrap().write_all(b"1").unwrap();
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
            let r = st0.borrow().r.unwrap();
            ev.set_fd_flags(r, FdFlags::READ).unwrap();
        })
        .unwrap();
    let st1 = st.clone();
    let r = ev
        .add_fd(None, s1, FdFlags::empty(), move |ev, me, flags| {
            assert_eq!(flags, FdFlags::READ);
            let mut c = [0u8; 1];
            ev.fd_io(me).unwrap().read_exact(&mut c).unwrap();
            assert_eq!(&c, b"1");
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
            let st1 = st1.clone();
            ev.add_timer(None, Duration::from_millis(1), move |ev, _, _| {
                let mut s = st1.borrow_mut();
                s.cycles += 1;
                if s.cycles < 5 {
                    ev.set_fd_flags(s.w.unwrap(), FdFlags::WRITE).unwrap();
                }
            })
            .unwrap();
        })
        .unwrap();
    st.borrow_mut().w = Some(w);
    st.borrow_mut().r = Some(r);
    // Silent events keep the loop alive (E6): stop when the cycles are done.
    ev.loop_until(|_| st.borrow().cycles == 5).unwrap();
    // The writer's end goes; the reader gets READ and reads EOF.
    ev.free(w.erase()).unwrap();
    let eof = Rc::new(Cell::new(0));
    let e = eof.clone();
    let r2 = ev.take_fd_io(r).unwrap();
    let r = ev
        .add_fd(None, r2, FdFlags::READ, move |ev, me, flags| {
            assert_eq!(flags, FdFlags::READ);
            let mut c = [0u8; 1];
            assert_eq!(ev.fd_io(me).unwrap().read(&mut c).unwrap(), 0);
            e.set(e.get() + 1);
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(eof.get(), 1);
    ev.set_wait_timeout(Duration::from_millis(20));
    ev.loop_once().unwrap();
    assert_eq!(eof.get(), 1, "silent after flags 0");
    ev.free(r.erase()).unwrap();
}

/// C's `fd2`: two sockets fill each other's buffers and drain them, with
/// READ/WRITE juggling; every handler call makes progress (no spinning) and
/// gets only the flags it asked for.
fn fd2(b: &str) {
    const TOTAL: usize = 1 << 20;
    struct End {
        sent: usize,
        received: usize,
    }
    let mut ev = ctx(b);
    let (a, c) = pair();
    let ends = Rc::new(RefCell::new([
        End {
            sent: 0,
            received: 0,
        },
        End {
            sent: 0,
            received: 0,
        },
    ]));
    let calls = Rc::new(Cell::new(0u64));
    for (i, s) in [a, c].into_iter().enumerate() {
        let ends = ends.clone();
        let calls = calls.clone();
        ev.add_fd(
            None,
            s,
            FdFlags::READ | FdFlags::WRITE,
            move |ev, me, flags| {
                calls.set(calls.get() + 1);
                let asked = ev.fd_flags(me).unwrap();
                assert!(asked.contains(flags), "{flags:?} not in {asked:?}");
                let sock = ev.fd_io(me).unwrap();
                let mut progress = 0;
                let mut e = ends.borrow_mut();
                if flags.contains(FdFlags::READ) {
                    let mut buf = [0u8; 4096];
                    loop {
                        match (&*sock).read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                e[i].received += n;
                                progress += n;
                            }
                            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                            Err(err) => panic!("{err}"),
                        }
                    }
                }
                if flags.contains(FdFlags::WRITE) {
                    let buf = [0x55u8; 4096];
                    while e[i].sent < TOTAL {
                        let want = (TOTAL - e[i].sent).min(buf.len());
                        match (&*sock).write(&buf[..want]) {
                            Ok(n) => {
                                e[i].sent += n;
                                progress += n;
                            }
                            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                            Err(err) => panic!("{err}"),
                        }
                    }
                }
                let mut want = FdFlags::empty();
                if e[i].sent < TOTAL {
                    want |= FdFlags::WRITE;
                }
                if e[i].received < TOTAL {
                    want |= FdFlags::READ;
                }
                assert!(progress > 0, "a call without progress: spinning");
                drop(e);
                ev.set_fd_flags(me, want).unwrap();
            },
        )
        .unwrap();
    }
    let done = |_: &mut Context| {
        let e = ends.borrow();
        e.iter().all(|e| e.sent == TOTAL && e.received == TOTAL)
    };
    ev.loop_until(done).unwrap();
    assert!(calls.get() > 4);
}

/// HEAD's `fd3`: two events on one socket, one for READ and one for
/// WRITE|ERROR; a hang-up gives the reader READ (EOF) and the other ERROR.
fn fd3(b: &str) {
    let mut ev = ctx(b);
    let (s, peer) = pair();
    let s = Rc::new(s);
    let log = Log::new();
    let l = log.clone();
    ev.add_fd(None, s.clone(), FdFlags::READ, move |ev, me, f| {
        l.push(format!("reader {f:?}"));
        ev.set_fd_flags(me, FdFlags::empty()).unwrap();
    })
    .unwrap();
    let l = log.clone();
    let e = ev
        .add_fd(None, s.clone(), FdFlags::ERROR, move |ev, me, f| {
            l.push(format!("error {f:?}"));
            if f.contains(FdFlags::ERROR) {
                ev.free(me.erase()).unwrap();
            } else {
                ev.set_fd_flags(me, FdFlags::ERROR).unwrap();
            }
        })
        .unwrap();
    ev.set_wait_timeout(Duration::from_millis(20));
    ev.loop_once().unwrap();
    assert!(log.get().is_empty(), "nothing before the hang-up");
    ev.set_fd_flags(e, FdFlags::ERROR | FdFlags::WRITE).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["error FdFlags(WRITE)"]);
    drop(peer);
    ev.loop_once().unwrap();
    ev.loop_once().unwrap();
    let mut got = log.get();
    got.sort();
    assert_eq!(got, ["error FdFlags(ERROR)", "reader FdFlags(READ)"]);
    assert!(!ev.heap().contains(e.erase()));
}

/// HEAD's `fd_speed1/2/3`: pipe ping-pong with 0, 1 or 2 extra silent
/// events per fd; every hop arrives.
fn fd_speed(b: &str) {
    for extra in 0..3 {
        let mut ev = ctx(b);
        let (a, c) = pair();
        let hops = Rc::new(Cell::new(0u32));
        let n = 2000;
        let mut kick = a.try_clone().unwrap();
        for s in [a, c] {
            let s = Rc::new(s);
            for _ in 0..extra.min(1) {
                ev.add_fd(None, s.clone(), FdFlags::empty(), |_, _, _| -> () {
                    unreachable!()
                })
                .unwrap();
            }
            let h = hops.clone();
            ev.add_fd(None, s, FdFlags::READ, move |ev, me, _| {
                let sock = ev.fd_io(me).unwrap();
                let mut c = [0u8; 1];
                (&**sock).read_exact(&mut c).unwrap();
                h.set(h.get() + 1);
                if h.get() < n {
                    (&**sock).write_all(&c).unwrap();
                }
            })
            .unwrap();
        }
        // A third, unrelated silent fd for extra == 2.
        let (x, _y) = pair();
        if extra == 2 {
            ev.add_fd(None, x, FdFlags::empty(), |_, _, _| -> () {
                unreachable!()
            })
            .unwrap();
        }
        kick.write_all(b"x").unwrap();
        let t0 = Instant::now();
        ev.loop_until(|_| hops.get() == n).unwrap();
        let rate = f64::from(n) / t0.elapsed().as_secs_f64();
        println!("{b}: fd_speed{}: {rate:.0} events/sec", extra + 1);
    }
}

/// The Python binding tests: backend list and names, timers that fire with
/// no user reference, relative offsets, loop_wait.
fn bindings(b: &str) {
    assert!(Context::backends().contains(&b));
    assert!(Context::with_backend("no such backend").is_err());
    let mut ev = ctx(b);
    assert_eq!(ev.backend_name(), b);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let t0 = Instant::now();
    // No handle kept: the heap owns the timer.
    ev.add_timer(None, Duration::from_millis(20), move |_, _, deadline| {
        assert!(Instant::now() >= deadline);
        f.set(true)
    })
    .unwrap();
    ev.loop_wait().unwrap();
    assert!(fired.get());
    assert!(t0.elapsed() >= Duration::from_millis(20), "timer_offset");
}

/// Many timers, added in random order, fire in deadline order, each once.
fn timers_in_deadline_order(b: &str) {
    let mut ev = ctx(b);
    let order = Rc::new(RefCell::new(Vec::new()));
    let base = Instant::now() - Duration::from_secs(1);
    let mut x = 42u64;
    for i in 0..2000u64 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let off = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000;
        let o = order.clone();
        let t = ev
            .add_timer(None, base + Duration::from_micros(off), move |_, _, d| {
                o.borrow_mut().push((d, i))
            })
            .unwrap();
        if i % 7 == 0 {
            ev.free(t.erase()).unwrap();
        }
    }
    ev.loop_wait().unwrap();
    let got = order.borrow();
    assert_eq!(got.len(), 2000 - 286);
    for w in got.windows(2) {
        assert!(w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1));
    }
}

/// Cancelling and rescheduling many timers does not let dead entries pile
/// up or change the order.
fn timer_churn(b: &str) {
    let mut ev = ctx(b);
    let fired = Rc::new(Cell::new(0));
    let far = Instant::now() + Duration::from_secs(3600);
    let mut keep = Vec::new();
    for i in 0..5000 {
        let f = fired.clone();
        let t = ev
            .add_timer(None, far, move |_, _, _| f.set(f.get() + 1))
            .unwrap();
        if i % 2 == 0 {
            ev.free(t.erase()).unwrap();
        } else {
            ev.update_timer(t, far + Duration::from_secs(1)).unwrap();
            keep.push(t);
        }
    }
    for t in &keep {
        ev.update_timer(*t, Duration::ZERO).unwrap();
    }
    ev.loop_wait().unwrap();
    assert_eq!(fired.get(), 2500);
}

both!(
    fd1,
    fd2,
    fd3,
    fd_speed,
    bindings,
    timers_in_deadline_order,
    timer_churn
);
