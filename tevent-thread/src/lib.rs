//! Moving work and owned data between the event loops of different threads.
//!
//! Each thread runs its own [`tevent::Context`], which owns its own
//! [`talloc::Talloc`] heap. This crate connects them:
//!
//! - [`ThreadProxy`] (C's `tevent_thread_proxy`): a sender moves a subtree out
//!   of its heap into the destination loop's heap, where a handler runs with
//!   it. The transfer is checked over the whole subtree before anything
//!   moves (no pooled objects, no destructors, every value `Send`, no
//!   reference across the boundary); a refused transfer changes nothing.
//!
//! C's other threading API, `tevent_threaded_context` (any thread schedules
//! a closure, or an immediate the destination created, on a loop), is
//! tevent-rs's own [`tevent::Remote`]: [`Context::remote`](tevent::Context::remote),
//! [`Remote::schedule`](tevent::Remote::schedule) and
//! [`Remote::schedule_immediate`](tevent::Remote::schedule_immediate). The
//! proxy rides on that same queue: first in, first out, one wake-up per
//! batch, drained at step 2 of `loop_once`.
//!
//! ```
//! use tevent::Context;
//! use tevent_thread::ThreadProxy;
//!
//! let mut master = Context::new()?;
//! let proxy = ThreadProxy::new(&mut master, None)?;
//! let sender = proxy.sender(&master)?;
//!
//! let worker = std::thread::spawn(move || {
//!     let mut heap = talloc::Talloc::new();
//!     let msg = heap.alloc_str(None, "hello from a worker").unwrap();
//!     sender.send(&mut heap, msg, |ev, msg| {
//!         println!("master got: {}", ev.heap().get(msg)?);
//!         Ok(())
//!     }).unwrap();
//!     assert_eq!(heap.live_objects(), 0); // the message left this heap
//! });
//! worker.join().unwrap();
//! master.loop_once()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The modules: [`proxy`](ThreadProxy) (the proxy and its sender), and the
//! errors ([`SendError`] for the sender, [`DeliveryError`] for the
//! destination).
#![deny(missing_docs, missing_debug_implementations, unsafe_code)]

mod error;
mod proxy;
mod service;

pub use error::{DeliveryError, SendError, SendValueError};
pub use proxy::{ProxySender, ThreadProxy};
pub use service::{Ask, CallError, Client, Responder, Service};
