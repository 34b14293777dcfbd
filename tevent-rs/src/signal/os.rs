//! The crate's only `unsafe` code: installing a signal action, and reading
//! the `siginfo_t` the kernel hands our handler.
//!
//! nix marks `sigaction` `unsafe` (the handler must be async-signal-safe,
//! and an old action may come from C code), and the `siginfo_t` fields are
//! a C union behind a raw pointer. Everything else in the crate is safe
//! code; `#![deny(unsafe_code)]` in lib.rs keeps it so.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc::{c_int, c_void, siginfo_t};
use nix::sys::signal::{sigaction, SigAction, Signal};

use super::process::{record, RawInfo};

/// Installs `action` for `signal`, returning the action it replaces.
pub(crate) fn set_action(signal: Signal, action: &SigAction) -> nix::Result<SigAction> {
    // SAFETY: `action` is either built by `process::install` around
    // `on_signal`, which is async-signal-safe (it only touches atomics,
    // `OnceLock::get` and write(2), and restores errno), or it is the action
    // an earlier call returned, being put back unchanged: the kernel's own
    // record of what was installed before us.
    unsafe { sigaction(signal, action) }
}

/// The handler we install for every signal, with `SA_SIGINFO`.
pub(crate) extern "C" fn on_signal(sig: c_int, info: *mut siginfo_t, _uctx: *mut c_void) {
    let saved = Errno::last_raw();
    let raw = if info.is_null() {
        None
    } else {
        // SAFETY: with SA_SIGINFO the kernel passes a valid, initialised
        // siginfo_t that lives for the whole handler call; the accessors
        // read plain integers out of its union (for a signal whose code does
        // not define a field, the value is meaningless but defined).
        Some(unsafe {
            let i = &*info;
            RawInfo {
                code: i.si_code,
                errno: i.si_errno,
                pid: i.si_pid(),
                uid: i.si_uid(),
                status: i.si_status(),
                value: i.si_value().sival_ptr as usize,
            }
        })
    };
    record(sig, raw);
    Errno::set_raw(saved);
}
