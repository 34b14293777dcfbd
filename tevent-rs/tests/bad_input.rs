//! Bad input gives typed errors, and the loop stays usable: invalid or
//! closed fds, duplicate registrations, stale and foreign handles, stale
//! parents, signal numbers out of range, unknown backends.

mod common;

use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use common::{ctx, pair};
use nix::errno::Errno;
use tevent::{Context, Error, FdFlags, OsError, SaFlags, Signal};

/// The loop still runs a timer after whatever went wrong.
fn still_usable(ev: &mut Context) {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| r.set(true))
        .unwrap();
    ev.loop_wait().unwrap();
    assert!(ran.get());
}

fn closed_fd(b: &str) {
    let mut ev = ctx(b);
    let (rd, _wr) = nix::unistd::pipe().unwrap();
    let raw = rd.as_raw_fd();
    // Close the fd behind the OwnedFd's back (nix's close is a safe call).
    nix::unistd::close(raw).unwrap();
    let err = ev
        .add_fd(None, rd, FdFlags::READ, |_, _, _| -> () { unreachable!() })
        .unwrap_err();
    assert_eq!(
        err.error(),
        &Error::BadFd {
            fd: raw,
            errno: OsError::from_raw_os_error(Errno::EBADF as i32)
        }
    );
    let rd: OwnedFd = err.into_io();
    std::mem::forget(rd); // already closed
    assert!(!ev.has_events());
    still_usable(&mut ev);
}

fn regular_file(b: &str) {
    let mut ev = ctx(b);
    let path = std::env::temp_dir().join(format!("tevent-bad-input-{}-{b}", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    let r = ev.add_fd(None, f, FdFlags::READ, |ev, me, _| {
        ev.free(me.erase()).unwrap()
    });
    match b {
        // epoll cannot watch regular files (EPERM); poll says they are
        // always ready.
        "epoll" => {
            let e = r.unwrap_err();
            assert!(matches!(
                e.error(),
                Error::BadFd { errno, .. } if errno.raw_os_error() == Errno::EPERM as i32
            ));
        }
        _ => {
            r.unwrap();
            ev.loop_once().unwrap();
        }
    }
    std::fs::remove_file(&path).unwrap();
    still_usable(&mut ev);
}

fn stale_handles(b: &str) {
    let mut ev = ctx(b);
    let (s, _peer) = pair();
    let fde = ev.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let t = ev
        .add_timer(None, Duration::from_secs(9), |_, _, _| {})
        .unwrap();
    let im = ev.create_immediate(None).unwrap();
    for h in [fde.erase(), t.erase(), im.erase()] {
        ev.free(h).unwrap();
        assert_eq!(ev.free(h), Err(Error::Stale));
    }
    assert_eq!(ev.fd_flags(fde), Err(Error::Stale));
    assert_eq!(ev.set_fd_flags(fde, FdFlags::READ), Err(Error::Stale));
    assert_eq!(ev.fd_io(fde).unwrap_err(), Error::Stale);
    assert_eq!(ev.fd_number(fde), Err(Error::Stale));
    assert_eq!(ev.take_fd_io(fde).unwrap_err(), Error::Stale);
    assert_eq!(ev.set_fd_close_fn(fde, drop), Err(Error::Stale));
    assert_eq!(ev.update_timer(t, Duration::ZERO), Err(Error::Stale));
    assert_eq!(ev.timer_deadline(t), Err(Error::Stale));
    assert_eq!(ev.schedule_immediate(im, |_, _| {}), Err(Error::Stale));
    assert_eq!(ev.reschedule_immediate(im), Err(Error::Stale));
    assert_eq!(ev.cancel_immediate(im), Err(Error::Stale));
    assert_eq!(ev.immediate_is_scheduled(im), Err(Error::Stale));
    still_usable(&mut ev);
}

fn foreign_handles(b: &str) {
    let mut ev = ctx(b);
    let mut other = ctx(b);
    let (s, _peer) = pair();
    let fde = other.add_fd(None, s, FdFlags::READ, |_, _, _| {}).unwrap();
    let t = other
        .add_timer(None, Duration::from_secs(9), |_, _, _| {})
        .unwrap();
    let im = other.create_immediate(None).unwrap();
    // Give `ev` entries at the same registry positions, to be sure they are
    // not mistaken for the foreign ones.
    let (s2, _p2) = pair();
    ev.add_fd(None, s2, FdFlags::READ, |_, _, _| {}).unwrap();
    ev.add_timer(None, Duration::from_secs(9), |_, _, _| {})
        .unwrap();
    ev.create_immediate(None).unwrap();
    assert_eq!(ev.fd_flags(fde), Err(Error::ForeignHeap));
    assert_eq!(
        ev.set_fd_flags(fde, FdFlags::empty()),
        Err(Error::ForeignHeap)
    );
    assert_eq!(ev.update_timer(t, Duration::ZERO), Err(Error::ForeignHeap));
    assert_eq!(ev.reschedule_immediate(im), Err(Error::ForeignHeap));
    assert_eq!(
        ev.schedule_immediate(im, |_, _| {}),
        Err(Error::ForeignHeap)
    );
    assert_eq!(ev.free(t.erase()), Err(Error::ForeignHeap));
    assert!(other.immediate_is_scheduled(im).is_ok());
    assert_eq!(other.fd_flags(fde), Ok(FdFlags::READ));
}

fn stale_parent(b: &str) {
    let mut ev = ctx(b);
    let p = ev.heap_mut().new_context(None).unwrap();
    ev.free(p).unwrap();
    let (s, _peer) = pair();
    let e = ev.add_fd(p, s, FdFlags::READ, |_, _, _| {}).unwrap_err();
    assert_eq!(e.error(), &Error::Stale);
    assert_eq!(
        ev.add_timer(p, Duration::ZERO, |_, _, _| {}).unwrap_err(),
        Error::Stale
    );
    assert_eq!(ev.create_immediate(p).unwrap_err(), Error::Stale);
    assert_eq!(
        ev.add_signal(p, Signal::SIGUSR1, SaFlags::empty(), |_, _, _| {})
            .unwrap_err(),
        Error::Stale
    );
    assert!(!ev.has_events());
    still_usable(&mut ev);
}

fn bad_signals(b: &str) {
    let mut ev = ctx(b);
    for n in [
        0,
        -1,
        32,
        34,
        64,
        65,
        1000,
        Signal::SIGKILL.number(),
        Signal::SIGSTOP.number(),
    ] {
        assert_eq!(
            ev.add_signal(None, n, SaFlags::empty(), |_, _, _| {})
                .unwrap_err(),
            Error::InvalidSignal(n),
            "signal {n}"
        );
    }
    // A flag tevent does not take (C's `SA_NODEFER`...) cannot be written:
    // `SaFlags` has only the three it takes.
    assert!(!ev.has_events());
    still_usable(&mut ev);
}

fn misc(b: &str) {
    let mut ev = ctx(b);
    assert_eq!(
        Context::with_backend("select").unwrap_err(),
        Error::UnknownBackend("select".into())
    );
    assert!(Context::set_default_backend("kqueue").is_err());
    let im = ev.create_immediate(None).unwrap();
    assert_eq!(ev.reschedule_immediate(im), Err(Error::NoHandler));
    ev.cancel_immediate(im).unwrap();
    let e: Box<dyn std::error::Error> = Box::new(Error::Nested);
    assert!(!e.to_string().is_empty());
    // A heap error is shown as it is (transparent), with no cause of its
    // own; a bad fd names the fd and gives the system's error as its cause.
    let e = Error::from(talloc::Error::Loop);
    assert_eq!(e.to_string(), talloc::Error::Loop.to_string());
    assert!(std::error::Error::source(&e).is_none());
    still_usable(&mut ev);
}

both!(
    closed_fd,
    regular_file,
    stale_handles,
    foreign_handles,
    stale_parent,
    bad_signals,
    misc
);
