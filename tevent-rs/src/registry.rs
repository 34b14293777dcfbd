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

use crate::backend::{Backend, FdSet, Internal};
use crate::immediate::Immediates;
use crate::remote::{RemoteInner, Task};
use crate::signal::Signals;
use crate::timer::Timers;
use crate::trace::Tracing;

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
    /// already taken count), signal handlers.
    pub(crate) fn has_events(&self) -> bool {
        self.fds.slab.len() > 0
            || self.timers.queued() > 0
            || self.queued_immediates() > 0
            || self.sigs.len() > 0
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
