//! An event loop in the style of Samba's tevent, whose events live in a
//! talloc-rs heap.
//!
//! A [`Context`] owns a [`talloc::Talloc`] heap. fd events, timers,
//! immediates and signal events are objects in that heap, each a child of
//! the parent the caller names; freeing one, or any of its ancestors, takes
//! it off the loop. Callbacks get `&mut Context`, so they reach the heap and
//! may add, free and reschedule events, their own included; a callback
//! may return an error, with `?`, and it comes out of the loop.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use tevent::{Context, FdFlags};
//!
//! let mut ev = Context::new()?;
//! let conn = ev.heap_mut().new_context(None)?;         // owns the connection's events
//! let (sock, mut peer) = UnixStream::pair()?;
//! ev.add_fd(conn, sock, FdFlags::READ, move |ev, fde, _flags| {
//!     let mut buf = [0u8; 4];
//!     ev.fd_io(fde)?.read_exact(&mut buf)?;
//!     assert_eq!(&buf, b"ping");
//!     ev.free(conn)?;                                  // the timeout goes too
//!     Ok(())
//! })?;
//! ev.add_timer(conn, Duration::from_secs(5), |_, _, _| -> () { panic!("no ping") })?;
//! peer.write_all(b"ping")?;
//! ev.loop_wait()?;                                     // returns when nothing is left
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The modules, in reading order:
//!
//! - the loop and its heap: [`Context`] (context.rs); what one
//!   [`loop_once`](Context::loop_once) does (dispatch.rs);
//! - fd events: [`FdEvent`], [`FdFlags`] (fd.rs, flags.rs), on the epoll or
//!   poll backend (backend/);
//! - timers: [`TimerEvent`], [`When`] (timer.rs);
//! - immediates: [`Immediate`] (immediate.rs);
//! - signals: [`SignalEvent`], [`Delivery`], [`SigInfo`] (signal/);
//! - other threads: [`Remote`] (remote.rs);
//! - after `fork`: [`Context::re_initialise`], [`cached_getpid`] (fork.rs);
//! - async requests: [`Req`], [`ReqState`], [`ReqError`], timed waits
//!   ([`Context::wakeup_send`]) (req.rs); their profiles: [`ReqProfile`]
//!   (profile.rs); queues of requests: [`Queue`], [`QueueEntry`]
//!   (queue.rs);
//! - trace hooks: [`TracePoint`], [`EventTrace`], [`TracedEvent`] (trace.rs);
//! - wrappers, hooks around handlers: [`Wrapper`], [`WrapperHooks`],
//!   [`Wrapped`] (wrapper.rs);
//! - async tasks owned by the heap: [`Context::spawn`], [`Task`],
//!   [`with`], the loop's futures ([`sleep`], [`yield_now`], [`recv`],
//!   [`Async`] I/O, [`signals`]), and tasks started from other threads
//!   ([`Remote::spawn`], [`RemoteJoin`]) (task/);
//! - callbacks that fail, timers that repeat: [`HandlerResult`],
//!   [`CallbackError`], [`Context::set_error_hook`], [`TimerAction`]
//!   (callback.rs);
//! - errors: [`Error`], [`AddFdError`] (error.rs);
//! - inside: the registry of callbacks (registry.rs, slab.rs).
//!
//! The rules of C tevent this follows are named E1 to E13 in the book's
//! rules chapter (`docs/src/rules.md`); the tests are named after them.
//! Where this crate differs from tevent 0.14 on purpose:
//!
//! - a nested `loop_once` is refused with [`Error::Nested`] and the context
//!   stays usable (C aborts, or with its abort hook is left unusable);
//! - a double free, a stale or foreign handle, a bad fd or signal number
//!   give typed errors, never an abort;
//! - an fd event owns its I/O object (no fd closed under the loop); an fd
//!   may have any number of events on both backends (C 0.14's epoll stops
//!   at two);
//! - an event freed in its own callback is gone at once, and a freed
//!   context's events are dropped with its heap (nothing is left half
//!   alive);
//! - a timer callback is told the deadline it was set for (C passes the
//!   current time); the idle wait is settable (C: 30 s);
//! - every context with a handler for a signal sees each delivery; more
//!   than 256 `SA_SIGINFO` deliveries between two passes are handed out
//!   without their `siginfo` (C blocks the signal); real-time signals are
//!   not supported;
//! - waking the loop for a signal or a [`Remote`] does not use up a
//!   `loop_once`: it goes on to run what is due;
//! - a request's error is a typed value, and finishing it twice is an
//!   error ([`Error::NotInProgress`]).
#![deny(missing_docs, missing_debug_implementations, unsafe_code)]

/// Clone, Copy, Eq, Hash and Debug for a handle type (a `ptr` into the heap
/// and the `id` of its registry entry).
macro_rules! handle_traits {
    ($t:ident, $name:literal) => {
        impl Clone for $t {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl Copy for $t {}
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.ptr == other.ptr
            }
        }
        impl Eq for $t {}
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.ptr.hash(state)
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($name, "({:?})"), talloc::AnyPtr::from(self.ptr))
            }
        }
        // The handle is its heap object's handle: to free, steal, or name
        // it as a parent, no `erase()` needed.
        impl From<$t> for talloc::AnyPtr {
            fn from(h: $t) -> talloc::AnyPtr {
                talloc::AnyPtr::from(h.ptr)
            }
        }
        impl talloc::IntoParent for $t {
            fn into_parent(self) -> Option<talloc::AnyPtr> {
                Some(talloc::AnyPtr::from(self.ptr))
            }
        }
    };
}
pub(crate) use handle_traits;

mod backend;
mod callback;
mod context;
mod dispatch;
mod error;
mod fd;
mod flags;
mod fork;
mod immediate;
mod profile;
mod queue;
mod registry;
mod remote;
mod req;
mod signal;
mod slab;
mod task;
mod timer;
mod trace;
mod wrapper;

pub use callback::{CallbackError, CallbackFailure, HandlerResult, TimerAction, TimerResult};
pub use context::Context;
pub use error::{AddFdError, Error, OsError};
pub use fd::FdEvent;
pub use flags::FdFlags;
pub use fork::cached_getpid;
pub use immediate::Immediate;
pub use profile::ReqProfile;
pub use queue::{Queue, QueueEntry};
pub use remote::{Remote, RemoteFn, RemoteTask, ScheduleError};
pub use req::{Req, ReqError, ReqState};
pub use signal::{
    num_signals, sa_info_queue_count, Delivery, SaFlags, SigInfo, Signal, SignalEvent, SignalNumber,
};
pub use task::{
    recv, signals, sleep, sleep_until, try_with, with, with_task, yield_now, Async, Cancelled,
    Join, Ready, Recv, RecvSignal, RemoteJoin, Signals, Sleep, Task, YieldNow,
};
pub use timer::{TimerEvent, When};
pub use trace::{EventTrace, EventTraceFn, LoopTraceFn, TracePoint, TracedEvent};
pub use wrapper::{Wrapped, Wrapper, WrapperHooks};
