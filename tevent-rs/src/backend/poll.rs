//! The poll backend: one `pollfd` per fd event, scanned in list order; new
//! events go to the head of the list and the one that fired moves to the
//! tail, which gives round robin (E5, as `tevent_poll.c` does).

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use talloc::Talloc;

use super::{millis, route, FdSet, Internal, Ready, Waited};
use crate::slab::Id;
use crate::{Error, FdFlags};

#[derive(Default)]
pub(crate) struct PollBackend {
    order: VecDeque<Id>,
}

fn poll_flags(f: FdFlags) -> PollFlags {
    let mut p = PollFlags::empty();
    if f.contains(FdFlags::READ) {
        p |= PollFlags::POLLIN;
    }
    if f.contains(FdFlags::WRITE) {
        p |= PollFlags::POLLOUT;
    }
    p
}

impl PollBackend {
    pub(crate) fn inserted(&mut self, id: Id) {
        self.order.push_front(id);
    }

    pub(crate) fn removed(&mut self, id: Id) {
        if let Some(i) = self.order.iter().position(|x| *x == id) {
            self.order.remove(i);
        }
    }

    pub(crate) fn wait(
        &mut self,
        heap: &Talloc,
        fds: &mut FdSet,
        internal: &[(Internal, BorrowedFd<'_>)],
        timeout: Option<Duration>,
    ) -> Result<Waited, Error> {
        let mut pfds = Vec::with_capacity(internal.len() + self.order.len());
        let mut ids = Vec::with_capacity(self.order.len());
        for (_, fd) in internal {
            pfds.push(PollFd::new(*fd, PollFlags::POLLIN));
        }
        for id in &self.order {
            let Some(e) = fds.get(*id) else { continue };
            // A silent event is not polled: poll would still report its
            // hang-ups.
            if e.flags.is_empty() {
                continue;
            }
            let Some(fd) = e.io_fd(heap) else {
                continue;
            };
            pfds.push(PollFd::new(fd, poll_flags(e.flags)));
            ids.push(*id);
        }
        let n = match poll(&mut pfds, millis(timeout)) {
            Ok(n) => n,
            Err(Errno::EINTR) => return Ok(Waited::Interrupted),
            Err(e) => return Err(Error::os(e)),
        };
        if n == 0 {
            return Ok(Waited::Timeout);
        }
        let revents: Vec<PollFlags> = pfds
            .iter()
            .map(|p| p.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(pfds);
        for (k, (which, _)) in internal.iter().enumerate() {
            if !revents[k].is_empty() {
                return Ok(Waited::Internal(*which));
            }
        }
        let mut chosen = None;
        // In list order, up to the first event to call: the ones behind it
        // are looked at (and a hang-up switches their WRITE off) only on
        // their own turn, as in C.
        for (k, id) in ids.iter().enumerate() {
            if chosen.is_some() {
                break;
            }
            let r = revents[internal.len() + k];
            if r.is_empty() {
                continue;
            }
            let ready = Ready {
                read: r.intersects(PollFlags::POLLIN | PollFlags::POLLPRI),
                write: r.contains(PollFlags::POLLOUT),
                hangup: r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL),
            };
            let Some(e) = fds.get_mut(*id) else {
                continue;
            };
            let (out, left) = route(e.flags, ready);
            e.flags = left;
            if !out.is_empty() && chosen.is_none() {
                chosen = Some((*id, out));
            }
        }
        Ok(match chosen {
            Some((id, out)) => {
                self.removed(id);
                self.order.push_back(id);
                Waited::Fd(id, out)
            }
            None => Waited::Nothing,
        })
    }
}
