//! A callback that panics: the panic reaches the caller of `loop_once`, and
//! the context stays consistent and usable.

mod common;

use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use common::{ctx, pair};
use tevent::{Context, Error, FdFlags};

fn panics(ev: &mut Context) -> bool {
    catch_unwind(AssertUnwindSafe(|| ev.loop_once())).is_err()
}

fn immediate_panics(b: &str) {
    let mut ev = ctx(b);
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, move |_, _| {
        n2.set(n2.get() + 1);
        if n2.get() == 1 {
            panic!("boom");
        }
    })
    .unwrap();
    assert!(panics(&mut ev));
    assert!(!ev.has_events());
    // The immediate kept its handler; nesting is not stuck.
    ev.reschedule_immediate(im).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(n.get(), 2);
}

fn timer_panics(b: &str) {
    let mut ev = ctx(b);
    let t = ev
        .add_timer(None, Duration::ZERO, |_, _, _| -> () { panic!("boom") })
        .unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| r.set(true))
        .unwrap();
    assert!(panics(&mut ev));
    // It fired, so it is freed, as after any firing (E8).
    assert!(!ev.heap().contains(t.erase()));
    ev.loop_wait().unwrap();
    assert!(ran.get());
}

fn fd_panics(b: &str) {
    let mut ev = ctx(b);
    let (s, mut peer) = pair();
    peer.write_all(b"x").unwrap();
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let fde = ev
        .add_fd(None, s, FdFlags::READ, move |ev, me, _| {
            n2.set(n2.get() + 1);
            if n2.get() == 1 {
                panic!("boom");
            }
            ev.free(me.erase()).unwrap();
        })
        .unwrap();
    assert!(panics(&mut ev));
    assert_eq!(ev.fd_flags(fde), Ok(FdFlags::READ));
    ev.loop_wait().unwrap();
    assert_eq!(n.get(), 2);
}

fn panic_after_freeing_itself(b: &str) {
    let mut ev = ctx(b);
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, |ev, me| -> () {
        ev.free(me.erase()).unwrap();
        panic!("boom");
    })
    .unwrap();
    assert!(panics(&mut ev));
    assert!(!ev.heap().contains(im.erase()));
    assert_eq!(ev.reschedule_immediate(im), Err(Error::Stale));
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_wait().unwrap();
}

fn remote_closure_panics(b: &str) {
    let mut ev = ctx(b);
    let r = ev.remote().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    r.schedule(|_| -> () { panic!("boom") }).unwrap();
    r.schedule(move |_| tx.send(1).unwrap()).unwrap();
    assert!(panics(&mut ev));
    ev.loop_once().unwrap();
    assert_eq!(rx.try_recv(), Ok(1));
}

fn close_fn_panics(b: &str) {
    let mut ev = ctx(b);
    let (s, _peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    ev.set_fd_close_fn(fde, |_s: UnixStream| panic!("boom"))
        .unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| ev.free(fde.erase())));
    assert!(r.is_err());
    assert!(!ev.has_events());
    ev.add_timer(None, Duration::ZERO, |_, _, _| {}).unwrap();
    ev.loop_wait().unwrap();
}

fn quiet<F: Fn(&str)>(f: F) -> impl Fn(&str) {
    move |b| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = catch_unwind(AssertUnwindSafe(|| f(b)));
        std::panic::set_hook(hook);
        if let Err(p) = r {
            std::panic::resume_unwind(p);
        }
    }
}

#[test]
fn all_backends() {
    // The panic hook is process-wide: one test runs them all, in order.
    type Case = (&'static str, fn(&str));
    let cases: [Case; 6] = [
        ("immediate", immediate_panics),
        ("timer", timer_panics),
        ("fd", fd_panics),
        ("freed itself", panic_after_freeing_itself),
        ("remote", remote_closure_panics),
        ("close_fn", close_fn_panics),
    ];
    for b in Context::backends() {
        for (name, case) in cases {
            eprintln!("{b}: {name}");
            quiet(case)(b);
        }
    }
}
