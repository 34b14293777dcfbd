//! Signal events, on both backends. Signal state is process-wide, so these
//! tests run one after another on the main thread, in a binary without the
//! libtest harness (`harness = false`): `cargo test --test signals [-- FILTER]`.
//!
//! A few checks need a process of their own (a signal whose action was put
//! back kills it): the binary re-runs itself with `TEVENT_SIGNAL_CHILD` set.

mod common;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{ctx, pair, Log};
use nix::unistd::Pid;
use tevent::{Delivery, FdFlags, SaFlags, Signal};

/// nix's signal for ours (the tests send signals through nix).
fn nix_signal(s: Signal) -> nix::sys::signal::Signal {
    nix::sys::signal::Signal::try_from(s.number()).expect("a standard signal")
}

fn raise(s: Signal) -> nix::Result<()> {
    nix::sys::signal::raise(nix_signal(s))
}

fn kill(pid: Pid, s: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(pid, nix_signal(s))
}

/// The `SigCgt` mask of /proc: the signals the process catches.
fn sigcgt() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("SigCgt:"))
        .expect("SigCgt line");
    u64::from_str_radix(line[7..].trim(), 16).expect("hex mask")
}

/// Whether the process catches `sig`, as far as /proc can tell: under a
/// tool that catches every signal itself (valgrind), it cannot, and the
/// answer is the expected one.
fn caught(sig: Signal) -> bool {
    let mask = sigcgt();
    // Nothing here ever handles SIGTTIN: if it is caught, everything is.
    if mask & (1 << (Signal::SIGTTIN.number() - 1)) != 0 {
        return EXPECT_CAUGHT.with(|e| e.get());
    }
    mask & (1 << (sig.number() - 1)) != 0
}

thread_local! {
    static EXPECT_CAUGHT: Cell<bool> = const { Cell::new(false) };
}

/// `assert!(caught(sig) == yes)`.
fn assert_caught(sig: Signal, yes: bool) {
    EXPECT_CAUGHT.with(|e| e.set(yes));
    assert_eq!(caught(sig), yes, "{sig:?} caught");
}

type Seen = Rc<RefCell<Vec<Delivery>>>;

fn deliveries() -> (Seen, Seen) {
    let d = Rc::new(RefCell::new(Vec::new()));
    (d.clone(), d)
}

/// E4 step 1: all pending signals run first, in one loop_once, before
/// immediates, timers and fds.
fn e4_signals_run_first(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let l = log.clone();
    let se = ev
        .add_signal(
            None,
            Signal::SIGUSR1,
            SaFlags::SA_RESTART,
            move |_, _, d| l.push(format!("usr1 x{}", d.count)),
        )
        .unwrap();
    let l = log.clone();
    let se2 = ev
        .add_signal(
            None,
            Signal::SIGUSR2,
            SaFlags::SA_RESTART,
            move |_, _, d| l.push(format!("usr2 x{}", d.count)),
        )
        .unwrap();
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let l = log.clone();
    let fde = ev
        .add_fd(None, s, FdFlags::READ, move |ev, me, _| {
            l.push("fd");
            ev.free(me.erase()).unwrap();
        })
        .unwrap();
    let l = log.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| l.push("timer"))
        .unwrap();
    for name in ["i1", "i2"] {
        let im = ev.create_immediate(None).unwrap();
        let l = log.clone();
        ev.schedule_immediate(im, move |_, _| l.push(name)).unwrap();
    }
    raise(Signal::SIGUSR2).unwrap();
    raise(Signal::SIGUSR1).unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_once().unwrap();
    // Both signals in one pass, in ascending number order.
    assert_eq!(log.take(), ["usr1 x2", "usr2 x1"]);
    for _ in 0..4 {
        ev.loop_once().unwrap();
    }
    assert_eq!(log.take(), ["i1", "i2", "timer", "fd"]);
    assert!(!ev.heap().contains(fde.erase()));
    ev.free(se.erase()).unwrap();
    ev.free(se2.erase()).unwrap();
}

/// E5: plain handlers get coalesced counts; SA_SIGINFO handlers one call per
/// delivery with its siginfo; handlers of one signal run newest first.
fn e5_counts_and_siginfo(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (plain, plain_seen) = deliveries();
    let l = log.clone();
    let a = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            l.push("plain");
            plain.borrow_mut().push(d)
        })
        .unwrap();
    let (info, info_seen) = deliveries();
    let l = log.clone();
    let b2 = ev
        .add_signal(
            None,
            Signal::SIGUSR1,
            SaFlags::SA_SIGINFO,
            move |_, _, d| {
                l.push("info");
                info.borrow_mut().push(d)
            },
        )
        .unwrap();
    for _ in 0..3 {
        raise(Signal::SIGUSR1).unwrap();
    }
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["info", "info", "info", "plain"]);
    let plain = plain_seen.borrow();
    assert_eq!(plain.len(), 1);
    assert_eq!((plain[0].count, plain[0].info), (3, None));
    let pid = std::process::id() as i32;
    for d in info_seen.borrow().iter() {
        assert_eq!(d.count, 1);
        let i = d.info.expect("siginfo");
        assert_eq!((i.signo, i.pid), (Signal::SIGUSR1.number(), pid));
        assert_eq!(i.code, -6, "SI_TKILL: raise() uses tgkill");
    }
    ev.free(a.erase()).unwrap();
    ev.free(b2.erase()).unwrap();
}

/// E5: more than 256 deliveries between two passes: the oldest siginfo
/// records are lost and handed out as one call without info.
fn e5_siginfo_ring_overflow(b: &str) {
    let mut ev = ctx(b);
    let (info, seen) = deliveries();
    let se = ev
        .add_signal(
            None,
            Signal::SIGUSR2,
            SaFlags::SA_SIGINFO,
            move |_, _, d| info.borrow_mut().push(d),
        )
        .unwrap();
    let (n, total) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let n2 = n.clone();
    let plain = ev
        .add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
            n2.set(n2.get() + d.count)
        })
        .unwrap();
    for _ in 0..300 {
        raise(Signal::SIGUSR2).unwrap();
    }
    ev.loop_once().unwrap();
    total.set(seen.borrow().iter().map(|d| d.count).sum::<u64>());
    let with_info = seen.borrow().iter().filter(|d| d.info.is_some()).count();
    assert_eq!(with_info, tevent::sa_info_queue_count());
    assert_eq!(total.get(), 300);
    assert_eq!(n.get(), 300);
    ev.free(se.erase()).unwrap();
    ev.free(plain.erase()).unwrap();
}

/// SA_RESETHAND: the handler gets the combined count once and is freed.
fn resethand_handler_is_freed(b: &str) {
    let mut ev = ctx(b);
    let (n, total) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let n2 = n.clone();
    // The first handler's flags make the action: SA_RESTART keeps it.
    let keep = ev
        .add_signal(
            None,
            Signal::SIGALRM,
            SaFlags::SA_RESTART,
            move |_, _, d| n2.set(n2.get() + d.count),
        )
        .unwrap();
    let (once, calls) = deliveries();
    let one = ev
        .add_signal(
            None,
            Signal::SIGALRM,
            SaFlags::SA_RESETHAND,
            move |_, _, d| once.borrow_mut().push(d),
        )
        .unwrap();
    raise(Signal::SIGALRM).unwrap();
    raise(Signal::SIGALRM).unwrap();
    ev.loop_once().unwrap();
    raise(Signal::SIGALRM).unwrap();
    ev.loop_once().unwrap();
    total.set(n.get());
    assert_eq!(total.get(), 3);
    assert_eq!(calls.borrow().len(), 1);
    assert_eq!(calls.borrow()[0].count, 2);
    assert!(!ev.heap().contains(one.erase()));
    ev.free(keep.erase()).unwrap();
    assert_caught(Signal::SIGALRM, false);
}

/// The first handler installs the action, the last one restores the old
/// one, across contexts; every context sees every delivery.
fn actions_are_counted_across_contexts(b: &str) {
    assert_caught(Signal::SIGUSR1, false);
    let mut ev1 = ctx(b);
    let mut ev2 = ctx(b);
    let (c1, c2) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (x1, x2) = (c1.clone(), c2.clone());
    let h1 = ev1
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            x1.set(x1.get() + d.count)
        })
        .unwrap();
    assert_caught(Signal::SIGUSR1, true);
    let h2 = ev2
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            x2.set(x2.get() + d.count)
        })
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev1.loop_once().unwrap();
    ev2.loop_once().unwrap();
    assert_eq!((c1.get(), c2.get()), (1, 1));
    ev1.free(h1.erase()).unwrap();
    assert_caught(Signal::SIGUSR1, true);
    raise(Signal::SIGUSR1).unwrap();
    ev2.loop_once().unwrap();
    assert_eq!((c1.get(), c2.get()), (1, 2));
    ev2.free(h2.erase()).unwrap();
    assert_caught(Signal::SIGUSR1, false);
    // E3: dropping a context with a handler restores the action too.
    let mut ev3 = ctx(b);
    ev3.add_signal(None, Signal::SIGUSR1, SaFlags::empty(), |_, _, _| {})
        .unwrap();
    assert_caught(Signal::SIGUSR1, true);
    drop(ev3);
    assert_caught(Signal::SIGUSR1, false);
}

/// A signal sent to the process from another thread wakes a loop blocked
/// in its wait, and a context on another thread sees it too.
fn signal_wakes_blocked_loop(b: &str) {
    let mut ev = ctx(b);
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    let se = ev
        .add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
            g.set(g.get() + d.count)
        })
        .unwrap();
    let backend = b.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        let mut ev = ctx(&backend);
        let seen = Rc::new(Cell::new(0));
        let s = seen.clone();
        ev.add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
            s.set(s.get() + d.count)
        })
        .unwrap();
        ready_tx.send(()).unwrap();
        let t0 = Instant::now();
        ev.loop_until(|_| seen.get() > 0 || t0.elapsed() > Duration::from_secs(4))
            .unwrap();
        seen.get()
    });
    ready_rx.recv().unwrap();
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        kill(Pid::this(), Signal::SIGUSR2).unwrap();
    });
    let t0 = Instant::now();
    ev.loop_once().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "woken by the signal");
    assert_eq!(got.get(), 1);
    sender.join().unwrap();
    assert_eq!(other.join().unwrap(), 1);
    ev.free(se.erase()).unwrap();
}

/// C's test_free_wrapper, rewritten: a signal handler (signals run first)
/// frees the owner of pending fd, timer and immediate events; none of them
/// runs, and loop_wait returns.
fn free_owner_from_signal_handler(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let l = log.clone();
    ev.add_fd(owner, s, FdFlags::READ, move |_, _, _| l.push("fd"))
        .unwrap();
    let l = log.clone();
    ev.add_timer(owner, Duration::ZERO, move |_, _, _| l.push("timer"))
        .unwrap();
    let im = ev.create_immediate(owner).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.push("imm"))
        .unwrap();
    let l = log.clone();
    ev.add_signal(owner, Signal::SIGUSR1, SaFlags::empty(), move |ev, _, _| {
        l.push("signal");
        ev.free(owner).unwrap();
    })
    .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(log.get(), ["signal"]);
    assert_caught(Signal::SIGUSR1, false);
}

/// A handler that frees another handler of the same signal stops it from
/// being called in the same pass; one that frees itself is gone at once.
fn free_handlers_in_handler(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let l = log.clone();
    let older = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, _| {
            l.push("older")
        })
        .unwrap();
    let l = log.clone();
    ev.add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |ev, me, _| {
        l.push("newer");
        ev.free(older.erase()).unwrap();
        ev.free(me.erase()).unwrap();
    })
    .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.get(), ["newer"]);
    assert!(!ev.has_events());
    assert_caught(Signal::SIGUSR1, false);
}

/// A panicking signal handler: the panic reaches the caller of loop_once,
/// the handler stays, and the loop keeps working.
fn panicking_handler(b: &str) {
    let mut ev = ctx(b);
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let se = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, _| {
            n2.set(n2.get() + 1);
            if n2.get() == 1 {
                panic!("first delivery");
            }
        })
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = catch_unwind(AssertUnwindSafe(|| ev.loop_once()));
    std::panic::set_hook(hook);
    assert!(r.is_err());
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(n.get(), 2);
    ev.free(se.erase()).unwrap();
}

/// C's test_event_context, rewritten: a pipe with a reader and a writer, fd
/// handlers raising SIGALRM (a counting SA_RESTART handler and a one-shot
/// SA_RESETHAND one) and SIGUSR1 (SA_SIGINFO, counted exactly), and a timer
/// that ends the run.
fn torture_context(b: &str) {
    let mut ev = ctx(b);
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let fd_reads = Rc::new(Cell::new(0u64));
    let fd_writes = Rc::new(Cell::new(0u64));
    let alarms = Rc::new(Cell::new(0u64));
    let resethand = Rc::new(Cell::new(0u64));
    let infos = Rc::new(Cell::new(0u64));
    let done = Rc::new(Cell::new(false));
    let r = fd_reads.clone();
    ev.add_fd(None, rd, FdFlags::READ, move |ev, me, _| {
        let mut buf = [0u8; 1];
        let fd = std::os::fd::AsRawFd::as_raw_fd(ev.fd_io(me).unwrap());
        assert_eq!(nix::unistd::read(fd, &mut buf).unwrap(), 1);
        r.set(r.get() + 1);
        if r.get() % 10 == 0 {
            raise(Signal::SIGALRM).unwrap();
        }
    })
    .unwrap();
    let w = fd_writes.clone();
    ev.add_fd(None, wr, FdFlags::WRITE, move |ev, me, _| {
        nix::unistd::write(ev.fd_io(me).unwrap(), b"x").unwrap();
        w.set(w.get() + 1);
        if w.get() % 10 == 0 {
            raise(Signal::SIGUSR1).unwrap();
        }
    })
    .unwrap();
    let a = alarms.clone();
    ev.add_signal(
        None,
        Signal::SIGALRM,
        SaFlags::SA_RESTART,
        move |_, _, d| a.set(a.get() + d.count),
    )
    .unwrap();
    let rh = resethand.clone();
    let once = ev
        .add_signal(
            None,
            Signal::SIGALRM,
            SaFlags::SA_RESETHAND,
            move |_, _, d| rh.set(rh.get() + d.count),
        )
        .unwrap();
    let i = infos.clone();
    ev.add_signal(
        None,
        Signal::SIGUSR1,
        SaFlags::SA_SIGINFO,
        move |_, _, d| {
            assert!(d.info.is_some());
            i.set(i.get() + d.count)
        },
    )
    .unwrap();
    let dn = done.clone();
    ev.add_timer(None, Duration::from_millis(200), move |_, _, _| {
        dn.set(true)
    })
    .unwrap();
    ev.loop_until(|_| done.get()).unwrap();
    // Let the last raised signals through.
    let t = ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_until(|ev| !ev.heap().contains(t.erase())).unwrap();
    assert!(fd_reads.get() > 10 && fd_writes.get() > 10);
    assert_eq!(alarms.get(), fd_reads.get() / 10);
    assert_eq!(
        infos.get(),
        fd_writes.get() / 10,
        "SA_SIGINFO count is exact"
    );
    assert_eq!(resethand.get().min(1), 1);
    assert!(!ev.heap().contains(once.erase()));
    let pipe_events = (fd_reads.get() + fd_writes.get()) as f64 / 0.2;
    println!("    ({b}: {pipe_events:.0} pipe events/sec)");
    drop(ev);
    assert_caught(Signal::SIGALRM, false);
    assert_caught(Signal::SIGUSR1, false);
}

/// The old action is really back: after the last handler of SIGUSR1 goes,
/// SIGUSR1 kills the process (in a child process).
fn action_restored_in_child(_b: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new(exe)
        .env("TEVENT_SIGNAL_CHILD", "restore")
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGUSR1.number()),
        "{status:?}"
    );
}

/// A handler that raises another signal: C looks at each signal number in
/// turn, after the handlers of the numbers below it ran, so a higher signal
/// raised by a handler runs in the same pass.
fn e07_signal_raised_by_a_handler_runs_in_the_same_pass(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let l = log.clone();
    let usr1 = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            l.push(format!("usr1 x{}", d.count));
            raise(Signal::SIGUSR2).unwrap();
        })
        .unwrap();
    let l = log.clone();
    let usr2 = ev
        .add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
            l.push(format!("usr2 x{}", d.count))
        })
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["usr1 x1", "usr2 x1"]);
    ev.free(usr1.erase()).unwrap();
    ev.free(usr2.erase()).unwrap();
}

/// A handler added while its signal is pending sees that delivery: added
/// by a handler of a lower signal in the same pass, or added after the
/// signal's only handler was freed and before the loop looked.
fn e08_a_new_handler_sees_a_pending_delivery(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    // Added in the same pass, by a handler of a lower signal.
    let l = log.clone();
    let first = ev
        .add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
            l.push(format!("first x{}", d.count))
        })
        .unwrap();
    let l = log.clone();
    let added = Rc::new(Cell::new(None));
    let a = added.clone();
    let adder = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |ev, _, _| {
            let l = l.clone();
            let se = ev
                .add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, d| {
                    l.push(format!("added x{}", d.count))
                })
                .unwrap();
            a.set(Some(se));
        })
        .unwrap();
    raise(Signal::SIGUSR2).unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.loop_once().unwrap();
    // Newest first.
    assert_eq!(log.take(), ["added x1", "first x1"]);
    ev.free(adder.erase()).unwrap();
    ev.free(first.erase()).unwrap();
    ev.free(added.take().unwrap().erase()).unwrap();
    assert_caught(Signal::SIGUSR2, false);

    // The only handler freed and replaced before the loop looked.
    let old = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), |_, _, _| -> () {
            unreachable!("freed before the loop ran")
        })
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.free(old.erase()).unwrap();
    let l = log.clone();
    let new = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            l.push(format!("new x{}", d.count))
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["new x1"]);
    ev.free(new.erase()).unwrap();
}

/// `re_initialise` (after `fork`) moves the context's signal wake-ups to a
/// pipe of its own: handlers keep running, and a signal still wakes a loop
/// blocked in its wait.
fn re_initialise_keeps_signal_handlers(b: &str) {
    let mut ev = ctx(b);
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    let se = ev
        .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, d| {
            g.set(g.get() + d.count)
        })
        .unwrap();
    raise(Signal::SIGUSR1).unwrap();
    ev.re_initialise().unwrap();
    ev.loop_once().unwrap();
    assert_eq!(got.get(), 1, "a delivery from before is kept");
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        kill(Pid::this(), Signal::SIGUSR1).unwrap();
    });
    ev.set_wait_timeout(Duration::from_secs(10));
    let t0 = Instant::now();
    ev.loop_once().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "woken through the new pipe"
    );
    assert_eq!(got.get(), 2);
    sender.join().unwrap();
    ev.free(se.erase()).unwrap();
    assert_caught(Signal::SIGUSR1, false);
}

/// A signal event added through a wrapper runs inside its hooks, which are
/// told the delivery.
fn wrapped_signal_handler(b: &str) {
    struct Seen(Rc<RefCell<Vec<String>>>);
    impl tevent::WrapperHooks for Seen {
        fn before_handler(&mut self, w: &tevent::Wrapped) {
            if let tevent::Wrapped::Signal { delivery, .. } = w {
                self.0
                    .borrow_mut()
                    .push(format!("before x{}", delivery.count));
            }
        }
        fn after_handler(&mut self, _: &tevent::Wrapped) {
            self.0.borrow_mut().push("after".into());
        }
    }
    let mut ev = ctx(b);
    let log = Rc::new(RefCell::new(Vec::new()));
    let w = ev.wrapper_create(None, Seen(log.clone())).unwrap();
    let l = log.clone();
    let se = ev
        .use_wrapper(w, |ev| {
            ev.add_signal(None, Signal::SIGUSR2, SaFlags::empty(), move |_, _, _| {
                l.borrow_mut().push("handler".into())
            })
        })
        .unwrap()
        .unwrap();
    raise(Signal::SIGUSR2).unwrap();
    raise(Signal::SIGUSR2).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(*log.borrow(), ["before x2", "handler", "after"]);
    // Freeing the wrapper frees the handler, and the action is restored.
    ev.free(w.erase()).unwrap();
    assert!(!ev.heap().contains(se.erase()));
    assert_caught(Signal::SIGUSR2, false);
}

fn child(mode: &str) {
    if mode == "restore" {
        let mut ev = tevent::Context::new().unwrap();
        let got = Rc::new(Cell::new(0));
        let g = got.clone();
        let se = ev
            .add_signal(None, Signal::SIGUSR1, SaFlags::empty(), move |_, _, _| {
                g.set(1)
            })
            .unwrap();
        raise(Signal::SIGUSR1).unwrap();
        ev.loop_once().unwrap();
        assert_eq!(got.get(), 1);
        ev.free(se.erase()).unwrap();
        raise(Signal::SIGUSR1).unwrap();
        // Not reached: the default action terminates the process.
        std::process::exit(0);
    }
}

type Test = (&'static str, fn(&str));

/// A task's signal stream: deliveries queue up between awaits and come out
/// in order, one per handler call; the handler is the task's child, so it
/// goes with the task.
fn stream_queues_deliveries(b: &str) {
    let mut ev = ctx(b);
    let got = ev
        .block_on(async {
            let mut s = tevent::signals(Signal::SIGUSR1, SaFlags::SA_SIGINFO).unwrap();
            raise(Signal::SIGUSR1).unwrap();
            raise(Signal::SIGUSR1).unwrap();
            tevent::yield_now().await; // the loop runs the handler twice
            raise(Signal::SIGUSR1).unwrap();
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(s.recv().await.expect("the handler is there"));
            }
            got
        })
        .unwrap();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|d| d.signal == Signal::SIGUSR1 && d.count == 1 && d.info.is_some()));
    assert!(!ev.has_events(), "the handler went with the task");
    assert_caught(Signal::SIGUSR1, false);
}

/// A stream ends (`None`) once its handler is gone: after its one call with
/// `SA_RESETHAND`, or when something frees it while a `recv` waits.
fn stream_ends_with_its_handler(b: &str) {
    let mut ev = ctx(b);
    ev.set_wait_timeout(Duration::from_millis(5)); // a missed wake fails fast
    let ends = ev
        .block_on(async {
            let mut once = tevent::signals(Signal::SIGUSR2, SaFlags::SA_RESETHAND).unwrap();
            raise(Signal::SIGUSR2).unwrap();
            let first = once.recv().await.map(|d| d.count);
            let after = once.recv().await;
            (first, after)
        })
        .unwrap();
    assert_eq!(ends, (Some(1), None));

    let event = Rc::new(Cell::new(None));
    let e = event.clone();
    let task = ev
        .spawn(None, async move {
            let mut s = tevent::signals(Signal::SIGUSR2, SaFlags::SA_RESTART).unwrap();
            e.set(Some(s.event()));
            s.recv().await
        })
        .unwrap();
    ev.loop_once().unwrap();
    ev.free(event.get().expect("the task ran")).unwrap();
    for _ in 0..10 {
        if task.is_finished() {
            break;
        }
        ev.loop_once().unwrap();
    }
    assert_eq!(task.try_take(), Some(Ok(None)), "a waiting recv is told");
    assert_caught(Signal::SIGUSR2, false);
}

/// Dropping the stream, or freeing its task while it waits, takes the
/// handler off: the signal's old action is back.
fn stream_goes_with_drop_or_task(b: &str) {
    let mut ev = ctx(b);
    ev.block_on(async {
        let s = tevent::signals(Signal::SIGUSR1, SaFlags::SA_RESTART).unwrap();
        assert_caught(Signal::SIGUSR1, true);
        drop(s);
        assert_caught(Signal::SIGUSR1, false);
    })
    .unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    ev.spawn(owner, async {
        let mut s = tevent::signals(Signal::SIGUSR1, SaFlags::SA_RESTART).unwrap();
        s.recv().await
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_caught(Signal::SIGUSR1, true);
    ev.free(owner).unwrap();
    assert_caught(Signal::SIGUSR1, false);
    assert!(!ev.has_events());
}

const TESTS: &[Test] = &[
    ("e4_signals_run_first", e4_signals_run_first),
    ("e5_counts_and_siginfo", e5_counts_and_siginfo),
    ("e5_siginfo_ring_overflow", e5_siginfo_ring_overflow),
    (
        "e07_signal_raised_by_a_handler_runs_in_the_same_pass",
        e07_signal_raised_by_a_handler_runs_in_the_same_pass,
    ),
    (
        "e08_a_new_handler_sees_a_pending_delivery",
        e08_a_new_handler_sees_a_pending_delivery,
    ),
    ("resethand_handler_is_freed", resethand_handler_is_freed),
    (
        "actions_are_counted_across_contexts",
        actions_are_counted_across_contexts,
    ),
    ("signal_wakes_blocked_loop", signal_wakes_blocked_loop),
    (
        "free_owner_from_signal_handler",
        free_owner_from_signal_handler,
    ),
    ("free_handlers_in_handler", free_handlers_in_handler),
    ("panicking_handler", panicking_handler),
    ("wrapped_signal_handler", wrapped_signal_handler),
    (
        "re_initialise_keeps_signal_handlers",
        re_initialise_keeps_signal_handlers,
    ),
    ("torture_context", torture_context),
    ("stream_queues_deliveries", stream_queues_deliveries),
    ("stream_ends_with_its_handler", stream_ends_with_its_handler),
    (
        "stream_goes_with_drop_or_task",
        stream_goes_with_drop_or_task,
    ),
    ("action_restored_in_child", action_restored_in_child),
];

fn main() {
    if let Ok(mode) = std::env::var("TEVENT_SIGNAL_CHILD") {
        child(&mode);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names = || {
        tevent::Context::backends().iter().flat_map(|b| {
            TESTS
                .iter()
                .map(move |(n, f)| (format!("{b}::{n}"), *b, *f))
        })
    };
    if args.iter().any(|a| a == "--list") {
        for (name, _, _) in names() {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, backend, f) in names() {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        match catch_unwind(|| f(backend)) {
            Ok(()) => {
                println!("ok");
                passed += 1;
            }
            Err(_) => {
                println!("FAILED");
                failed.push(name);
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        for f in &failed {
            println!("    {f}");
        }
        std::process::exit(1);
    }
}
