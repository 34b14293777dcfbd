//! Cases where tevent-rs once disagreed with C tevent 0.14, each named
//! after the finding it pins (`eNN`), on both backends where it applies.

mod common;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use common::{ctx, pair};
use tevent::{Error, FdFlags};

/// A write-only event whose peer hung up: C's `loop_once` switches WRITE off
/// and returns, instead of waiting on in the same call (here it would wait
/// for the timer two seconds away, and fire it).
fn e06_write_only_hangup_returns_from_loop_once(backend: &str) {
    let mut ev = ctx(backend);
    ev.set_wait_timeout(Duration::from_secs(3600));
    let (a, b) = pair();
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let fde = ev
        .add_fd(None, a, FdFlags::WRITE, move |_, _, _| c.set(true))
        .map_err(|e| e.into_parts().0)
        .unwrap();
    drop(b);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    ev.add_timer(None, Duration::from_secs(2), move |_, _, _| f.set(true))
        .unwrap();
    ev.loop_once().unwrap();
    assert!(!called.get(), "a write-only event is not told of a hang-up");
    assert!(
        !fired.get(),
        "loop_once went on waiting and fired the timer"
    );
    assert_eq!(ev.fd_flags(fde), Ok(FdFlags::empty()));
}

/// `loop_wait` inside a callback is refused like every nested loop call,
/// even when nothing else is pending.
fn e11_nested_loop_wait_is_refused_even_when_idle(backend: &str) {
    let mut ev = ctx(backend);
    let got = Rc::new(Cell::new(None));
    let g = got.clone();
    ev.add_timer(None, Duration::ZERO, move |ev, _, _| {
        g.set(Some((ev.loop_wait(), ev.loop_until(|_| true))));
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(got.take(), Some((Err(Error::Nested), Err(Error::Nested))));
    // The context stays usable.
    ev.loop_wait().unwrap();
}

/// Event tags (tevent 0.14's `tevent_*_set_tag`): a `u64` on every kind of
/// event, 0 until set, kept across reschedules, stale with the event.
fn tags_on_every_kind_of_event(backend: &str) {
    let mut ev = ctx(backend);
    let (a, _b) = pair();
    let fde = ev
        .add_fd(None, a, FdFlags::READ, |_, _, _| {})
        .map_err(|e| e.into_parts().0)
        .unwrap();
    let t = ev
        .add_timer(None, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let se = ev
        .add_signal(
            None,
            tevent::Signal::SIGURG,
            tevent::SaFlags::empty(),
            |_, _, _| {},
        )
        .unwrap();
    assert_eq!(ev.fd_tag(fde), Ok(0));
    assert_eq!(ev.timer_tag(t), Ok(0));
    assert_eq!(ev.immediate_tag(im), Ok(0));
    assert_eq!(ev.signal_tag(se), Ok(0));
    ev.set_fd_tag(fde, 1).unwrap();
    ev.set_timer_tag(t, 2).unwrap();
    ev.set_immediate_tag(im, 3).unwrap();
    ev.set_signal_tag(se, u64::MAX).unwrap();
    ev.update_timer(t, Duration::from_secs(30)).unwrap();
    ev.schedule_immediate(im, |_, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ev.fd_tag(fde), Ok(1));
    assert_eq!(ev.timer_tag(t), Ok(2));
    assert_eq!(ev.immediate_tag(im), Ok(3));
    assert_eq!(ev.signal_tag(se), Ok(u64::MAX));
    // Freed events: a clean error, and setting changes nothing.
    for p in [fde.erase(), t.erase(), im.erase(), se.erase()] {
        ev.heap_mut().free(p).unwrap();
    }
    assert_eq!(ev.fd_tag(fde), Err(Error::Stale));
    assert_eq!(ev.set_timer_tag(t, 5), Err(Error::Stale));
    assert_eq!(ev.immediate_tag(im), Err(Error::Stale));
    assert_eq!(ev.set_signal_tag(se, 5), Err(Error::Stale));
    // A handle of another context is foreign.
    let mut other = ctx(backend);
    let t2 = other
        .add_timer(None, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    assert_eq!(ev.timer_tag(t2), Err(Error::ForeignHeap));
}

/// C's backend names `standard` and `poll_mt` are accepted.
#[test]
fn c_backend_names_map_to_ours() {
    assert_eq!(
        tevent::Context::with_backend("standard")
            .unwrap()
            .backend_name(),
        "epoll"
    );
    assert_eq!(
        tevent::Context::with_backend("poll_mt")
            .unwrap()
            .backend_name(),
        "poll"
    );
}

/// `tevent_queue_add_optimize_empty`: the trigger runs inside the call
/// only when the queue runs, is empty and the request has no callback yet.
fn queue_add_optimize_empty_triggers_directly_when_idle(backend: &str) {
    let mut ev = ctx(backend);
    let q = ev.queue_create(None, "q").unwrap();
    let ran = Rc::new(Cell::new(0));
    let add = |ev: &mut tevent::Context, with_callback: bool| {
        let req: tevent::Req<()> = ev.req_create(None, ()).unwrap();
        if with_callback {
            ev.req_set_callback(req, |_, _| {}).unwrap();
        }
        let r = ran.clone();
        let e = ev
            .queue_add_optimize_empty(q, req, move |_, _| r.set(r.get() + 1))
            .unwrap();
        (req, e)
    };
    let (first, e1) = add(&mut ev, false);
    assert_eq!(ran.get(), 1, "an idle queue triggers at once");
    assert_eq!(ev.queue_entry_triggered(e1), Ok(true));
    let (second, _) = add(&mut ev, false);
    assert_eq!(ran.get(), 1, "behind another entry: from the loop");
    ev.free(first.erase()).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ran.get(), 2);
    ev.free(second.erase()).unwrap();
    let (third, _) = add(&mut ev, true);
    assert_eq!(ran.get(), 2, "a request with a callback: from the loop");
    ev.loop_once().unwrap();
    assert_eq!(ran.get(), 3);
    ev.free(third.erase()).unwrap();
    ev.queue_stop(q).unwrap();
    let (fourth, _) = add(&mut ev, false);
    ev.loop_once().unwrap();
    assert_eq!(ran.get(), 3, "a stopped queue triggers nothing");
    ev.free(fourth.erase()).unwrap();
}

/// Queue entry tags (`tevent_queue_entry_{get,set}_tag`).
fn queue_entry_tags(backend: &str) {
    let mut ev = ctx(backend);
    let q = ev.queue_create(None, "q").unwrap();
    let req: tevent::Req<()> = ev.req_create(None, ()).unwrap();
    let e = ev.queue_add_blocker(q, req).unwrap();
    assert_eq!(ev.queue_entry_tag(e), Ok(0));
    ev.set_queue_entry_tag(e, u64::MAX).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ev.queue_entry_tag(e), Ok(u64::MAX));
    ev.free(req.erase()).unwrap();
    assert_eq!(ev.queue_entry_tag(e), Err(Error::Stale));
    assert_eq!(ev.set_queue_entry_tag(e, 1), Err(Error::Stale));
}

/// More than two events on one fd (C's poll backend allows it, and epoll
/// from tevent 0.16): each readiness report goes to one of those that want
/// it, in turn, and a hang-up reaches each reader.
fn many_events_on_one_fd(backend: &str) {
    let mut ev = ctx(backend);
    let (s, mut peer) = pair();
    let s = Rc::new(s);
    let calls = Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut events = Vec::new();
    for (n, flags) in [
        (0, FdFlags::READ),
        (1, FdFlags::READ),
        (2, FdFlags::READ),
        (3, FdFlags::WRITE),
    ] {
        let c = calls.clone();
        let fde = ev
            .add_fd(None, s.clone(), flags, move |ev, me, got| {
                c.borrow_mut().push((n, got));
                if got == FdFlags::WRITE {
                    ev.set_fd_flags(me, FdFlags::empty()).unwrap();
                }
            })
            .map_err(|e| e.into_parts().0)
            .unwrap();
        events.push(fde);
    }
    // Writable at once: the writer runs, then goes silent.
    ev.loop_once().unwrap();
    assert_eq!(calls.take(), [(3, FdFlags::WRITE)]);
    // One byte stays readable (nobody reads it): the readers take turns.
    peer.write_all(b"x").unwrap();
    for _ in 0..6 {
        ev.loop_once().unwrap();
    }
    let got = calls.take();
    assert_eq!(got.len(), 6);
    let mut readers: Vec<_> = got.iter().map(|(n, _)| *n).collect();
    assert!(got.iter().all(|(_, f)| *f == FdFlags::READ));
    assert_eq!(readers[..3], readers[3..], "a fixed rotation: {readers:?}");
    readers.truncate(3);
    readers.sort();
    assert_eq!(readers, [0, 1, 2], "each reader in turn");
    // Freeing one leaves the others working.
    ev.free(events[1].erase()).unwrap();
    for _ in 0..4 {
        ev.loop_once().unwrap();
    }
    let mut readers: Vec<_> = calls.take().iter().map(|(n, _)| *n).collect();
    readers.sort();
    assert_eq!(readers, [0, 0, 2, 2]);
    for e in [events[0], events[2], events[3]] {
        ev.free(e.erase()).unwrap();
    }
    assert_eq!(Rc::strong_count(&s), 1, "every event let go of the socket");
}

/// `tevent_re_initialise` (what a child calls after `fork`): every event
/// keeps working on the new backend instance, and the remote queue starts
/// afresh (its old handles fail, a new one works).
fn re_initialise_keeps_every_event(backend: &str) {
    let mut ev = ctx(backend);
    let log = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (r, mut w) = pair();
    let l = log.clone();
    let fde = ev
        .add_fd(None, r, FdFlags::READ, move |ev, me, _| {
            l.borrow_mut().push("fd");
            ev.set_fd_flags(me, FdFlags::empty()).unwrap();
        })
        .map_err(|e| e.into_parts().0)
        .unwrap();
    ev.set_fd_tag(fde, 7).unwrap();
    let l = log.clone();
    ev.add_timer(None, Duration::from_millis(1), move |_, _, _| {
        l.borrow_mut().push("timer")
    })
    .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.borrow_mut().push("immediate"))
        .unwrap();
    let old = ev.remote().unwrap();
    old.schedule(|_| -> () { unreachable!("sent before the fork: the parent runs it") })
        .unwrap();

    ev.re_initialise().unwrap();
    assert_eq!(tevent::cached_getpid(), std::process::id());
    assert!(!old.is_alive(), "the old queue is gone");
    assert!(old.schedule(|_| {}).is_err());
    w.write_all(b"x").unwrap();
    ev.loop_until(|_| log.borrow().len() == 3).unwrap();
    let mut got = log.take();
    got.sort();
    assert_eq!(got, ["fd", "immediate", "timer"]);
    assert_eq!(ev.fd_tag(fde), Ok(7));
    // Flags set after the re-initialisation reach the new instance.
    ev.set_fd_flags(fde, FdFlags::READ).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["fd"]);
    // A new remote queue wakes the loop from another thread.
    let remote = ev.remote().unwrap();
    let p = fde.erase();
    let sent = std::thread::spawn(move || remote.schedule(move |ev| ev.free(p).unwrap()));
    sent.join().unwrap().unwrap();
    ev.set_wait_timeout(Duration::from_secs(5));
    ev.loop_wait().unwrap();
    assert!(!ev.has_events());
}

both!(
    re_initialise_keeps_every_event,
    many_events_on_one_fd,
    queue_add_optimize_empty_triggers_directly_when_idle,
    queue_entry_tags,
    e06_write_only_hangup_returns_from_loop_once,
    e11_nested_loop_wait_is_refused_even_when_idle,
    tags_on_every_kind_of_event,
);

/// poll backend: events are looked at in list order and the first that is
/// ready runs; a hung-up write-only event behind it keeps its WRITE flag
/// until its own turn, as in C.
#[test]
fn e09_poll_leaves_later_events_alone_until_their_turn() {
    let mut ev = ctx("poll");
    let (hung, peer) = pair();
    drop(peer);
    // New events go to the front of poll's list: `reader` is ahead.
    let writer = ev
        .add_fd(None, hung, FdFlags::WRITE, |_, _, _| {})
        .map_err(|e| e.into_parts().0)
        .unwrap();
    let (r, mut w) = pair();
    w.write_all(b"x").unwrap();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    ev.add_fd(None, r, FdFlags::READ, move |ev, fde, _| {
        s.set(Some(ev.fd_flags(writer)));
        ev.heap_mut().free(fde.erase()).unwrap();
    })
    .map_err(|e| e.into_parts().0)
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(seen.take(), Some(Ok(FdFlags::WRITE)));
    ev.loop_once().unwrap();
    assert_eq!(ev.fd_flags(writer), Ok(FdFlags::empty()));
}
