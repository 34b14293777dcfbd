//! tevent's rules E1 to E9 (stated in the book chapter `docs/src/rules.md`),
//! one or more tests each, on both backends. Signal parts are in `signals.rs`.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{ctx, pair, peer_closed, Log};
use tevent::{Context, Error, FdFlags};

fn counter() -> (Rc<Cell<u32>>, Rc<Cell<u32>>) {
    let c = Rc::new(Cell::new(0));
    (c.clone(), c)
}

/// E1: each event is a child of the parent the caller names.
fn e1_events_are_children_of_their_parent(b: &str) {
    let mut ev = ctx(b);
    let owner = ev.heap_mut().new_context(None).unwrap();
    let (s, _peer) = pair();
    let fde = ev.add_fd(owner, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let t = ev
        .add_timer(owner, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    let im = ev.create_immediate(owner).unwrap();
    for h in [fde.erase(), t.erase(), im.erase()] {
        assert_eq!(ev.heap().parent(h).unwrap(), Some(owner.erase()));
    }
    let top = ev.create_immediate(None).unwrap();
    assert_eq!(ev.heap().parent(top.erase()).unwrap(), None);
}

/// E1: freeing a handle deregisters it: its callback never runs.
fn e1_free_handle_deregisters(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let l = log.clone();
    let fde = ev
        .add_fd(None, s, FdFlags::READ, move |_, _, _| l.push("fd"))
        .unwrap();
    let l = log.clone();
    let t = ev
        .add_timer(None, Duration::ZERO, move |_, _, _| l.push("timer"))
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.push("imm"))
        .unwrap();
    assert!(ev.has_events());
    for h in [fde.erase(), t.erase(), im.erase()] {
        ev.heap_mut().free(h).unwrap();
    }
    assert!(!ev.has_events());
    ev.loop_wait().unwrap();
    assert!(log.get().is_empty());
    // Freeing the fd event closed the socket (C's auto-close).
    assert!(peer_closed(&peer));
}

/// E1: freeing any ancestor deregisters, by any path: the direct parent, a
/// grandparent, a parent the handle was stolen into.
fn e1_free_ancestor_deregisters(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let grand = ev.heap_mut().new_context(None).unwrap();
    let parent = ev.heap_mut().new_context(grand).unwrap();
    let other = ev.heap_mut().new_context(None).unwrap();
    let mut handles = Vec::new();
    for (i, owner) in [parent, parent, other].into_iter().enumerate() {
        let l = log.clone();
        let t = ev
            .add_timer(owner, Duration::ZERO, move |_, _, _| {
                l.push(format!("t{i}"))
            })
            .unwrap();
        handles.push(t);
    }
    // t2 moves into the doomed subtree, t1 moves out of it.
    ev.heap_mut().steal_any(parent, handles[2].erase()).unwrap();
    ev.heap_mut().steal_any(other, handles[1].erase()).unwrap();
    ev.heap_mut().free(grand).unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(log.get(), ["t1"]);
}

/// E1: a callback that frees another pending event (or its owner) stops it
/// from running, even when it was due in the same pass.
fn e1_free_from_another_callback(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let l = log.clone();
    let victim = ev
        .add_timer(owner, Duration::ZERO, move |_, _, _| l.push("victim"))
        .unwrap();
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let l = log.clone();
    ev.add_fd(owner, s, FdFlags::READ, move |_, _, _| l.push("fd"))
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |ev, _| {
        l.push("killer");
        assert!(ev.heap().contains(victim.erase()));
        ev.heap_mut().free(owner).unwrap();
    })
    .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(log.get(), ["killer"]);
}

/// E2: an event freed inside its own callback is gone when it returns, and
/// its callback never runs again; so is one whose parent it freed.
fn e2_free_self_in_callback(b: &str) {
    let mut ev = ctx(b);
    let (n, seen) = counter();
    let (s, mut peer) = pair();
    peer.write_all(b"xx").unwrap();
    let fde = ev
        .add_fd(None, s, FdFlags::READ, move |ev, me, _| {
            n.set(n.get() + 1);
            ev.heap_mut().free(me.erase()).unwrap();
            assert!(!ev.heap().contains(me.erase()));
            // A second free is a clean error (C aborts: double free).
            assert_eq!(ev.heap_mut().free(me.erase()), Err(talloc::Error::Stale));
        })
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let (m, ran) = counter();
    ev.schedule_immediate(im, move |ev, me| {
        m.set(m.get() + 1);
        ev.reschedule_immediate(me).unwrap();
        ev.heap_mut().free(me.erase()).unwrap();
    })
    .unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let (k, fired) = counter();
    ev.add_timer(owner, Duration::ZERO, move |ev, _, _| {
        k.set(k.get() + 1);
        ev.heap_mut().free(owner).unwrap();
    })
    .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!((seen.get(), ran.get(), fired.get()), (1, 1, 1));
    assert!(!ev.heap().contains(fde.erase()));
    assert!(!ev.heap().contains(owner));
    assert!(peer_closed(&peer));
}

/// E3: dropping the context with live events: fd close functions run, fds
/// are closed, no callback runs, old handles are inert (typed errors).
fn e3_drop_context_with_live_events(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (s, peer) = pair();
    let l = log.clone();
    let fde = ev
        .add_fd(None, s, FdFlags::READ, move |_, _, _| l.push("fd"))
        .unwrap();
    let l = log.clone();
    ev.set_fd_close_fn(fde, move |s: UnixStream| {
        l.push("close_fn");
        drop(s)
    })
    .unwrap();
    let (s2, peer2) = pair();
    ev.add_fd(None, s2, FdFlags::READ, |_, _, _| {}).unwrap();
    let l = log.clone();
    let t = ev
        .add_timer(None, Duration::ZERO, move |_, _, _| l.push("timer"))
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.push("imm"))
        .unwrap();
    let remote = ev.remote().unwrap();
    drop(ev);
    assert_eq!(log.get(), ["close_fn"]);
    assert!(peer_closed(&peer) && peer_closed(&peer2));
    assert!(remote.schedule(|_| ()).is_err());
    let mut other = ctx(b);
    assert_eq!(
        other.update_timer(t, Duration::ZERO),
        Err(Error::ForeignHeap)
    );
    assert_eq!(other.fd_flags(fde), Err(Error::ForeignHeap));
    assert_eq!(other.reschedule_immediate(im), Err(Error::ForeignHeap));
    other.loop_wait().unwrap();
    assert_eq!(log.get(), ["close_fn"]);
}

/// E3: a context that is itself an object of another heap goes when that
/// object's parent is freed ("the context's own parent").
fn e3_free_parent_of_context(b: &str) {
    let log = Log::new();
    let mut app = talloc::Talloc::new();
    let owner = app.new_context(None).unwrap();
    let mut ev = ctx(b);
    let (s, peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let l = log.clone();
    ev.set_fd_close_fn(fde, move |_s: UnixStream| l.push("closed"))
        .unwrap();
    let remote = ev.remote().unwrap();
    let ev = app.alloc_local(owner, ev).unwrap();
    assert!(app[ev].has_events());
    app.free(owner).unwrap();
    assert_eq!(log.get(), ["closed"]);
    assert!(peer_closed(&peer));
    assert!(!remote.is_alive());
}

/// E4: one loop_once is one unit: immediates first (FIFO), then due timers
/// in (deadline, insertion) order, then an fd.
fn e4_dispatch_order(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let l = log.clone();
    ev.add_fd(None, s, FdFlags::READ, move |ev, fde, _| {
        l.push("fd");
        ev.heap_mut().free(fde.erase()).unwrap();
    })
    .unwrap();
    let past = Instant::now() - Duration::from_millis(10);
    let l = log.clone();
    ev.add_timer(None, Instant::now(), move |_, _, _| l.push("now"))
        .unwrap();
    for name in ["zero1", "zero2"] {
        let l = log.clone();
        ev.add_timer(None, past, move |_, _, _| l.push(name))
            .unwrap();
    }
    for name in ["i1", "i2"] {
        let im = ev.create_immediate(None).unwrap();
        let l = log.clone();
        ev.schedule_immediate(im, move |_, _| l.push(name)).unwrap();
    }
    let mut passes = 0;
    while ev.has_events() {
        ev.loop_once().unwrap();
        passes += 1;
        assert_eq!(log.len(), passes, "one unit per loop_once");
    }
    assert_eq!(log.get(), ["i1", "i2", "zero1", "zero2", "now", "fd"]);
}

/// E4 step 2: closures from a Remote join the immediate queue behind the
/// immediates already queued, in the order they were sent.
fn e4_remote_joins_immediate_queue(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let remote = ev.remote().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..3 {
        let tx = tx.clone();
        remote
            .schedule(move |_| tx.send(format!("r{i}")).unwrap())
            .unwrap();
    }
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.push("local"))
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.get(), ["local"]);
    assert!(rx.try_recv().is_err());
    for i in 0..3 {
        ev.loop_once().unwrap();
        assert_eq!(rx.try_recv().unwrap(), format!("r{i}"));
    }
}

/// E5: immediates run strictly FIFO; rescheduling moves one to the tail.
fn e5_immediates_fifo(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let ims: Vec<_> = (0..4).map(|_| ev.create_immediate(None).unwrap()).collect();
    for (i, im) in ims.iter().enumerate() {
        let l = log.clone();
        ev.schedule_immediate(*im, move |ev, me| {
            l.push(format!("i{i}"));
            if i == 0 && l.len() == 1 {
                ev.reschedule_immediate(me).unwrap();
            }
        })
        .unwrap();
    }
    ev.reschedule_immediate(ims[1]).unwrap();
    ev.cancel_immediate(ims[2]).unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(log.get(), ["i0", "i3", "i1", "i0"]);
}

/// E5: timers with equal deadlines fire in insertion order; update_timer
/// puts a timer behind those already set for its new deadline.
fn e5_equal_deadlines_fire_in_insertion_order(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let at = Instant::now();
    let mut ts = Vec::new();
    for i in 0..5 {
        let l = log.clone();
        ts.push(
            ev.add_timer(None, at, move |_, _, d| {
                assert_eq!(d, at);
                l.push(format!("t{i}"))
            })
            .unwrap(),
        );
    }
    ev.update_timer(ts[1], at).unwrap();
    let l = log.clone();
    ev.add_timer(None, at - Duration::from_millis(1), move |_, _, _| {
        l.push("early")
    })
    .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(log.get(), ["early", "t0", "t2", "t3", "t4", "t1"]);
}

/// E5: two always-ready fds take turns (epoll: in the order they became
/// ready; poll: newest first), so neither starves.
fn e5_ready_fds_alternate(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (a, mut pa) = pair();
    let (c, mut pc) = pair();
    pa.write_all(b"x").unwrap();
    pc.write_all(b"x").unwrap();
    for (name, s) in [("a", a), ("c", c)] {
        let l = log.clone();
        ev.add_fd(None, s, FdFlags::READ, move |_, _, _| l.push(name))
            .unwrap();
    }
    for _ in 0..6 {
        ev.loop_once().unwrap();
    }
    let got = log.get();
    let first = if b == "poll" { "c" } else { "a" };
    assert_eq!(got[0], first, "{got:?}");
    for w in got.windows(2) {
        assert_ne!(w[0], w[1], "{got:?}");
    }
}

/// E6: loop_wait returns at once when nothing is registered; loop_once
/// with nothing waits for the wait timeout and returns Ok.
fn e6_nothing_to_do(b: &str) {
    let mut ev = ctx(b);
    let t0 = Instant::now();
    ev.loop_wait().unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500));
    ev.set_wait_timeout(Duration::from_millis(30));
    let t0 = Instant::now();
    ev.loop_once().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // An unscheduled immediate and a fired timer are not events.
    ev.create_immediate(None).unwrap();
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_wait().unwrap();
    assert!(!ev.has_events());
}

/// E6/E9: an fd event with empty flags stays registered (it counts for
/// loop_wait, as in tevent 0.14) but is never called.
fn e6_silent_fd_is_still_an_event(b: &str) {
    let mut ev = ctx(b);
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let (n, calls) = counter();
    let fde = ev
        .add_fd(None, s, FdFlags::empty(), move |_, _, _| n.set(n.get() + 1))
        .unwrap();
    assert!(ev.has_events());
    ev.set_wait_timeout(Duration::from_millis(20));
    ev.loop_once().unwrap();
    assert_eq!(calls.get(), 0);
    ev.set_fd_flags(fde, FdFlags::READ).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(calls.get(), 1);
}

/// E7: a nested loop_once is refused with a typed error, and (unlike C
/// 0.14) the context stays usable.
fn e7_nested_loop_refused(b: &str) {
    let mut ev = ctx(b);
    let (n, ran) = counter();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, move |ev, _| {
        assert_eq!(ev.loop_once(), Err(Error::Nested));
        let t = ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
        assert_eq!(ev.loop_wait(), Err(Error::Nested));
        assert_eq!(ev.loop_until(|_| false), Err(Error::Nested));
        ev.free(t.erase()).unwrap();
        n.set(n.get() + 1);
    })
    .unwrap();
    ev.loop_once().unwrap();
    ev.reschedule_immediate(im).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ran.get(), 2);
}

/// E8: a timer is freed (with its subtree) after it fired; an immediate is
/// not, and can be scheduled again; freeing a queued immediate cancels it.
fn e8_lifecycles(b: &str) {
    let mut ev = ctx(b);
    let t = ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    let data = ev.heap_mut().alloc_str(t.erase(), "private data").unwrap();
    ev.loop_once().unwrap();
    assert!(!ev.heap().contains(t.erase()) && !ev.heap().contains(data));
    assert_eq!(ev.timer_deadline(t), Err(Error::Stale));

    let (n, ran) = counter();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, move |_, _| n.set(n.get() + 1))
        .unwrap();
    ev.loop_once().unwrap();
    assert!(ev.heap().contains(im.erase()));
    ev.reschedule_immediate(im).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ran.get(), 2);
    ev.reschedule_immediate(im).unwrap();
    ev.heap_mut().free(im.erase()).unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(ran.get(), 2);
}

/// E8: update_timer on a timer whose callback runs is a typed error.
fn e8_firing_timer_cannot_be_rearmed(b: &str) {
    let mut ev = ctx(b);
    let (n, ran) = counter();
    ev.add_timer(None, Duration::ZERO, move |ev, me, _| {
        assert_eq!(ev.update_timer(me, Duration::ZERO), Err(Error::TimerFiring));
        n.set(n.get() + 1);
    })
    .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(ran.get(), 1);
}

/// E9: the handler gets the ready flags masked to what it asked for.
fn e9_flags_are_masked(b: &str) {
    let mut ev = ctx(b);
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let got = Rc::new(Cell::new(FdFlags::empty()));
    let g = got.clone();
    let fde = ev
        .add_fd(None, s, FdFlags::WRITE, move |ev, me, flags| {
            g.set(flags);
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(got.get(), FdFlags::WRITE);
    ev.set_fd_flags(fde, FdFlags::READ | FdFlags::WRITE)
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(got.get(), FdFlags::READ | FdFlags::WRITE);
    assert_eq!(ev.fd_flags(fde).unwrap(), FdFlags::empty());
}

/// E9: a hang-up is reported as READ to a reader and as ERROR to an event
/// that asked for ERROR; a write-only event is not called and loses WRITE.
fn e9_hangup(b: &str) {
    let mut ev = ctx(b);
    let (r, peer) = pair();
    let (w, wpeer) = pair();
    let (e, epeer) = pair();
    // Fill w's buffer so only the hang-up can wake it.
    let buf = [0u8; 4096];
    while (&w).write(&buf).is_ok() {}
    let log = Log::new();
    let l = log.clone();
    let rfd = ev
        .add_fd(None, r, FdFlags::READ, move |ev, me, flags| {
            l.push(format!("r {flags:?}"));
            let mut b = [0u8; 8];
            assert_eq!(ev.fd_io(me).unwrap().read(&mut b).unwrap(), 0);
            ev.heap_mut().free(me.erase()).unwrap();
        })
        .unwrap();
    let l = log.clone();
    let wfd = ev
        .add_fd(None, w, FdFlags::WRITE, move |_, _, flags| {
            l.push(format!("w {flags:?}"))
        })
        .unwrap();
    let l = log.clone();
    ev.add_fd(None, e, FdFlags::ERROR, move |ev, me, flags| {
        l.push(format!("e {flags:?}"));
        ev.heap_mut().free(me.erase()).unwrap();
    })
    .unwrap();
    drop((peer, wpeer, epeer));
    ev.set_wait_timeout(Duration::from_millis(50));
    for _ in 0..4 {
        ev.loop_once().unwrap();
    }
    let mut got = log.get();
    got.sort();
    assert_eq!(got, ["e FdFlags(ERROR)", "r FdFlags(READ)"]);
    assert!(!ev.heap().contains(rfd.erase()));
    assert_eq!(ev.fd_flags(wfd).unwrap(), FdFlags::empty());
}

/// E9: two events on one fd (a reader and a writer); both get their own
/// conditions.
fn e9_two_events_on_one_fd(b: &str) {
    let mut ev = ctx(b);
    let (s, mut peer) = pair();
    let s = Rc::new(s);
    let log = Log::new();
    let l = log.clone();
    let rd = ev
        .add_fd(None, s.clone(), FdFlags::READ, move |ev, me, f| {
            l.push(format!("read {f:?}"));
            let mut b = [0u8; 1];
            (&**ev.fd_io(me).unwrap()).read_exact(&mut b).unwrap();
        })
        .unwrap();
    let l = log.clone();
    let wr = ev
        .add_fd(None, s.clone(), FdFlags::WRITE, move |ev, me, f| {
            l.push(format!("write {f:?}"));
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
        })
        .unwrap();
    peer.write_all(b"x").unwrap();
    ev.loop_once().unwrap();
    ev.loop_once().unwrap();
    let mut got = log.get();
    got.sort();
    assert_eq!(got, ["read FdFlags(READ)", "write FdFlags(WRITE)"]);
    // Freeing one leaves the other working.
    ev.heap_mut().free(wr.erase()).unwrap();
    peer.write_all(b"y").unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.len(), 3);
    ev.heap_mut().free(rd.erase()).unwrap();
    assert_eq!(Rc::strong_count(&s), 1);
}

/// E9: the close function gets the I/O object when the event is freed;
/// take_fd_io gives it back instead, with no close function.
fn e9_close_fn_and_take(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let (s, peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let l = log.clone();
    ev.set_fd_close_fn(fde, move |_s: UnixStream| l.push("closed"))
        .unwrap();
    ev.heap_mut().free(fde.erase()).unwrap();
    assert_eq!(log.take(), ["closed"]);
    assert!(peer_closed(&peer));

    let (s, mut peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let l = log.clone();
    ev.set_fd_close_fn(fde, move |_s: UnixStream| l.push("closed"))
        .unwrap();
    let s = ev.take_fd_io(fde).unwrap();
    assert!(log.get().is_empty());
    assert!(!ev.has_events());
    peer.write_all(b"still open").unwrap();
    let mut buf = [0u8; 10];
    (&s).read_exact(&mut buf).unwrap();
    assert_eq!(ev.take_fd_io(fde).unwrap_err(), Error::Stale);
}

/// A context keeps working after one of its callbacks replaced it.
fn context_replaced_in_callback(b: &str) {
    let mut ev = ctx(b);
    let b2 = b.to_string();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, move |ev, _| {
        let old = std::mem::replace(ev, Context::with_backend(&b2).unwrap());
        drop(old);
    })
    .unwrap();
    ev.loop_once().unwrap();
    let (n, ran) = counter();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| n.set(1))
        .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(ran.get(), 1);
}

/// The heap itself replaced inside a callback: every event goes with the
/// old heap, and the loop carries on.
fn heap_replaced_in_callback(b: &str) {
    let mut ev = ctx(b);
    let (n, ran) = counter();
    let im = ev.create_immediate(None).unwrap();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| n.set(1))
        .unwrap();
    ev.schedule_immediate(im, |ev, _| {
        drop(std::mem::take(ev.heap_mut()));
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert!(!ev.has_events());
    ev.loop_wait().unwrap();
    assert_eq!(ran.get(), 0);
    assert_eq!(ev.reschedule_immediate(im), Err(Error::ForeignHeap));
}

/// A subtree holding events cannot be moved to another heap (the events
/// are bound to this loop's thread): the refusal leaves them registered.
fn events_do_not_leave_the_heap(b: &str) {
    let mut ev = ctx(b);
    let owner = ev.heap_mut().new_context(None).unwrap();
    let t = ev.add_timer(owner, Duration::ZERO, |_, _, _| {}).unwrap();
    assert!(ev.heap_mut().detach(owner).is_err());
    assert!(ev.heap().contains(t.erase()));
    assert!(ev.has_events());
    ev.loop_wait().unwrap();
}

/// E1: every handle is its heap object's handle: it converts to an
/// `AnyPtr` for the heap calls and names a parent, with no `erase()`.
fn e1_handles_are_heap_handles_and_parents(b: &str) {
    let mut ev = ctx(b);
    let (s, _peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let under_fd = ev
        .add_timer(fde, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    let timer = ev
        .add_timer(None, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    let im = ev.create_immediate(timer).unwrap();
    let req: tevent::Req<u8> = ev.req_create(im, 0).unwrap();
    let q = ev.queue_create(req, "q").unwrap();
    assert_eq!(ev.heap().parent(under_fd).unwrap(), Some(fde.into()));
    assert_eq!(ev.heap().parent(im).unwrap(), Some(timer.into()));
    assert_eq!(ev.heap().parent(req).unwrap(), Some(im.into()));
    assert_eq!(ev.heap().parent(q).unwrap(), Some(req.into()));
    ev.free(timer).unwrap();
    assert!(!ev.heap().contains(q), "freed with its ancestors");
    ev.free(fde).unwrap();
    assert!(!ev.has_events());
}

both!(
    e1_handles_are_heap_handles_and_parents,
    heap_replaced_in_callback,
    events_do_not_leave_the_heap,
    e1_events_are_children_of_their_parent,
    e1_free_handle_deregisters,
    e1_free_ancestor_deregisters,
    e1_free_from_another_callback,
    e2_free_self_in_callback,
    e3_drop_context_with_live_events,
    e3_free_parent_of_context,
    e4_dispatch_order,
    e4_remote_joins_immediate_queue,
    e5_immediates_fifo,
    e5_equal_deadlines_fire_in_insertion_order,
    e5_ready_fds_alternate,
    e6_nothing_to_do,
    e6_silent_fd_is_still_an_event,
    e7_nested_loop_refused,
    e8_lifecycles,
    e8_firing_timer_cannot_be_rearmed,
    e9_flags_are_masked,
    e9_hangup,
    e9_two_events_on_one_fd,
    e9_close_fn_and_take,
    context_replaced_in_callback,
);
