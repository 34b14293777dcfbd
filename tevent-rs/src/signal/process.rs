//! Process-wide signal state, shared by every context of every thread.
//!
//! The signal handler ([`record`]) only touches atomics and writes one byte
//! to the self-pipe of each interested context. Everything it needs lives in
//! statics that are never freed: per signal, a delivery counter and a ring
//! of the last 256 `siginfo` records; and a table of wake slots, each a pipe
//! created once and kept for the life of the process, so the handler can
//! never write to an fd that was closed and reused.
//!
//! Contexts read the counters and the ring at their own pace: each keeps
//! its own "seen" positions, so every context with a handler for a signal
//! sees every delivery.
//!
//! A forked child inherits the wake pipes, which it then shares with its
//! parent: each slot remembers the process that created its pipe, a child
//! never takes a slot whose pipe is its parent's, and
//! [`Context::re_initialise`](crate::Context::re_initialise) moves the
//! context to a pipe of its own. Installing and restoring the actions (a reference
//! count per signal: the first handler installs, the last one restores the
//! action found before) goes through one mutex.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::OFlag;
use nix::sys::signal::{self as nixsig, SigAction, SigHandler, SigSet};

use super::os;
use super::{SaFlags, SigInfo, Signal};
use crate::Error;

/// Signals 1 to 31, the ones nix names and we can install.
pub(crate) const CATCHABLE: usize = 32;
/// Siginfo records kept per signal (C's `tevent_sa_info_queue_count`).
pub(crate) const RING: u64 = 256;
/// Contexts that may have signal handlers at the same time.
const WAKE_SLOTS: usize = 64;

/// What the handler copies out of a `siginfo_t`.
pub(crate) struct RawInfo {
    pub(crate) code: i32,
    pub(crate) errno: i32,
    pub(crate) pid: i32,
    pub(crate) uid: u32,
    pub(crate) status: i32,
    pub(crate) value: usize,
}

/// One ring entry, written under the ring's lock and read with a sequence
/// check (a seqlock): `seq` is `2n + 2` once record `n` is complete.
struct InfoSlot {
    seq: AtomicU64,
    code: AtomicI32,
    errno: AtomicI32,
    pid: AtomicI32,
    uid: AtomicU32,
    status: AtomicI32,
    value: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: InfoSlot = InfoSlot {
    seq: AtomicU64::new(0),
    code: AtomicI32::new(0),
    errno: AtomicI32::new(0),
    pid: AtomicI32::new(0),
    uid: AtomicU32::new(0),
    status: AtomicI32::new(0),
    value: AtomicUsize::new(0),
};

struct SignalState {
    received: AtomicU64,
    /// Held by a handler writing a record (handlers of one signal may run
    /// in several threads at once; a thread never interrupts itself for the
    /// same signal, which is blocked while its handler runs).
    lock: AtomicBool,
    /// Number of records ever written.
    written: AtomicU64,
    slots: [InfoSlot; RING as usize],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_STATE: SignalState = SignalState {
    received: AtomicU64::new(0),
    lock: AtomicBool::new(false),
    written: AtomicU64::new(0),
    slots: [EMPTY_SLOT; RING as usize],
};

static SIGNALS: [SignalState; CATCHABLE] = [EMPTY_STATE; CATCHABLE];
/// Bumped after every delivery: a context that saw the same value has
/// nothing new to look at.
static GENERATION: AtomicU64 = AtomicU64::new(0);

struct WakeSlot {
    /// Bit n: the owning context has a handler for signal n.
    interest: AtomicU64,
    /// (read end, write end), both non-blocking; never closed.
    pipe: OnceLock<(OwnedFd, OwnedFd)>,
    /// The process that created the pipe.
    creator: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_WAKE: WakeSlot = WakeSlot {
    interest: AtomicU64::new(0),
    pipe: OnceLock::new(),
    creator: AtomicU32::new(0),
};

static WAKE: [WakeSlot; WAKE_SLOTS] = [EMPTY_WAKE; WAKE_SLOTS];

#[derive(Clone, Copy)]
struct Installed {
    old: SigAction,
    handlers: usize,
}

struct Book {
    installed: [Option<Installed>; CATCHABLE],
    wake_used: [bool; WAKE_SLOTS],
}

static BOOK: Mutex<Book> = Mutex::new(Book {
    installed: [None; CATCHABLE],
    wake_used: [false; WAKE_SLOTS],
});

fn book() -> std::sync::MutexGuard<'static, Book> {
    BOOK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called from the signal handler: async-signal-safe.
pub(crate) fn record(sig: i32, info: Option<RawInfo>) {
    let Some(st) = usize::try_from(sig).ok().and_then(|s| SIGNALS.get(s)) else {
        return;
    };
    if let Some(info) = info {
        while st
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let n = st.written.load(Ordering::Relaxed);
        let slot = &st.slots[(n % RING) as usize];
        slot.seq.store(2 * n + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        slot.code.store(info.code, Ordering::Relaxed);
        slot.errno.store(info.errno, Ordering::Relaxed);
        slot.pid.store(info.pid, Ordering::Relaxed);
        slot.uid.store(info.uid, Ordering::Relaxed);
        slot.status.store(info.status, Ordering::Relaxed);
        slot.value.store(info.value, Ordering::Relaxed);
        slot.seq.store(2 * n + 2, Ordering::Release);
        st.written.store(n + 1, Ordering::Release);
        st.lock.store(false, Ordering::Release);
    }
    st.received.fetch_add(1, Ordering::SeqCst);
    GENERATION.fetch_add(1, Ordering::SeqCst);
    let bit = 1u64 << sig;
    for w in &WAKE {
        if w.interest.load(Ordering::SeqCst) & bit != 0 {
            if let Some((_, wr)) = w.pipe.get() {
                // A full pipe already wakes the reader.
                let _ = nix::unistd::write(wr, &[0u8]);
            }
        }
    }
}

/// The current delivery generation.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// Deliveries of `sig` so far.
pub(crate) fn received(sig: usize) -> u64 {
    SIGNALS[sig].received.load(Ordering::SeqCst)
}

/// Siginfo records of `sig` written so far.
pub(crate) fn written(sig: usize) -> u64 {
    SIGNALS[sig].written.load(Ordering::Acquire)
}

/// Record `n` of `sig`, unless it was overwritten (it is more than
/// [`RING`] records old).
pub(crate) fn info(sig: usize, n: u64) -> Option<SigInfo> {
    let slot = &SIGNALS[sig].slots[(n % RING) as usize];
    let want = 2 * n + 2;
    if slot.seq.load(Ordering::Acquire) != want {
        return None;
    }
    let info = SigInfo {
        signo: sig as i32,
        code: slot.code.load(Ordering::Relaxed),
        errno: slot.errno.load(Ordering::Relaxed),
        pid: slot.pid.load(Ordering::Relaxed),
        uid: slot.uid.load(Ordering::Relaxed),
        status: slot.status.load(Ordering::Relaxed),
        value: slot.value.load(Ordering::Relaxed),
    };
    std::sync::atomic::fence(Ordering::Acquire);
    (slot.seq.load(Ordering::Relaxed) == want).then_some(info)
}

/// Adds one handler for `signal`; the first one installs our action with
/// `flags` (plus `SA_SIGINFO`), remembering the action it replaces.
pub(crate) fn install(signal: Signal, flags: SaFlags) -> Result<(), Error> {
    let sig = signal.number() as usize;
    let mut book = book();
    match &mut book.installed[sig] {
        Some(i) => i.handlers += 1,
        slot @ None => {
            // SA_RESETHAND is done per handler by the loop, never by the
            // kernel (which would reset the action for every handler).
            let mut sa = nixsig::SaFlags::SA_SIGINFO;
            if flags.contains(SaFlags::SA_RESTART) {
                sa |= nixsig::SaFlags::SA_RESTART;
            }
            let action = SigAction::new(SigHandler::SigAction(os::on_signal), sa, SigSet::empty());
            let old = os::set_action(signal.to_nix(), &action).map_err(|e| match e {
                nix::errno::Errno::EINVAL => Error::InvalidSignal(sig as i32),
                e => Error::os(e),
            })?;
            *slot = Some(Installed { old, handlers: 1 });
        }
    }
    Ok(())
}

/// Removes one handler for `signal`; the last one puts the old action back.
pub(crate) fn uninstall(signal: Signal) {
    let sig = signal.number() as usize;
    let mut book = book();
    let last = match &mut book.installed[sig] {
        Some(i) => {
            i.handlers -= 1;
            (i.handlers == 0).then_some(i.old)
        }
        None => None,
    };
    if let Some(old) = last {
        book.installed[sig] = None;
        let _ = os::set_action(signal.to_nix(), &old);
    }
}

/// Takes a free wake slot for a context: its pipe's read end, emptied. A
/// slot whose pipe a parent process created (we are a forked child) is not
/// free: that pipe is still the parent's.
pub(crate) fn acquire_wake() -> Result<(usize, &'static OwnedFd), Error> {
    let mut book = book();
    let me = std::process::id();
    let ours = |s: &WakeSlot| s.pipe.get().is_none() || s.creator.load(Ordering::Relaxed) == me;
    let slot = (0..WAKE_SLOTS)
        .find(|&s| !book.wake_used[s] && ours(&WAKE[s]))
        .ok_or(Error::TooManySignalContexts)?;
    // Made under the book's lock, so no other thread sets it meanwhile.
    if WAKE[slot].pipe.get().is_none() {
        let pipe = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(Error::os)?;
        WAKE[slot].creator.store(me, Ordering::Relaxed);
        let _ = WAKE[slot].pipe.set(pipe);
    }
    let (rd, _) = WAKE[slot].pipe.get().expect("set above");
    book.wake_used[slot] = true;
    WAKE[slot].interest.store(0, Ordering::SeqCst);
    drain(rd);
    Ok((slot, rd))
}

/// Copies the interest bits of wake slot `from` to `to` (the handler then
/// wakes both, until `from` is released).
pub(crate) fn copy_interest(from: usize, to: usize) {
    let bits = WAKE[from].interest.load(Ordering::SeqCst);
    WAKE[to].interest.fetch_or(bits, Ordering::SeqCst);
}

/// Gives a wake slot back.
pub(crate) fn release_wake(slot: usize) {
    WAKE[slot].interest.store(0, Ordering::SeqCst);
    book().wake_used[slot] = false;
}

/// Whether the handler wakes `slot` for `sig`.
pub(crate) fn set_interest(slot: usize, sig: usize, on: bool) {
    let bit = 1u64 << sig;
    if on {
        WAKE[slot].interest.fetch_or(bit, Ordering::SeqCst);
    } else {
        WAKE[slot].interest.fetch_and(!bit, Ordering::SeqCst);
    }
}

/// Empties a wake pipe.
pub(crate) fn drain(rd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while let Ok(n) = nix::unistd::read(rd.as_raw_fd(), &mut buf) {
        if n < buf.len() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child, a slot whose pipe the parent created is never
    /// taken: the pipe is still the parent's. (A fork itself needs `unsafe`,
    /// which this crate does not use: the child is played by changing the
    /// slot's creator.)
    #[test]
    fn a_slot_with_a_pipe_of_another_process_is_not_taken() {
        let (slot, _) = acquire_wake().unwrap();
        release_wake(slot);
        WAKE[slot].creator.store(u32::MAX, Ordering::Relaxed);
        let (other, _) = acquire_wake().unwrap();
        assert_ne!(other, slot, "the parent's pipe was taken");
        release_wake(other);
        WAKE[slot]
            .creator
            .store(std::process::id(), Ordering::Relaxed);
        let (again, _) = acquire_wake().unwrap();
        release_wake(again);
    }
}
