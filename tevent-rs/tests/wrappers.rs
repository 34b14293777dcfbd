//! Wrappers, after C's `test_wrapper` and `test_free_wrapper`
//! (`testsuite.c`), on both backends; signal events through a wrapper are
//! in the signals binary.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use common::{ctx, pair, Log};
use tevent::{Error, FdFlags, Wrapped, WrapperHooks};

/// Logs every hook call as "<name> <hook> <kind>".
struct Logged {
    name: &'static str,
    log: Log,
    refuse: bool,
}

fn kind(w: &Wrapped) -> &'static str {
    match w {
        Wrapped::Fd { .. } => "fd",
        Wrapped::Timer { .. } => "timer",
        Wrapped::Immediate(_) => "immediate",
        Wrapped::Signal { .. } => "signal",
    }
}

impl WrapperHooks for Logged {
    fn before_use(&mut self) -> bool {
        self.log.push(format!("{} before_use", self.name));
        !self.refuse
    }
    fn after_use(&mut self) {
        self.log.push(format!("{} after_use", self.name));
    }
    fn before_handler(&mut self, w: &Wrapped) {
        self.log.push(format!("{} before {}", self.name, kind(w)));
    }
    fn after_handler(&mut self, w: &Wrapped) {
        self.log.push(format!("{} after {}", self.name, kind(w)));
    }
}

fn logged(name: &'static str, log: &Log) -> Logged {
    Logged {
        name,
        log: log.clone(),
        refuse: false,
    }
}

/// C's `test_wrapper`: an fd event, a timer and an immediate created on the
/// wrapper run inside its handler hooks; `before_use`/`after_use` run only
/// around an explicit use; what a wrapped handler adds is wrapped too.
fn events_through_a_wrapper_run_inside_its_hooks(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let w = ev.wrapper_create(None, logged("w", &log)).unwrap();
    let (r, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    ev.use_wrapper(w, |ev| {
        let l2 = l.clone();
        ev.add_fd(None, r, FdFlags::READ, move |ev, me, _| {
            l2.push("fd handler");
            ev.free(me.erase()).unwrap();
        })
        .map_err(|e| e.into_parts().0)
        .unwrap();
        let l2 = l.clone();
        ev.add_timer(None, Duration::ZERO, move |ev, _, _| {
            l2.push("timer handler");
            assert_eq!(
                ev.current_wrapper(),
                Some(w),
                "a handler runs on its wrapper"
            );
            let l3 = l2.clone();
            ev.add_timer(None, Duration::ZERO, move |_, _, _| {
                l3.push("nested handler")
            })
            .unwrap();
        })
        .unwrap();
        let l2 = l.clone();
        ev.schedule_immediate(im, move |_, _| l2.push("immediate handler"))
            .unwrap();
    })
    .unwrap();
    assert_eq!(log.take(), ["w before_use", "w after_use"]);
    assert_eq!(ev.current_wrapper(), None);
    for _ in 0..4 {
        ev.loop_once().unwrap();
    }
    let got = log.take();
    for (k, handler) in [
        ("fd", "fd handler"),
        ("timer", "timer handler"),
        ("immediate", "immediate handler"),
    ] {
        let at = got.iter().position(|s| s == handler).expect(handler);
        assert_eq!(got[at - 1], format!("w before {k}"), "{got:?}");
        assert_eq!(got[at + 1], format!("w after {k}"), "{got:?}");
    }
    let at = got.iter().position(|s| s == "nested handler").unwrap();
    assert_eq!(got[at - 1], "w before timer", "{got:?}");
    assert_eq!(got.len(), 12, "{got:?}");
    // Scheduled again outside the wrapper, the immediate is no longer its.
    let l = log.clone();
    ev.schedule_immediate(im, move |_, _| l.push("bare"))
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["bare"]);
}

/// C's `test_free_wrapper`: freeing the wrapper from inside one of its
/// handlers takes its other events away (here: frees them), and the loop
/// has nothing left to do.
fn freeing_the_wrapper_frees_its_events(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let w = ev.wrapper_create(None, logged("w", &log)).unwrap();
    let (r, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let (fde, timer, im) = ev
        .use_wrapper(w, |ev| {
            let fde = ev
                .add_fd(None, r, FdFlags::READ, |_, _, _| -> () { unreachable!() })
                .map_err(|e| e.into_parts().0)
                .unwrap();
            let timer = ev
                .add_timer(None, Duration::from_millis(1), |_, _, _| -> () {
                    unreachable!()
                })
                .unwrap();
            let im = ev.create_immediate(None).unwrap();
            ev.schedule_immediate(im, move |ev, _| ev.free(w.erase()).unwrap())
                .unwrap();
            (fde, timer, im)
        })
        .unwrap();
    log.take();
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["w before immediate", "w after immediate"]);
    for p in [fde.erase(), timer.erase(), im.erase(), w.erase()] {
        assert!(!ev.heap().contains(p));
    }
    assert_eq!(ev.use_wrapper(w, |_| ()), Err(Error::Stale));
    assert!(!ev.has_events());
}

/// `before_use` may refuse: the closure does not run and nothing is bound.
fn a_refused_use_runs_nothing(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let mut hooks = logged("w", &log);
    hooks.refuse = true;
    let w = ev.wrapper_create(None, hooks).unwrap();
    let ran = ev.use_wrapper(w, |_| unreachable!());
    assert_eq!(ran, Err(Error::WrapperRefused));
    assert_eq!(log.take(), ["w before_use"]);
    assert_eq!(ev.current_wrapper(), None);
}

/// A wrapper in use cannot be used again (C aborts); another one can, and
/// what is added inside is the inner one's.
fn nested_uses(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let outer = ev.wrapper_create(None, logged("outer", &log)).unwrap();
    let inner = ev.wrapper_create(None, logged("inner", &log)).unwrap();
    ev.use_wrapper(outer, |ev| {
        assert_eq!(ev.use_wrapper(outer, |_| ()), Err(Error::WrapperBusy));
        ev.use_wrapper(inner, |ev| {
            ev.add_timer(None, Duration::ZERO, move |ev, _, _| {
                assert_eq!(ev.current_wrapper(), Some(inner));
                assert_eq!(ev.use_wrapper(inner, |_| ()), Err(Error::WrapperBusy));
            })
            .unwrap();
        })
        .unwrap();
        assert_eq!(ev.current_wrapper(), Some(outer));
    })
    .unwrap();
    log.take();
    ev.loop_once().unwrap();
    assert_eq!(log.take(), ["inner before timer", "inner after timer"]);
}

/// A wrapped handler that panics: the after-hook still runs, the panic
/// reaches the caller, and the wrapper can be used again.
fn a_panicking_wrapped_handler_still_runs_the_after_hook(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let w = ev.wrapper_create(None, logged("w", &log)).unwrap();
    ev.use_wrapper(w, |ev| {
        ev.add_timer(None, Duration::ZERO, |_, _, _| -> () { panic!("boom") })
            .unwrap()
    })
    .unwrap();
    log.take();
    let r = catch_unwind(AssertUnwindSafe(|| ev.loop_once()));
    assert!(r.is_err());
    assert_eq!(log.take(), ["w before timer", "w after timer"]);
    assert_eq!(ev.current_wrapper(), None);
    assert_eq!(ev.use_wrapper(w, |_| 5), Ok(5));
}

/// Bad handles: another context's wrapper is refused.
fn a_foreign_wrapper_is_refused(b: &str) {
    let mut ev = ctx(b);
    let mut other = ctx(b);
    let log = Log::new();
    let w = other.wrapper_create(None, logged("w", &log)).unwrap();
    assert_eq!(ev.use_wrapper(w, |_| ()), Err(Error::ForeignHeap));
    assert!(log.get().is_empty());
}

both!(
    events_through_a_wrapper_run_inside_its_hooks,
    freeing_the_wrapper_frees_its_events,
    a_refused_use_runs_nothing,
    nested_uses,
    a_panicking_wrapped_handler_still_runs_the_after_hook,
    a_foreign_wrapper_is_refused,
);
