//! A hierarchical heap in the style of Samba's talloc.
//!
//! Every object lives in a [`Talloc`] heap and has at most one parent.
//! Freeing an object frees its whole subtree, each object's destructor
//! first; [`steal`](Talloc::steal) moves a subtree under a new parent in
//! O(1). Objects are named by [`Ptr`] handles: small `Copy` values that never
//! dangle. A freed object's handle reads [`Error::Stale`], a handle from
//! another heap [`Error::ForeignHeap`]; nothing is undefined behaviour and
//! nothing aborts.
//!
//! ```
//! use talloc::Talloc;
//!
//! let mut heap = Talloc::new();
//! let server = heap.new_context(None)?;
//! let conn = heap.alloc_str(server, "conn 1")?;
//! let buf = heap.alloc_zeroed(conn, 512)?;
//! heap.steal(None, buf)?;            // keep the buffer beyond the connection
//! heap.free(server)?;                // conn goes, buf stays
//! assert!(heap.get(conn).is_err());
//! assert_eq!(heap[buf].len(), 512);
//! # Ok::<(), talloc::Error>(())
//! ```
//!
//! The modules, in reading order:
//!
//! - creation and access: [`Talloc`], [`Ptr`], [`AnyPtr`] (heap.rs, ptr.rs);
//! - freeing: [`Talloc::free`], [`Talloc::free_children`];
//! - destructors, closures or plain functions: [`Talloc::set_destructor`],
//!   [`Talloc::set_destructor_fn`];
//! - values back out: [`Talloc::take`], [`Talloc::replace`];
//! - reparenting and references: [`Talloc::steal`], [`Talloc::reference`];
//! - names and types: [`Talloc::name`], [`Talloc::downcast`];
//! - queries and sizes: [`Talloc::parent`], [`Talloc::total_size`];
//! - walking the tree: [`Talloc::children`], [`Talloc::ancestors`],
//!   [`Talloc::descendants`], narrowed to a type with `of_type`;
//! - pools and memory limits: [`Talloc::pool`], [`Talloc::set_memlimit`];
//! - reports: [`Talloc::report_full`], [`Talloc::dot`], [`LeakReport`];
//! - the invariant checker for property tests: [`Talloc::verify`];
//! - subtrees that move between heaps: [`Parcel`].
#![deny(missing_docs, missing_debug_implementations)]
// docs.rs (see Cargo.toml) marks `strategy` as needing the `proptest` feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod destructor;
mod error;
mod free;
mod heap;
mod iter;
mod limit;
mod names;
mod parcel;
mod ptr;
mod query;
mod report;
mod storage;
mod take;
mod tree;
mod verify;

/// A formatted string in the heap, as `format!` writes it
/// (`talloc_asprintf`): `alloc_format!(heap, parent, "...", args...)` is
/// [`heap.alloc_fmt(parent, format_args!("...", args...))`](Talloc::alloc_fmt).
///
/// ```
/// use talloc::{alloc_format, Talloc};
/// let mut heap = Talloc::new();
/// let conn = heap.new_context(None)?;
/// let (user, port) = ("alice", 445);
/// let label = alloc_format!(heap, conn, "{user}@{port}")?;
/// assert_eq!(&heap[label], "alice@445");
/// assert_eq!(heap.parent(label)?, Some(conn.erase()));
/// # Ok::<(), talloc::Error>(())
/// ```
#[macro_export]
#[doc(alias = "talloc_asprintf")]
macro_rules! alloc_format {
    ($heap:expr, $parent:expr, $($fmt:tt)+) => {
        $heap.alloc_fmt($parent, ::std::format_args!($($fmt)+))
    };
}

#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod strategy;

pub use error::{AllocError, Error};
pub use heap::{DestructorResult, Pool, PoolUsage, Refused, Talloc};
pub use iter::{Ancestors, Children, Descendants, OfType};
pub use limit::MemLimit;
pub use names::{NAME_CHUNK_NAME, REFERENCE_NAME};
pub use parcel::{AttachError, DetachError, Parcel, TransferError, TransferRule};
pub use ptr::{AnyPtr, IntoParent, Ptr};
pub use report::{LeakReport, ReportEntry};
pub use storage::Object;
pub use verify::Violation;
