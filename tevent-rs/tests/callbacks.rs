//! Callbacks that fail, and timers that repeat: an error returned by a
//! handler comes out of the `loop_once` that ran it (or goes to the error
//! hook), nothing is lost, and the loop stays usable. On both backends.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{ctx, pair, Log};
use tevent::{CallbackError, Error, FdFlags, Req, TimerAction};

/// The callback's own message, out of an `Error::Callback`.
fn message(e: Error) -> String {
    match e {
        Error::Callback(f) => f.error().to_string(),
        other => panic!("not a callback error: {other:?}"),
    }
}

/// Each event kind's handler may fail with `?`; the error comes out of the
/// `loop_once` that ran it, and the next pass goes on.
fn every_kind_of_handler_can_fail(b: &str) {
    let mut ev = ctx(b);
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, |_, _| {
        let n: u8 = "300".parse()?; // out of range for u8
        let _ = n;
        Ok(())
    })
    .unwrap();
    let e = ev.loop_once().unwrap_err();
    assert!(message(e).contains("too large"));

    ev.add_timer(None, Duration::ZERO, |_, _, _| Err("timer failed".into()))
        .unwrap();
    assert_eq!(message(ev.loop_once().unwrap_err()), "timer failed");

    let (r, mut w) = pair();
    w.write_all(b"x").unwrap();
    let fde = ev
        .add_fd(None, r, FdFlags::READ, |ev, fde, _| {
            let mut byte = [0u8; 1];
            ev.fd_io_mut(fde)?.read_exact(&mut byte)?;
            Err(format!("got {:?}", byte[0] as char).into())
        })
        .map_err(|e| e.into_parts().0)
        .unwrap();
    assert_eq!(message(ev.loop_once().unwrap_err()), "got 'x'");
    ev.free(fde).unwrap();

    // The loop is still good.
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| r2.set(true))
        .unwrap();
    ev.loop_wait().unwrap();
    assert!(ran.get());
}

/// `loop_wait` stops at the first error; the events left stay, and a
/// second `loop_wait` finishes them. Two errors in a row both come out.
fn loop_wait_stops_at_an_error_and_loses_none(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    for name in ["a", "b", "c"] {
        let log = log.clone();
        ev.add_timer(
            None,
            Duration::ZERO,
            move |_, _, _| -> Result<(), CallbackError> {
                log.push(name);
                if name == "c" {
                    return Ok(());
                }
                Err(format!("{name} failed").into())
            },
        )
        .unwrap();
    }
    assert_eq!(message(ev.loop_wait().unwrap_err()), "a failed");
    assert_eq!(log.take(), ["a"]);
    assert_eq!(message(ev.loop_wait().unwrap_err()), "b failed");
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["b", "c"]);
}

/// A request callback run by `req_done` outside the loop: its error comes
/// out of the next `loop_once`, after that pass's own work.
fn an_error_outside_the_loop_comes_out_of_the_next_pass(b: &str) {
    let mut ev = ctx(b);
    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.req_set_callback(req, |ev, req| {
        ev.req_recv(req).map_err(|e| format!("{e:?}"))?;
        Err("the reply was bad".into())
    })
    .unwrap();
    ev.req_done(req).unwrap(); // the callback runs here, and fails
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| r2.set(true))
        .unwrap();
    assert_eq!(message(ev.loop_once().unwrap_err()), "the reply was bad");
    assert!(ran.get(), "the pass ran its timer first");
}

/// The error hook sees every error first: it may swallow it, or pass it on
/// (changed).
fn the_error_hook_handles_or_passes_on(b: &str) {
    let mut ev = ctx(b);
    ev.set_wait_timeout(Duration::from_millis(1));
    let log = Log::new();
    let l = log.clone();
    ev.set_error_hook(move |_, e| {
        l.push(e.to_string());
        if e.to_string() == "fatal" {
            return Err(format!("hook: {e}").into());
        }
        Ok(())
    });
    ev.add_timer(None, Duration::ZERO, |_, _, _| Err("minor".into()))
        .unwrap();
    ev.add_timer(
        None,
        Duration::from_millis(1),
        |_, _, _| Err("fatal".into()),
    )
    .unwrap();
    assert_eq!(message(ev.loop_wait().unwrap_err()), "hook: fatal");
    assert_eq!(log.take(), ["minor", "fatal"]);
    assert!(ev.clear_error_hook());
    ev.add_timer(None, Duration::ZERO, |_, _, _| Err("minor".into()))
        .unwrap();
    assert_eq!(message(ev.loop_wait().unwrap_err()), "minor");
    assert!(!ev.clear_error_hook());
}

/// A repeating timer keeps its handle and its children between firings,
/// fires at the deadlines it asks for, and is freed when it is done, when
/// its callback fails, or when its parent goes.
fn a_repeating_timer_keeps_its_handle_until_done(b: &str) {
    let mut ev = ctx(b);
    let start = Instant::now();
    let fired = Rc::new(std::cell::RefCell::new(Vec::new()));
    let f = fired.clone();
    let t = ev
        .add_repeating_timer(None, start, move |_, me, deadline| {
            f.borrow_mut().push((me, deadline));
            if f.borrow().len() == 3 {
                return TimerAction::Done;
            }
            TimerAction::after(deadline, Duration::from_millis(2))
        })
        .unwrap();
    let child = ev.heap_mut().alloc_str(t, "timer state").unwrap();
    ev.loop_once().unwrap();
    assert!(ev.heap().contains(t) && ev.heap().contains(child));
    assert_eq!(
        ev.timer_deadline(t).unwrap(),
        start + Duration::from_millis(2)
    );
    ev.loop_wait().unwrap();
    let got = fired.borrow().clone();
    let want: Vec<_> = (0..3)
        .map(|i| (t, start + Duration::from_millis(2 * i)))
        .collect();
    assert_eq!(got, want);
    assert!(!ev.heap().contains(t) && !ev.heap().contains(child));

    // A failure frees it and comes out of the loop.
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let t = ev
        .add_repeating_timer(None, Duration::ZERO, move |_, _, _| {
            n2.set(n2.get() + 1);
            if n2.get() == 2 {
                return Err("second tick failed".into());
            }
            Ok(TimerAction::Again(Duration::ZERO.into()))
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(message(ev.loop_once().unwrap_err()), "second tick failed");
    assert!(!ev.heap().contains(t));
    assert!(!ev.has_events());

    // Freed by its parent while armed, or by itself while firing.
    let owner = ev.heap_mut().new_context(None).unwrap();
    let t = ev
        .add_repeating_timer(owner, Duration::from_secs(60), |_, _, _| {
            TimerAction::Again(Duration::from_secs(60).into())
        })
        .unwrap();
    ev.heap_mut().free(owner).unwrap();
    assert!(!ev.heap().contains(t) && !ev.has_events());
    let t = ev
        .add_repeating_timer(None, Duration::ZERO, |ev, me, _| {
            ev.heap_mut().free(me).unwrap();
            TimerAction::Again(Duration::ZERO.into())
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert!(!ev.heap().contains(t) && !ev.has_events());
}

/// A repeating timer's callback that panics: the panic reaches the caller,
/// the timer is freed, the loop goes on.
fn a_panicking_repeating_timer_is_freed(b: &str) {
    let mut ev = ctx(b);
    let t = ev
        .add_repeating_timer(None, Duration::ZERO, |_, _, _| -> TimerAction {
            panic!("tick")
        })
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ev.loop_once()));
    assert!(r.is_err());
    assert!(!ev.heap().contains(t) && !ev.has_events());
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_wait().unwrap();
}

both!(
    every_kind_of_handler_can_fail,
    loop_wait_stops_at_an_error_and_loses_none,
    an_error_outside_the_loop_comes_out_of_the_next_pass,
    the_error_hook_handles_or_passes_on,
    a_repeating_timer_keeps_its_handle_until_done,
    a_panicking_repeating_timer_is_freed
);
