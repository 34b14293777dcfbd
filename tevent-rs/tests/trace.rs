//! Trace points, after C's `test_tevent_trace.c`: for each kind of event,
//! `__loop` (attach, before-handler, after-handler, detach), `__free`
//! (attach, detach with no handler), `__free_in_handler`, `__reset`
//! (callbacks replaced and removed), immediate `__reschedule`, queue
//! `__loop`; plus the loop's own trace points. The `e10_` tests pin the
//! orders where we once differed from C.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use common::{ctx, pair};
use tevent::{Context, EventTrace, Req, SaFlags, Signal, TracePoint, TracedEvent};
use EventTrace::{AfterHandler, Attach, BeforeHandler, Detach};

type Seen = Rc<RefCell<Vec<(&'static str, EventTrace)>>>;

fn traced(ev: &mut Context) -> Seen {
    let seen: Seen = Rc::default();
    let s = seen.clone();
    ev.set_event_trace_callback(move |e, p| {
        let kind = match e {
            TracedEvent::Fd(_) => "fd",
            TracedEvent::Timer(_) => "timer",
            TracedEvent::Immediate(_) => "immediate",
            TracedEvent::Signal(_) => "signal",
            TracedEvent::QueueEntry(_) => "queue",
        };
        s.borrow_mut().push((kind, p));
    });
    seen
}

fn points(seen: &Seen, kind: &str) -> Vec<EventTrace> {
    seen.borrow()
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, p)| *p)
        .collect()
}

fn fd_trace(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    // __loop / __free_in_handler
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    ev.add_fd(None, s, tevent::FdFlags::READ, |ev, me, _| {
        ev.free(me.erase()).unwrap()
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "fd"),
        [Attach, BeforeHandler, Detach, AfterHandler]
    );
    // __free
    seen.borrow_mut().clear();
    let (s, _peer) = pair();
    let fde = ev
        .add_fd(None, s, tevent::FdFlags::READ, |_, _, _| {})
        .unwrap();
    ev.free(fde.erase()).unwrap();
    assert_eq!(points(&seen, "fd"), [Attach, Detach]);
}

fn timer_trace(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "timer"),
        [Attach, BeforeHandler, AfterHandler, Detach]
    );
    seen.borrow_mut().clear();
    let t = ev
        .add_timer(None, Duration::from_secs(9), |_, _, _| {})
        .unwrap();
    ev.free(t.erase()).unwrap();
    assert_eq!(points(&seen, "timer"), [Attach, Detach]);
    seen.borrow_mut().clear();
    ev.add_timer(None, Duration::ZERO, |ev, me, _| {
        ev.free(me.erase()).unwrap()
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "timer"),
        [Attach, BeforeHandler, Detach, AfterHandler]
    );
}

fn immediate_trace(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let im = ev.create_immediate(None).unwrap();
    assert!(
        points(&seen, "immediate").is_empty(),
        "created, not attached"
    );
    ev.schedule_immediate(im, |_, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "immediate"),
        [Attach, BeforeHandler, AfterHandler, Detach]
    );
    // __reschedule: a queued immediate leaves its place first.
    seen.borrow_mut().clear();
    ev.schedule_immediate(im, |_, _| {}).unwrap();
    ev.reschedule_immediate(im).unwrap();
    ev.cancel_immediate(im).unwrap();
    assert_eq!(points(&seen, "immediate"), [Attach, Detach, Attach, Detach]);
    // __free while queued, and unqueued (no trace).
    seen.borrow_mut().clear();
    ev.reschedule_immediate(im).unwrap();
    ev.free(im.erase()).unwrap();
    let im2 = ev.create_immediate(None).unwrap();
    ev.free(im2.erase()).unwrap();
    assert_eq!(points(&seen, "immediate"), [Attach, Detach]);
}

fn signal_trace(b: &str) {
    // SIGURG is ignored by default: installing and removing a handler has
    // no effect on the other tests of this binary.
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let se = ev
        .add_signal(None, Signal::SIGURG, SaFlags::empty(), |_, _, _| {})
        .unwrap();
    ev.free(se.erase()).unwrap();
    assert_eq!(points(&seen, "signal"), [Attach, Detach]);
}

fn queue_trace(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let q = ev.queue_create(None, "q").unwrap();
    let r: Req<()> = ev.req_create(None, ()).unwrap();
    ev.queue_add(q, r, |ev, r| ev.free(r.erase()).unwrap())
        .unwrap();
    ev.loop_wait().unwrap();
    assert_eq!(
        points(&seen, "queue"),
        [Attach, BeforeHandler, Detach, AfterHandler]
    );
}

/// A running immediate reports Detach after its handler (C: attach,
/// before-handler, handler, detach), or at once when the handler
/// reschedules or frees it.
fn e10_immediate_detaches_after_its_handler(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let im = ev.create_immediate(None).unwrap();
    let s = seen.clone();
    // The handler leaves its own mark in the log.
    ev.schedule_immediate(im, move |_, _| s.borrow_mut().push(("handler", Attach)))
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        seen.take(),
        [
            ("immediate", Attach),
            ("immediate", BeforeHandler),
            ("handler", Attach),
            ("immediate", AfterHandler),
            ("immediate", Detach),
        ]
    );
    // Rescheduled by its handler: the Detach comes before the new Attach.
    let runs = Rc::new(std::cell::Cell::new(0));
    let r = runs.clone();
    ev.schedule_immediate(im, move |ev, me| {
        r.set(r.get() + 1);
        if r.get() == 1 {
            ev.reschedule_immediate(me).unwrap();
        }
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "immediate"),
        [Attach, BeforeHandler, Detach, Attach, AfterHandler]
    );
    seen.borrow_mut().clear();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "immediate"),
        [BeforeHandler, AfterHandler, Detach]
    );
    // Freed by its handler: one Detach, at the free.
    seen.borrow_mut().clear();
    ev.schedule_immediate(im, |ev, me| ev.free(me.erase()).unwrap())
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "immediate"),
        [Attach, BeforeHandler, Detach, AfterHandler]
    );
}

/// `update_timer` takes the timer out and puts it back (C: detach, attach).
fn e10_update_timer_detaches_and_attaches(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let t = ev
        .add_timer(None, Duration::from_secs(60), |_, _, _| {})
        .unwrap();
    ev.update_timer(t, Duration::ZERO).unwrap();
    assert_eq!(points(&seen, "timer"), [Attach, Detach, Attach]);
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "timer"),
        [Attach, Detach, Attach, BeforeHandler, AfterHandler, Detach]
    );
}

/// A blocker at the head of a queue reports its turn.
fn e10_queue_blocker_reports_before_handler(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let q = ev.queue_create(None, "q").unwrap();
    let r: Req<()> = ev.req_create(None, ()).unwrap();
    ev.queue_add_blocker(q, r).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "queue"),
        [Attach, BeforeHandler, AfterHandler]
    );
    ev.free(r.erase()).unwrap();
    assert_eq!(
        points(&seen, "queue"),
        [Attach, BeforeHandler, AfterHandler, Detach]
    );
}

/// The trace callbacks can be taken out and chained.
fn take_and_chain_trace_callbacks(b: &str) {
    let mut ev = ctx(b);
    let seen = traced(&mut ev);
    let mut first = ev.take_event_trace_callback().unwrap();
    let chained = Rc::new(std::cell::Cell::new(0));
    let c = chained.clone();
    ev.set_event_trace_callback(move |e, p| {
        c.set(c.get() + 1);
        first(e, p);
    });
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        points(&seen, "timer"),
        [Attach, BeforeHandler, AfterHandler, Detach]
    );
    assert_eq!(chained.get(), 4);
    assert!(ev.take_trace_callback().is_none());
    ev.set_trace_callback(|_| {});
    assert!(ev.take_trace_callback().is_some());
    assert!(ev.take_trace_callback().is_none());
}

fn reset(b: &str) {
    let mut ev = ctx(b);
    let first = traced(&mut ev);
    let second = traced(&mut ev);
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    assert!(first.borrow().is_empty());
    assert_eq!(points(&second, "timer"), [Attach]);
    ev.clear_event_trace_callback();
    ev.loop_once().unwrap();
    assert_eq!(points(&second, "timer"), [Attach]);
}

fn loop_points(b: &str) {
    let mut ev = ctx(b);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    ev.set_trace_callback(move |p| s.borrow_mut().push(p));
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, |_, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(
        seen.take(),
        [TracePoint::BeforeLoopOnce, TracePoint::AfterLoopOnce],
        "an immediate needs no wait"
    );
    // Long enough that the loop must wait for it, even under valgrind (at
    // 1 ms the timer was already due when the loop looked, and no wait
    // was traced).
    ev.add_timer(None, Duration::from_millis(100), |_, _, _| {})
        .unwrap();
    ev.loop_once().unwrap();
    let got = seen.take();
    assert_eq!(got.first(), Some(&TracePoint::BeforeLoopOnce));
    assert_eq!(got.last(), Some(&TracePoint::AfterLoopOnce));
    assert!(got.contains(&TracePoint::BeforeWait) && got.contains(&TracePoint::AfterWait));
    ev.clear_trace_callback();
    ev.reschedule_immediate(im).unwrap();
    ev.loop_once().unwrap();
    assert!(seen.borrow().is_empty());
}

both!(
    fd_trace,
    timer_trace,
    immediate_trace,
    signal_trace,
    queue_trace,
    e10_immediate_detaches_after_its_handler,
    e10_update_timer_detaches_and_attaches,
    e10_queue_blocker_reports_before_handler,
    take_and_chain_trace_callbacks,
    reset,
    loop_points
);
