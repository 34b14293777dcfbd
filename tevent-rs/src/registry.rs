//! The registry: everything the loop knows about its events, outside the
//! heap.
//!
//! Each handle's heap object holds an `Rc` of the registry and an id into it;
//! dropping the object (a free of it or of any ancestor, or the heap going)
//! takes the entry out. Callbacks live here, not in the heap, and are taken
//! out while they run, so a callback can free its own handle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;

use talloc::AnyPtr;

use crate::backend::{Backend, FdSet, Internal};
use crate::immediate::Immediates;
use crate::profile::Profiles;
use crate::remote::{RemoteInner, Task};
use crate::signal::Signals;
use crate::timer::Timers;
use crate::trace::Tracing;
use crate::wrapper::Wrappers;

pub(crate) type Shared = Rc<RefCell<Registry>>;

pub(crate) struct Registry {
    pub(crate) backend: Backend,
    pub(crate) fds: FdSet,
    pub(crate) timers: Timers,
    pub(crate) imms: Immediates,
    pub(crate) sigs: Signals,
    pub(crate) remote: Option<Arc<RemoteInner>>,
    /// Remote tasks taken at step 2 and not run yet, which run before
    /// `imms` (everything there was queued after them); see
    /// `Registry::pull_remote`.
    pub(crate) remote_batch: VecDeque<Task>,
    /// A spare buffer for takes that cannot go straight to `remote_batch`
    /// (empty between takes, keeps its capacity).
    pub(crate) remote_spare: VecDeque<Task>,
    /// 1 while `loop_once` runs (nesting is refused, E7).
    pub(crate) depth: u32,
    pub(crate) tracing: Tracing,
    pub(crate) wrappers: Wrappers,
    pub(crate) profiles: Profiles,
    pub(crate) failures: crate::callback::Failures,
    /// Live tasks (`Context::spawn`): each is work, as an event is.
    pub(crate) tasks: usize,
    /// Tasks woken on this thread, taken from the thread's list, to poll
    /// in turn (one per pass, taking turns with the immediates).
    pub(crate) woken: VecDeque<AnyPtr>,
    /// Whether a woken task goes before the next immediate.
    pub(crate) tasks_turn: bool,
    /// Tasks polled since the loop last looked at its fds.
    pub(crate) task_polls: u32,
}

impl Registry {
    pub(crate) fn new(backend: Backend) -> Registry {
        Registry {
            backend,
            fds: FdSet::default(),
            timers: Timers::new(),
            imms: Immediates::default(),
            sigs: Signals::default(),
            remote: None,
            remote_batch: VecDeque::new(),
            remote_spare: VecDeque::new(),
            depth: 0,
            tracing: Tracing::default(),
            wrappers: Wrappers::default(),
            profiles: Profiles::default(),
            failures: Default::default(),
            tasks: 0,
            woken: VecDeque::new(),
            tasks_turn: false,
            task_polls: 0,
        }
    }

    /// Empties one of the context's own fds after the backend reported it
    /// (what it signals is looked at by steps 1 and 2 of `loop_once`).
    pub(crate) fn drain_internal(&self, which: Internal) {
        match which {
            Internal::Signals => {
                if let Some(fd) = self.sigs.wake_fd() {
                    crate::signal::drain(fd);
                }
            }
            Internal::Remote => {
                if let Some(r) = &self.remote {
                    r.drain();
                }
            }
        }
    }

    /// Whether any event is registered (E6): fd events (silent ones too, as
    /// in tevent 0.14), pending timers, queued immediates (remote tasks
    /// already taken count), signal handlers, and live async tasks.
    pub(crate) fn has_events(&self) -> bool {
        self.fds.len() > 0
            || self.timers.queued() > 0
            || self.queued_immediates() > 0
            || self.sigs.len() > 0
            || self.tasks > 0
    }

    /// Immediates waiting to run, with the remote tasks already taken.
    pub(crate) fn queued_immediates(&self) -> usize {
        self.imms.queued() + self.remote_batch.len()
    }
}

/// The context's own fds, for a backend that polls them at each wait.
pub(crate) fn internal_fds<'a>(
    sigs: &'a Signals,
    remote: &'a Option<Arc<RemoteInner>>,
) -> Vec<(Internal, BorrowedFd<'a>)> {
    let mut out = Vec::new();
    if let Some(fd) = sigs.wake_fd() {
        out.push((Internal::Signals, fd.as_fd()));
    }
    if let Some(r) = remote {
        out.push((Internal::Remote, r.wake_fd()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::time::Duration;

    use crate::{Context, Error, FdFlags, SaFlags, Signal};

    /// Every kind of event refuses cleanly once its store is full, and the
    /// loop's own one-shot work still runs.
    #[test]
    fn full_stores_refuse_new_events_and_change_nothing() {
        let mut ev = Context::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        {
            let mut reg = ev.reg.borrow_mut();
            reg.fds.set_capacity(0);
            reg.timers.set_capacity(0);
            reg.imms.set_capacity(0);
            reg.sigs.set_capacity(0);
        }
        let before = ev.heap().live_objects();
        let err = ev
            .add_fd(None, a, FdFlags::READ, |_, _, _| {})
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.error(), &Error::TooManyEvents);
        let t = ev.add_timer(None, Duration::ZERO, |_, _, _| {});
        assert_eq!(t.map(|_| ()), Err(Error::TooManyEvents));
        assert_eq!(
            ev.create_immediate(None).map(|_| ()),
            Err(Error::TooManyEvents)
        );
        let s = ev.add_signal(None, Signal::SIGUSR2, SaFlags::SA_RESTART, |_, _, _| {});
        assert_eq!(s.map(|_| ()), Err(Error::TooManyEvents));
        assert_eq!(ev.heap().live_objects(), before);
        assert!(!ev.has_events());

        // One-shot work of the loop itself waits in the overflow queue.
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        ev.reg
            .borrow_mut()
            .imms
            .push_once(Box::new(move |_| r.set(true)));
        ev.loop_once().unwrap();
        assert!(ran.get());
    }
}
