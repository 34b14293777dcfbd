//! The storage layer: slots, payloads and pool regions.
//!
//! This is the only module of the workspace with `unsafe` code. Everything
//! above it works with slot indices and the [`Node`] links; this module owns
//! the bytes. Its invariants, which every `unsafe` block below relies on:
//!
//! 1. A live node (odd generation) holds exactly `len` initialised elements of
//!    the type its type index names in the heap's table (entries are never
//!    removed), either inline in the node or behind `Payload::out.ptr` (an
//!    allocation of its own, or a range of a pool region that stays
//!    allocated while the node lives). Its `NEEDS_DROP` flag is the type's
//!    (cleared only to hand the value over without dropping it).
//! 2. A `Ptr<T>` whose heap id and generation match a live node was minted for
//!    that node by an allocation of `T` (or a checked downcast to `T`), and no
//!    operation changes the type of a live node. So the stored type is `T`.
//! 3. A free node holds no value: its payload bytes are never read.
//! 4. A heap id names one heap for the life of the process: [`HeapId`]s come
//!    from one 64-bit counter that refuses to go on rather than wrap, so a
//!    handle of one heap never matches a slot of another.
//! 5. A slot's generation is never reused: a slot whose generation would
//!    wrap is retired, never handed out again.
//! 6. Nodes live in one growable array, so they (and their inline values)
//!    move when it grows: a raw pointer into a node is derived after the
//!    last slot claim of the operation and dropped before it returns.
//!    Values are never pinned in place; a value that must not move is kept
//!    out of line by its owner (a `Box`).
//!
//! Invariant 2 is upheld outside this module by every place that mints a
//! typed handle with `Ptr::from_key`: `heap.rs` (allocation, downcasts),
//! `parcel.rs` (attach), `names.rs` (`find_parent_by_type`) and
//! `destructor.rs` (a destructor gets the handle it was set for, a `Ptr<T>`
//! of the object it was set on). Each mints a `Ptr<T>` only for a node it
//! has just stored a `T` in, or whose type id it checked.
//! Invariants 4, 5 and 6 are upheld in this module alone, and
//! [`Slots::lookup`] is the only check of a handle against a heap.
//!
//! The layer is split by what each part owns:
//!
//! - this file: the types every part shares (`Node` and its payload, the
//!   `Slots` table, pool `Region`s), heap ids, and the allocator calls;
//! - `object.rs`: what a stored type is (`Object`, its `TypeDesc`);
//! - `types.rs`: the table of the types a heap stores, which nodes name by
//!   a 16-bit index;
//! - `slots.rs`: the slot table (claiming, looking up, releasing a node);
//! - `payload.rs`: storing, reading and resizing values;
//! - `pool.rs`: pool regions and their members;
//! - `hot.rs`: the commonest allocation, free and move, each in one pass;
//! - `detached.rs`: values between two heaps.

use std::alloc::{self, Layout};
use std::mem::MaybeUninit;
use std::num::NonZeroU64;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

mod detached;
mod hot;
mod object;
mod payload;
mod pool;
mod slots;
#[cfg(test)]
mod tests;
mod types;

pub(crate) use detached::Detached;
pub(crate) use object::{marker_desc, Kind};
pub use object::{Object, TypeDesc};
use types::{TypeRef, Types};

/// "No slot": the end of a list, or no parent.
pub(crate) const NIL: u32 = u32::MAX;

/// The identity of one heap, unique for the life of the process
/// (invariant 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct HeapId(NonZeroU64);

impl HeapId {
    pub(crate) fn get(self) -> u64 {
        self.0.get()
    }
}

/// Hands out heap ids: each at most once, in increasing order, and none
/// once the counter has reached its end (it never wraps).
pub(crate) struct IdSource {
    next: AtomicU64,
}

impl IdSource {
    pub(crate) const fn starting_at(first: NonZeroU64) -> IdSource {
        IdSource {
            next: AtomicU64::new(first.get()),
        }
    }

    /// A fresh id, or `None` once every id has been handed out. At one heap
    /// a nanosecond the 64-bit space lasts over 500 years.
    pub(crate) fn take(&self) -> Option<HeapId> {
        self.next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .ok()
            .and_then(NonZeroU64::new)
            .map(HeapId)
    }
}

/// The process-wide source of heap ids.
pub(crate) static HEAP_IDS: IdSource = IdSource::starting_at(NonZeroU64::MIN);

/// Values of at most this many bytes (and alignment at most 8) live inside
/// their node, with no allocator call.
pub(crate) const INLINE_BYTES: usize = 32;

/// Where a node's value lives when it is not inline.
#[derive(Clone, Copy)]
#[repr(C)]
struct OutOfLine {
    ptr: NonNull<u8>,
    /// The pool region it was carved from, or `NIL`.
    pool: u32,
    /// Capacity in bytes (at least the value's size).
    cap: u32,
}

/// The bytes of an inline value, aligned for any type that may live inline
/// (alignment at most 8). The alignment is on the type itself, not only on
/// the node around it, so the bytes keep it wherever they are moved: into a
/// [`Detached`] value, an enum, a `Vec`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct InlineBytes([MaybeUninit<u8>; INLINE_BYTES]);

impl InlineBytes {
    const UNINIT: InlineBytes = InlineBytes([MaybeUninit::uninit(); INLINE_BYTES]);
    const ZERO: InlineBytes = InlineBytes([MaybeUninit::new(0); INLINE_BYTES]);

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }
}

#[repr(C)]
union Payload {
    inline: InlineBytes,
    out: OutOfLine,
}

/// Node flags. The hot ones are tested on every free; the rare ones say that
/// the node has an entry in the heap's side table.
pub(crate) mod flag {
    use super::Flags;

    /// The value lives inside the node.
    pub const INLINE: Flags = 1 << 0;
    /// The node has an entry in the rare table (destructor, name, refs, limit, pool).
    pub const RARE: Flags = 1 << 1;
    /// A destructor is set: in the rare entry with RARE; without RARE, a
    /// function destructor whose index is in the node's `rare` field (NIL
    /// while it runs).
    pub const DESTRUCTOR: Flags = 1 << 2;
    /// References point at this node (implies RARE).
    pub const REFERENCED: Flags = 1 << 3;
    /// This node is a reference handle (implies RARE: its target).
    pub const REF_HANDLE: Flags = 1 << 4;
    /// The value is not `Send`: it may not leave its heap's thread.
    pub const NOT_SEND: Flags = 1 << 5;
    /// The node is a pool (its region id is in its payload).
    pub const POOL: Flags = 1 << 6;
    /// The value was carved from a pool region.
    pub const IN_POOL: Flags = 1 << 7;
    /// The node is being freed (unlinked; its children are going).
    pub const FREEING: Flags = 1 << 8;
    /// Its destructor is running.
    pub const IN_DESTRUCTOR: Flags = 1 << 9;
    /// The node is a name chunk made by `set_name`.
    pub const NAME_CHUNK: Flags = 1 << 10;
    /// The node has a custom name (implies RARE).
    pub const NAMED: Flags = 1 << 11;
    /// The node carries a memory limit (implies RARE).
    pub const LIMIT: Flags = 1 << 12;
    /// The node is a plain context (`new_context`).
    pub const CONTEXT: Flags = 1 << 13;
    /// The stored type needs its `Drop` run (copied from its descriptor, so
    /// that a free tells a plain leaf by its flags alone).
    pub const NEEDS_DROP: Flags = 1 << 14;
}

/// A node's flags: sixteen bits, of which fifteen are taken.
pub(crate) type Flags = u16;

/// One slot: the tree links and the value (or where it is), in 64 bytes.
/// The type is a 16-bit index into the heap's [`Types`] table rather than
/// a pointer to its descriptor: that is what brings a node from 72 bytes
/// down to one cache line's worth.
pub(crate) struct Node {
    /// Odd while live; bumped on allocation and on free.
    pub gen: u32,
    pub parent: u32,
    /// Newest child (the head of the child list).
    pub child: u32,
    /// The next newer sibling (towards the head), or NIL.
    pub prev: u32,
    /// The next older sibling, or NIL. Doubles as the free-list link.
    pub next: u32,
    /// Number of elements (bytes including the NUL for strings).
    pub len: u32,
    /// With the RARE flag, the index in the rare table. Without it, the
    /// index of a function destructor (with DESTRUCTOR), or NIL.
    pub rare: u32,
    /// The stored type, an index into the heap's [`Types`].
    pub ty: u16,
    pub flags: Flags,
    payload: Payload,
}

impl Node {
    fn vacant(next: u32) -> Node {
        Node {
            gen: 0,
            flags: 0,
            parent: NIL,
            child: NIL,
            prev: NIL,
            next,
            len: 0,
            rare: NIL,
            ty: 0,
            payload: Payload {
                inline: InlineBytes::UNINIT,
            },
        }
    }

    /// Makes a vacant node live, holding nothing yet (`len` 0, inline),
    /// with no children or newer sibling, under `parent` before `next`
    /// (both NIL for an unlinked node): the caller stores the value next.
    #[inline(always)]
    fn occupy(&mut self, ty: TypeRef, flags: Flags, parent: u32, next: u32) {
        self.gen = self.gen.wrapping_add(1);
        self.flags = flags | ty.flags | flag::INLINE;
        self.parent = parent;
        self.child = NIL;
        self.prev = NIL;
        self.next = next;
        self.len = 0;
        self.rare = NIL;
        self.ty = ty.index;
    }

    /// Makes an unlinked live node vacant, its payload left as it is (the
    /// value is still to be dropped or its range given back). True if the
    /// slot goes on the free list in front of `free`; false if its
    /// generation is about to wrap and it is retired for good (invariant
    /// 5: a handle from its first life must never match again).
    #[inline(always)]
    fn vacate(&mut self, free: u32) -> bool {
        self.gen = self.gen.wrapping_add(1);
        self.flags = 0;
        self.parent = NIL;
        self.child = NIL;
        self.prev = NIL;
        self.len = 0;
        self.rare = NIL;
        let reuse = self.gen < u32::MAX - 1;
        self.next = if reuse { free } else { NIL };
        reuse
    }

    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.gen & 1 == 1
    }

    #[inline]
    pub(crate) fn has(&self, f: Flags) -> bool {
        self.flags & f != 0
    }

    /// The pool region this value was carved from, if any.
    #[inline]
    pub(crate) fn pool_region(&self) -> Option<u32> {
        if self.has(flag::IN_POOL) || self.has(flag::POOL) {
            // SAFETY: IN_POOL and POOL nodes always store `out` (set by
            // `place_in_pool` and `Slots::mark_pool`).
            Some(unsafe { self.payload.out.pool })
        } else {
            None
        }
    }

    /// Where the value is, for reading (and for freeing: raw use only).
    #[inline]
    fn data(&self) -> *mut u8 {
        if self.has(flag::INLINE) {
            // Taking the address of a union field reads no bytes.
            ptr::addr_of!(self.payload.inline) as *mut u8
        } else {
            // SAFETY: a live non-inline node always stores `out` (invariant 1).
            unsafe { self.payload.out.ptr.as_ptr() }
        }
    }

    /// Where the value is, derived from a unique borrow (for writing).
    #[inline]
    fn data_mut(&mut self) -> *mut u8 {
        if self.has(flag::INLINE) {
            ptr::addr_of_mut!(self.payload.inline).cast::<u8>()
        } else {
            // SAFETY: a live non-inline node always stores `out` (invariant 1).
            unsafe { self.payload.out.ptr.as_ptr() }
        }
    }
}

/// The pool regions of a heap: bump-allocated byte ranges whose memory is
/// released when the pool and every object carved from it are gone.
struct Region {
    mem: NonNull<u8>,
    size: usize,
    /// Offset of the first free byte.
    end: usize,
    /// Where `end` goes back to when only the pool itself is left.
    base: usize,
    /// Objects alive in the region, the pool node included.
    count: u32,
    /// Whether the pool node itself is still alive.
    pool_alive: bool,
}

const REGION_ALIGN: usize = 16;

/// Every node of one heap, plus the pool regions.
pub(crate) struct Slots {
    /// The heap these slots belong to: handles must carry it.
    id: HeapId,
    /// Slots that may ever be handed out: `NIL` (the whole index space)
    /// except in tests of a full heap.
    cap: u32,
    /// Slots whose generation ran out (invariant 5).
    retired: u32,
    /// Every slot ever handed out, and no more, in one array (its length
    /// is the high-water mark): a node is one index away (no chunk table
    /// to go through). Growing it may move the nodes, and their inline
    /// values with them, which is fine: nothing keeps a pointer into a
    /// node across a call that can claim a slot, and a value is never
    /// pinned (a value that must not move is kept out of line). glibc grows large arrays with `mremap`, so the peak stays
    /// the live size.
    nodes: Vec<Node>,
    /// Head of the free list (through `Node::next`), or NIL.
    free: u32,
    live: u32,
    /// The types stored in this heap, which nodes name by index.
    types: Types,
    regions: Vec<Option<Region>>,
    free_regions: Vec<u32>,
}

/// Why storage could not be found for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    TooLarge,
    OutOfMemory,
    /// Every slot index is live or retired, or the heap's type table is
    /// full.
    Full,
    /// The node does not hold the type the operation is for.
    WrongKind,
}

#[inline]
fn layout(desc: &TypeDesc, len: usize) -> Result<Layout, StoreError> {
    let size = desc
        .elem_size
        .checked_mul(len)
        .ok_or(StoreError::TooLarge)?;
    if size > u32::MAX as usize {
        return Err(StoreError::TooLarge);
    }
    Layout::from_size_align(size, desc.elem_align).map_err(|_| StoreError::TooLarge)
}

#[inline]
fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

fn alloc_bytes(lay: Layout) -> Result<NonNull<u8>, StoreError> {
    if lay.size() == 0 {
        // A dangling, well-aligned pointer: zero-sized values need no memory.
        return Ok(
            NonNull::new(ptr::without_provenance_mut(lay.align())).expect("align is non-zero")
        );
    }
    // SAFETY: the layout has a non-zero size.
    NonNull::new(unsafe { alloc::alloc(lay) }).ok_or(StoreError::OutOfMemory)
}

/// # Safety
/// `p` must come from `alloc_bytes(lay)` and not be used again.
unsafe fn dealloc_bytes(p: NonNull<u8>, lay: Layout) {
    if lay.size() != 0 {
        // SAFETY: per the caller, `p` was allocated with `lay`.
        unsafe { alloc::dealloc(p.as_ptr(), lay) }
    }
}
