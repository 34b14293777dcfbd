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

both!(
    e06_write_only_hangup_returns_from_loop_once,
    e11_nested_loop_wait_is_refused_even_when_idle,
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
