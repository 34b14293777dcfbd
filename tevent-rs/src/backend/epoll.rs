//! The epoll backend: level-triggered, one event per `epoll_wait` (C's
//! `MAXEVENTS 1`), so the kernel's ready list rotates the ready fds (E5).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use talloc::Talloc;

use super::{millis, FdSet, Internal, Ready, Waited};
use crate::{Error, FdFlags};

/// Tokens of the internal fds have this bit; user fds use their fd number.
const INTERNAL: u64 = 1 << 32;

pub(crate) struct EpollBackend {
    epoll: Epoll,
    events: [EpollEvent; 1],
    /// Whether the last look without waiting found an event: while a loop
    /// is busy, it first looks with a zero timeout, which spares the
    /// kernel its timeout arithmetic (two clock reads per call).
    busy: bool,
    /// Waits until the next look without waiting, while not busy.
    probe_in: u8,
}

fn epoll_flags(f: FdFlags) -> EpollFlags {
    let mut e = EpollFlags::empty();
    if f.contains(FdFlags::READ) {
        e |= EpollFlags::EPOLLIN;
    }
    if f.contains(FdFlags::WRITE) {
        e |= EpollFlags::EPOLLOUT;
    }
    // Hang-ups and errors are always reported; ERROR needs nothing more.
    e
}

fn token(which: Internal) -> u64 {
    INTERNAL
        | match which {
            Internal::Signals => 0,
            Internal::Remote => 1,
        }
}

impl EpollBackend {
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(EpollBackend {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(Error::os)?,
            events: [EpollEvent::empty()],
            busy: false,
            probe_in: 0,
        })
    }

    /// Makes the epoll set match what the events of `fd` want: an fd whose
    /// events all have empty flags leaves the set (else its hang-ups would
    /// still be reported).
    pub(crate) fn sync(&mut self, fds: &mut FdSet, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let raw = fd.as_raw_fd();
        let want = fds.interest(raw);
        let Some(group) = fds.group_mut(raw) else {
            return Ok(());
        };
        let bad = |e| Error::BadFd {
            fd: raw,
            errno: crate::error::errno(e),
        };
        match (group.registered, want.is_empty()) {
            (None, true) => {}
            (Some(_), true) => {
                // EBADF/ENOENT: the fd was closed behind our back; it is out
                // of the set either way.
                let _ = self.epoll.delete(fd);
                group.registered = None;
            }
            (Some(old), false) if old == want => {}
            (Some(_), false) => {
                let mut ev = EpollEvent::new(epoll_flags(want), raw as u64);
                self.epoll.modify(fd, &mut ev).map_err(bad)?;
                group.registered = Some(want);
            }
            (None, false) => {
                let ev = EpollEvent::new(epoll_flags(want), raw as u64);
                self.epoll.add(fd, ev).map_err(bad)?;
                group.registered = Some(want);
            }
        }
        Ok(())
    }

    pub(crate) fn add_internal(
        &mut self,
        which: Internal,
        fd: BorrowedFd<'_>,
    ) -> Result<(), Error> {
        let ev = EpollEvent::new(EpollFlags::EPOLLIN, token(which));
        self.epoll.add(fd, ev).map_err(Error::os)
    }

    pub(crate) fn remove_internal(&mut self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    pub(crate) fn wait(
        &mut self,
        heap: &Talloc,
        fds: &mut FdSet,
        timeout: Option<Duration>,
    ) -> Result<Waited, Error> {
        let mut n = 0;
        if self.busy || self.probe_in == 0 {
            n = match self.epoll.wait(&mut self.events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(Errno::EINTR) => return Ok(Waited::Interrupted),
                Err(e) => return Err(Error::os(e)),
            };
            self.busy = n > 0;
            self.probe_in = 8;
        } else {
            self.probe_in -= 1;
        }
        if n == 0 && timeout != Some(Duration::ZERO) {
            n = match self.epoll.wait(&mut self.events, millis(timeout)) {
                Ok(n) => n,
                Err(Errno::EINTR) => return Ok(Waited::Interrupted),
                Err(e) => return Err(Error::os(e)),
            };
        }
        if n == 0 {
            return Ok(Waited::Timeout);
        }
        let (data, events) = (self.events[0].data(), self.events[0].events());
        if data & INTERNAL != 0 {
            let which = if data & 1 == 0 {
                Internal::Signals
            } else {
                Internal::Remote
            };
            return Ok(Waited::Internal(which));
        }
        let fd = data as i32;
        let ready = Ready {
            read: events.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI),
            write: events.contains(EpollFlags::EPOLLOUT),
            hangup: events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR),
        };
        let (changed, chosen) = fds.route_ready(fd, ready);
        if changed {
            let e = fds.any_member(fd).and_then(|id| fds.get(id));
            if let Some(b) = e.and_then(|e| e.io_fd(heap)) {
                self.sync(fds, b)?;
            }
        }
        Ok(match chosen {
            Some((id, out)) => Waited::Fd(id, out),
            None => Waited::Nothing,
        })
    }
}
