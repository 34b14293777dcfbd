//! The backends (epoll and poll) and the fd events they watch.
//!
//! [`FdSet`] holds every fd event of a context; both backends read it. A
//! backend reports at most one ready fd event per wait, already routed to the
//! event that asked for the condition (fairness rules E5 and E9 live here and
//! in the two backend files).

mod epoll;
mod poll;

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use talloc::{AnyPtr, Talloc};

use crate::slab::{Id, Slab};
use crate::{Context, Error, FdFlags};

/// The backends, in the order [`Context::backends`] lists them; the first
/// is the default.
pub(crate) const NAMES: &[&str] = &["epoll", "poll"];

/// Gives the fd of an event's I/O object, which lives in the heap node.
pub(crate) type BorrowFn = for<'a> fn(&'a Talloc, AnyPtr) -> Option<BorrowedFd<'a>>;

/// An fd event's handler, with its typed handle captured.
pub(crate) type FdCallback = Box<dyn FnMut(&mut Context, FdFlags)>;

/// One fd event.
pub(crate) struct FdEntry {
    pub(crate) fd: RawFd,
    pub(crate) flags: FdFlags,
    /// The heap node (set once it is allocated).
    pub(crate) node: Option<AnyPtr>,
    pub(crate) borrow: BorrowFn,
    /// Taken out while the handler runs.
    pub(crate) cb: Option<FdCallback>,
    /// The caller's tag (`tevent_fd_set_tag`).
    pub(crate) tag: u64,
}

impl FdEntry {
    /// The fd, borrowed from the I/O object in the heap.
    pub(crate) fn io_fd<'a>(&self, heap: &'a Talloc) -> Option<BorrowedFd<'a>> {
        (self.borrow)(heap, self.node?)
    }
}

/// The events of one fd number, oldest first: any number of them (C's
/// poll backend has no limit; its 0.14 epoll backend stops at two).
#[derive(Default, Clone)]
pub(crate) struct Group {
    pub(crate) members: Vec<Id>,
    /// Which member is asked first about the next event (round robin).
    pub(crate) next: usize,
    /// What epoll was told (`None`: not in the epoll set).
    pub(crate) registered: Option<FdFlags>,
}

/// Every fd event of a context, and their grouping by fd number.
#[derive(Default)]
pub(crate) struct FdSet {
    slab: Slab<FdEntry>,
    groups: Vec<Group>,
}

impl FdSet {
    /// Lets a test fill the store (see `Slab::set_capacity`).
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.slab.set_capacity(cap);
    }

    /// The event with this id, if it is still there.
    #[inline]
    pub(crate) fn get(&self, id: Id) -> Option<&FdEntry> {
        self.slab.get(id)
    }

    /// The event with this id, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: Id) -> Option<&mut FdEntry> {
        self.slab.get_mut(id)
    }

    /// Number of fd events.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn group(&self, fd: RawFd) -> Option<&Group> {
        self.groups.get(usize::try_from(fd).ok()?)
    }

    pub(crate) fn group_mut(&mut self, fd: RawFd) -> Option<&mut Group> {
        self.groups.get_mut(usize::try_from(fd).ok()?)
    }

    /// Stores a new event under its fd's group.
    pub(crate) fn insert(&mut self, entry: FdEntry) -> Result<Id, Error> {
        let fd = entry.fd;
        let i = usize::try_from(fd).map_err(|_| Error::BadFd {
            fd,
            errno: crate::error::errno(nix::errno::Errno::EBADF),
        })?;
        if self.groups.len() <= i {
            self.groups.resize(i + 1, Group::default());
        }
        let id = self.slab.insert(entry).map_err(|_| Error::TooManyEvents)?;
        self.groups[i].members.push(id);
        Ok(id)
    }

    /// Takes an event out of the set and its group.
    pub(crate) fn remove(&mut self, id: Id) -> Option<FdEntry> {
        let entry = self.slab.remove(id)?;
        if let Some(g) = self.group_mut(entry.fd) {
            if let Some(k) = g.members.iter().position(|m| *m == id) {
                g.members.remove(k);
                // The member that was next stays next.
                if k < g.next {
                    g.next -= 1;
                }
            }
        }
        Some(entry)
    }

    /// What the events of an fd want together.
    pub(crate) fn interest(&self, fd: RawFd) -> FdFlags {
        let mut want = FdFlags::empty();
        if let Some(g) = self.group(fd) {
            for id in &g.members {
                if let Some(e) = self.slab.get(*id) {
                    want |= e.flags;
                }
            }
        }
        want
    }

    /// Routes one readiness report of `fd` to its events, from the one
    /// whose turn it is: each event's flags are updated (a hang-up switches
    /// off a write-only event's WRITE), and the first that is to be told
    /// is chosen and the turn passes to the one after it. Whether any
    /// event's flags changed, and the chosen one with what it is told.
    pub(crate) fn route_ready(&mut self, fd: RawFd, ready: Ready) -> (bool, Option<(Id, FdFlags)>) {
        let Some(g) = usize::try_from(fd)
            .ok()
            .and_then(|i| self.groups.get_mut(i))
        else {
            return (false, None);
        };
        let n = g.members.len();
        let (mut changed, mut chosen) = (false, None);
        for k in 0..n {
            let slot = (g.next + k) % n;
            let id = g.members[slot];
            let Some(e) = self.slab.get_mut(id) else {
                continue;
            };
            let (out, left) = route(e.flags, ready);
            if left != e.flags {
                e.flags = left;
                changed = true;
            }
            if !out.is_empty() && chosen.is_none() {
                chosen = Some((id, out, slot));
            }
        }
        match chosen {
            Some((id, out, slot)) => {
                g.next = (slot + 1) % n;
                (changed, Some((id, out)))
            }
            None => (changed, None),
        }
    }

    /// Forgets what the backend was told about every fd (it is a new
    /// backend); gives one event of each fd that has any, to tell it again.
    pub(crate) fn forget_registrations(&mut self) -> Vec<Id> {
        let mut firsts = Vec::new();
        for g in &mut self.groups {
            g.registered = None;
            firsts.extend(g.members.first().copied());
        }
        firsts
    }

    /// Some event of `fd`, to borrow the fd from.
    pub(crate) fn any_member(&self, fd: RawFd) -> Option<Id> {
        self.group(fd)?.members.first().copied()
    }
}

/// The readiness the system reported for one fd.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) hangup: bool,
}

/// What an event that wants `wanted` is told about `ready`, and the flags it
/// is left with (rule E9: a hang-up switches off `WRITE` of an event that
/// asked neither for `READ` nor for `ERROR`, and it is not called).
pub(crate) fn route(wanted: FdFlags, ready: Ready) -> (FdFlags, FdFlags) {
    let mut out = FdFlags::empty();
    let mut left = wanted;
    if ready.read {
        out |= FdFlags::READ;
    }
    if ready.write {
        out |= FdFlags::WRITE;
    }
    if ready.hangup {
        if wanted.intersects(FdFlags::READ | FdFlags::ERROR) {
            out |= FdFlags::READ | FdFlags::ERROR;
        } else {
            left = wanted & !FdFlags::WRITE;
            out = FdFlags::empty();
        }
    }
    (out & left, left)
}

/// The context's own fds, watched beside the user's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Internal {
    /// The self-pipe of the signal handlers.
    Signals,
    /// The eventfd of the cross-thread queue.
    Remote,
}

/// What one wait found.
#[derive(Debug)]
pub(crate) enum Waited {
    /// An fd event to call, with its flags.
    Fd(Id, FdFlags),
    /// One of the context's own fds is ready.
    Internal(Internal),
    /// Something was ready that nobody is to be told about (a hang-up on a
    /// write-only event, say).
    Nothing,
    /// The timeout passed.
    Timeout,
    /// A signal interrupted the wait.
    Interrupted,
}

/// An epoll or poll instance.
pub(crate) enum Backend {
    Epoll(epoll::EpollBackend),
    Poll(poll::PollBackend),
}

impl Backend {
    pub(crate) fn new(name: &str) -> Result<Backend, Error> {
        match name {
            "epoll" => Ok(Backend::Epoll(epoll::EpollBackend::new()?)),
            "poll" | "poll_mt" => Ok(Backend::Poll(poll::PollBackend::default())),
            // C's "standard": epoll where the system gives one, else poll.
            "standard" => Ok(match epoll::EpollBackend::new() {
                Ok(e) => Backend::Epoll(e),
                Err(_) => Backend::Poll(poll::PollBackend::default()),
            }),
            _ => Err(Error::UnknownBackend(name.to_string())),
        }
    }

    /// A fresh instance of the same backend, for a forked child: epoll's
    /// set lives in the kernel, shared with the parent; poll keeps nothing
    /// there (`None`: keep this one).
    pub(crate) fn renewed(&self) -> Result<Option<Backend>, Error> {
        match self {
            Backend::Epoll(_) => Ok(Some(Backend::Epoll(epoll::EpollBackend::new()?))),
            Backend::Poll(_) => Ok(None),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Epoll(_) => "epoll",
            Backend::Poll(_) => "poll",
        }
    }

    /// A new event is in the set (its group included).
    pub(crate) fn inserted(&mut self, id: Id) {
        if let Backend::Poll(p) = self {
            p.inserted(id);
        }
    }

    /// An event left the set.
    pub(crate) fn removed(&mut self, id: Id) {
        if let Backend::Poll(p) = self {
            p.removed(id);
        }
    }

    /// The interest of an fd may have changed: tell the kernel.
    pub(crate) fn sync(&mut self, fds: &mut FdSet, fd: BorrowedFd<'_>) -> Result<(), Error> {
        match self {
            Backend::Epoll(e) => e.sync(fds, fd),
            Backend::Poll(_) => Ok(()),
        }
    }

    pub(crate) fn add_internal(
        &mut self,
        which: Internal,
        fd: BorrowedFd<'_>,
    ) -> Result<(), Error> {
        match self {
            Backend::Epoll(e) => e.add_internal(which, fd),
            Backend::Poll(_) => Ok(()),
        }
    }

    pub(crate) fn remove_internal(&mut self, fd: BorrowedFd<'_>) {
        if let Backend::Epoll(e) = self {
            e.remove_internal(fd);
        }
    }

    /// Waits for one fd event (or an internal fd, or the timeout).
    pub(crate) fn wait(
        &mut self,
        heap: &Talloc,
        fds: &mut FdSet,
        internal: &[(Internal, BorrowedFd<'_>)],
        timeout: Option<Duration>,
    ) -> Result<Waited, Error> {
        match self {
            Backend::Epoll(e) => e.wait(heap, fds, timeout),
            Backend::Poll(p) => p.wait(heap, fds, internal, timeout),
        }
    }
}

/// A timeout in whole milliseconds, rounded up (as C tevent does), for
/// epoll_wait and poll.
pub(crate) fn millis(timeout: Option<Duration>) -> nix::poll::PollTimeout {
    match timeout {
        None => nix::poll::PollTimeout::NONE,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            nix::poll::PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                .unwrap_or(nix::poll::PollTimeout::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangup_on_write_only_switches_write_off() {
        let hup = Ready {
            hangup: true,
            ..Ready::default()
        };
        assert_eq!(
            route(FdFlags::WRITE, hup),
            (FdFlags::empty(), FdFlags::empty())
        );
        assert_eq!(route(FdFlags::READ, hup), (FdFlags::READ, FdFlags::READ));
        assert_eq!(
            route(FdFlags::ERROR | FdFlags::WRITE, hup),
            (FdFlags::ERROR, FdFlags::ERROR | FdFlags::WRITE)
        );
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(millis(Some(Duration::from_micros(1))).as_millis(), Some(1));
        assert_eq!(millis(Some(Duration::ZERO)).as_millis(), Some(0));
        assert!(millis(None).is_none());
    }
}
