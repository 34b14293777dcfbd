//! The storage layer: slots, payloads and pool regions.
//!
//! This is the only module of the workspace with `unsafe` code. Everything
//! above it works with slot indices and the [`Node`] links; this module owns
//! the bytes. Its invariants, which every `unsafe` block below relies on:
//!
//! 1. A live node (odd generation) holds exactly `len` initialised elements of
//!    the type its `desc` describes, either inline in the node or behind
//!    `Payload::out.ptr` (an allocation of its own, or a range of a pool
//!    region that stays allocated while the node lives).
//! 2. A `Ptr<T>` whose heap id and generation match a live node was minted for
//!    that node by an allocation of `T` (or a checked downcast to `T`), and no
//!    operation changes the type of a live node. So the stored type is `T`.
//! 3. A free node holds no value: its payload bytes are never read.
//! 4. A heap id names one heap for the life of the process: [`HeapId`]s come
//!    from one 64-bit counter that refuses to go on rather than wrap, so a
//!    handle of one heap never matches a slot of another.
//! 5. A slot's generation is never reused: a slot whose generation would
//!    wrap is retired, never handed out again.
//!
//! Invariant 2 is upheld outside this module by every place that mints a
//! typed handle with `Ptr::from_key`: `heap.rs` (allocation, downcasts),
//! `parcel.rs` (attach), `names.rs` (`find_parent_by_type`) and `free.rs`
//! (a destructor gets the handle it was set for). Each mints a `Ptr<T>` only
//! for a node it has just stored a `T` in, or whose type id it checked.
//! Invariants 4 and 5 are upheld here alone: [`Slots::lookup`] is the only
//! check of a handle against a heap.

use std::alloc::{self, Layout};
use std::any::TypeId;
use std::mem::{self, MaybeUninit};
use std::num::NonZeroU64;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ptr::Key;
use crate::Error;

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

/// What the heap knows about a stored type, one static per type.
#[doc(hidden)]
#[derive(Debug)]
pub struct TypeDesc {
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) type_name: fn() -> &'static str,
    pub(crate) elem_size: usize,
    pub(crate) elem_align: usize,
    pub(crate) needs_drop: bool,
    /// Drops `len` elements at the pointer.
    drop: unsafe fn(*mut u8, usize),
    pub(crate) kind: Kind,
}

/// The shape of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One `T`.
    Value,
    /// `len` elements of `T`.
    Slice,
    /// UTF-8 bytes followed by a NUL; `len` counts the NUL as C does.
    Str,
}

impl TypeDesc {
    pub(crate) fn own_size(&self, len: u32) -> usize {
        self.elem_size * len as usize
    }
}

/// A type that can live in a [`Talloc`](crate::Talloc) heap: any `'static`
/// sized type, a slice `[T]` of them, or `str`.
///
/// The trait is sealed: it is implemented for exactly those types.
///
/// ```
/// use talloc::{AnyPtr, Object, Talloc};
/// // Generic code over whatever a heap can hold, slices and `str` included.
/// fn is_a<T: Object + ?Sized>(heap: &Talloc, p: AnyPtr) -> bool {
///     heap.downcast::<T>(p).is_ok()
/// }
/// let mut heap = Talloc::new();
/// let s = heap.strdup(None, "x")?.erase();
/// let v = heap.alloc(None, 7u32)?.erase();
/// assert!(is_a::<str>(&heap, s) && !is_a::<[u8]>(&heap, s));
/// assert!(is_a::<u32>(&heap, v));
/// # Ok::<(), talloc::Error>(())
/// ```
pub trait Object: private::Sealed + 'static {
    #[doc(hidden)]
    fn desc() -> &'static TypeDesc;
    /// The (possibly wide) pointer to the object stored at `data` with `len`
    /// elements. Making it creates no reference: the caller decides between
    /// `&` and `&mut` according to how it got `data`.
    #[doc(hidden)]
    fn from_raw(data: *mut u8, len: u32) -> *mut Self;
}

mod private {
    pub trait Sealed {}
    impl<T: 'static> Sealed for T {}
    impl<T: 'static> Sealed for [T] {}
    impl Sealed for str {}
}

/// Drops one `T` at `p`.
///
/// # Safety
/// `p` points to an initialised `T` that is not used again.
unsafe fn drop_one<T>(p: *mut u8, _len: usize) {
    // SAFETY: the caller guarantees an initialised, unaliased `T`.
    unsafe { ptr::drop_in_place(p.cast::<T>()) }
}

/// Drops `len` elements of `T` at `p`.
///
/// # Safety
/// `p` points to `len` initialised `T`s that are not used again.
unsafe fn drop_many<T>(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `len` initialised, unaliased elements.
    unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(p.cast::<T>(), len)) }
}

/// Bytes need no drop.
unsafe fn drop_nothing(_p: *mut u8, _len: usize) {}

struct DescOf<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: 'static> DescOf<T> {
    const VALUE: TypeDesc = TypeDesc {
        type_id: TypeId::of::<T>,
        type_name: std::any::type_name::<T>,
        elem_size: mem::size_of::<T>(),
        elem_align: mem::align_of::<T>(),
        needs_drop: mem::needs_drop::<T>(),
        drop: drop_one::<T>,
        kind: Kind::Value,
    };
    const SLICE: TypeDesc = TypeDesc {
        type_id: TypeId::of::<[T]>,
        type_name: std::any::type_name::<[T]>,
        elem_size: mem::size_of::<T>(),
        elem_align: mem::align_of::<T>(),
        needs_drop: mem::needs_drop::<T>(),
        drop: drop_many::<T>,
        kind: Kind::Slice,
    };
}

static STR_DESC: TypeDesc = TypeDesc {
    type_id: TypeId::of::<str>,
    type_name: std::any::type_name::<str>,
    elem_size: 1,
    elem_align: 1,
    needs_drop: false,
    drop: drop_nothing,
    kind: Kind::Str,
};

impl<T: 'static> Object for T {
    fn desc() -> &'static TypeDesc {
        &DescOf::<T>::VALUE
    }
    fn from_raw(data: *mut u8, _len: u32) -> *mut T {
        data.cast::<T>()
    }
}

impl<T: 'static> Object for [T] {
    fn desc() -> &'static TypeDesc {
        &DescOf::<T>::SLICE
    }
    fn from_raw(data: *mut u8, len: u32) -> *mut [T] {
        ptr::slice_from_raw_parts_mut(data.cast::<T>(), len as usize)
    }
}

impl Object for str {
    fn desc() -> &'static TypeDesc {
        &STR_DESC
    }
    /// Strings are stored as UTF-8 followed by one NUL byte, which `len`
    /// counts and the `str` leaves out.
    fn from_raw(data: *mut u8, len: u32) -> *mut str {
        ptr::slice_from_raw_parts_mut(data, len as usize - 1) as *mut str
    }
}

/// The descriptor of internal zero-sized markers (contexts, pools, reference
/// handles): their own size is 0 and they hold no value.
pub(crate) fn marker_desc<M: 'static>() -> &'static TypeDesc {
    &DescOf::<M>::VALUE
}

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
    /// The value lives inside the node.
    pub const INLINE: u32 = 1 << 0;
    /// The node has an entry in the rare table (destructor, name, refs, limit, pool).
    pub const RARE: u32 = 1 << 1;
    /// A destructor is set (implies RARE).
    pub const DESTRUCTOR: u32 = 1 << 2;
    /// References point at this node (implies RARE).
    pub const REFERENCED: u32 = 1 << 3;
    /// This node is a reference handle (implies RARE: its target).
    pub const REF_HANDLE: u32 = 1 << 4;
    /// The value is not `Send`: it may not leave its heap's thread.
    pub const NOT_SEND: u32 = 1 << 5;
    /// The node is a pool (its region id is in its payload).
    pub const POOL: u32 = 1 << 6;
    /// The value was carved from a pool region.
    pub const IN_POOL: u32 = 1 << 7;
    /// The node is being freed (unlinked; its children are going).
    pub const FREEING: u32 = 1 << 8;
    /// Its destructor is running.
    pub const IN_DESTRUCTOR: u32 = 1 << 9;
    /// The node is a name chunk made by `set_name`.
    pub const NAME_CHUNK: u32 = 1 << 10;
    /// The node has a custom name (implies RARE).
    pub const NAMED: u32 = 1 << 11;
    /// The node carries a memory limit (implies RARE).
    pub const LIMIT: u32 = 1 << 12;
    /// The node is a plain context (`new_context`).
    pub const CONTEXT: u32 = 1 << 13;
}

/// One slot: the tree links and the value (or where it is).
pub(crate) struct Node {
    /// Odd while live; bumped on allocation and on free.
    pub gen: u32,
    pub flags: u32,
    pub parent: u32,
    /// Newest child (the head of the child list).
    pub child: u32,
    /// The next newer sibling (towards the head), or NIL.
    pub prev: u32,
    /// The next older sibling, or NIL. Doubles as the free-list link.
    pub next: u32,
    /// Number of elements (bytes including the NUL for strings).
    pub len: u32,
    /// Index in the rare table, or NIL.
    pub rare: u32,
    pub desc: &'static TypeDesc,
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
            desc: marker_desc::<()>(),
            payload: Payload {
                inline: InlineBytes::UNINIT,
            },
        }
    }

    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.gen & 1 == 1
    }

    #[inline]
    pub(crate) fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// The own size of the object, as `talloc_get_size` counts it.
    pub(crate) fn own_size(&self) -> usize {
        self.desc.own_size(self.len)
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

impl Region {
    /// The first offset at or after `from` where `lay` fits, if any. The
    /// address is aligned, not the offset: regions are only 16-aligned.
    fn fit_from(&self, from: usize, lay: Layout) -> Option<usize> {
        let base = self.mem.as_ptr() as usize;
        let off = align_up(base + from, lay.align().max(8)) - base;
        let end = off.checked_add(lay.size())?;
        (end <= self.size).then_some(off)
    }

    /// Members other than the pool node itself.
    fn members(&self) -> u32 {
        self.count - u32::from(self.pool_alive)
    }
}

/// Where a pool member that outgrows its granule goes, C's order of
/// preference: C grows a chunk in place when it is the pool's last, slides
/// the pool's only member to the pool's start, carves a new chunk from the
/// same pool, and only then leaves the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolGrow {
    /// Stays where it is, its granule widened (it was the region's last).
    InPlace,
    /// The region's only member: it slides to this offset (its start).
    Slide(usize),
    /// A new range at this offset, the old one left behind.
    Carve(usize),
}

/// Every node of one heap, plus the pool regions.
pub(crate) struct Slots {
    /// The heap these slots belong to: handles must carry it.
    id: HeapId,
    /// Slots that may ever be handed out: `NIL` (the whole index space)
    /// except in tests of a full heap.
    cap: u32,
    /// Slots whose generation ran out (invariant 5).
    retired: u32,
    /// Every slot ever handed out, in one array: a node is one index away
    /// (no chunk table to go through). Growing it may move the nodes, and
    /// their inline values with them, which is fine: nothing keeps a
    /// pointer into a node across a call that can claim a slot, and a
    /// value is never pinned (a value that must not move is kept out of
    /// line). glibc grows large arrays with `mremap`, so the peak stays
    /// the live size.
    nodes: Vec<Node>,
    /// Head of the free list (through `Node::next`), or NIL.
    free: u32,
    /// Number of slots ever handed out (the high-water mark).
    high: u32,
    live: u32,
    regions: Vec<Option<Region>>,
    free_regions: Vec<u32>,
}

/// Why storage could not be found for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    TooLarge,
    OutOfMemory,
    /// Every slot index is live or retired.
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

fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

/// Pool members take whole granules of this many bytes (clipped at the end
/// of the region), as C's pool chunks do: a member can grow within its
/// granule without moving.
const GRANULE: usize = 16;

/// The bytes a member of `size` bytes at `off` takes in a region of
/// `region_size` bytes (`off + size <= region_size`).
fn granule(off: usize, size: usize, region_size: usize) -> usize {
    align_up(size, GRANULE).min(region_size - off)
}

impl Slots {
    pub(crate) fn new(id: HeapId) -> Slots {
        Slots {
            id,
            cap: NIL,
            retired: 0,
            nodes: Vec::new(),
            free: NIL,
            high: 0,
            live: 0,
            regions: Vec::new(),
            free_regions: Vec::new(),
        }
    }

    /// Number of live nodes.
    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    /// The heap these slots belong to.
    pub(crate) fn id(&self) -> HeapId {
        self.id
    }

    /// The handle of a live slot.
    #[inline(always)]
    pub(crate) fn key(&self, slot: u32) -> Key {
        Key {
            heap: self.id,
            slot,
            gen: self.node(slot).gen,
        }
    }

    /// The slot a handle names, if it is this heap's and still live
    /// (invariants 4 and 5 make the match exact).
    #[inline(always)]
    pub(crate) fn lookup(&self, key: Key) -> Result<u32, Error> {
        if key.heap != self.id {
            return Err(Error::ForeignHeap);
        }
        match self.get(key.slot) {
            Some(n) if n.gen == key.gen => Ok(key.slot),
            _ => Err(Error::Stale),
        }
    }

    /// The value a typed handle names.
    #[inline]
    pub(crate) fn value_of<T: Object + ?Sized>(&self, key: Key) -> Result<&T, Error> {
        let slot = self.lookup(key)?;
        debug_assert!(self.holds::<T>(slot), "a Ptr<T> names a T (invariant 2)");
        // SAFETY: the key matches a live node of this heap, and a typed
        // handle's node holds a `T` (invariant 2).
        Ok(unsafe { self.value::<T>(slot) })
    }

    /// The value a typed handle names, mutably.
    #[inline]
    pub(crate) fn value_of_mut<T: Object + ?Sized>(&mut self, key: Key) -> Result<&mut T, Error> {
        let slot = self.lookup(key)?;
        debug_assert!(self.holds::<T>(slot), "a Ptr<T> names a T (invariant 2)");
        // SAFETY: as in `value_of`; `&mut self` makes the borrow unique.
        Ok(unsafe { self.value_mut::<T>(slot) })
    }

    /// Whether a live node's stored type is `T`.
    pub(crate) fn holds<T: Object + ?Sized>(&self, slot: u32) -> bool {
        (self.node(slot).desc.type_id)() == TypeId::of::<T>()
    }

    /// Lowers the number of slots the heap may hand out, so that tests can
    /// fill a heap.
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.cap = cap.max(self.high);
    }

    /// How many more nodes the heap can hold.
    pub(crate) fn vacancies(&self) -> u32 {
        self.cap - self.live - self.retired
    }

    /// `Ok` if a slot can be claimed.
    #[inline(always)]
    fn vacancy(&self) -> Result<(), StoreError> {
        if self.free != NIL || self.high < self.cap {
            Ok(())
        } else {
            Err(StoreError::Full)
        }
    }

    /// Number of slots ever handed out: every live slot is below it.
    pub(crate) fn high(&self) -> u32 {
        self.high
    }

    #[inline(always)]
    pub(crate) fn node(&self, slot: u32) -> &Node {
        &self.nodes[slot as usize]
    }

    #[inline(always)]
    pub(crate) fn node_mut(&mut self, slot: u32) -> &mut Node {
        &mut self.nodes[slot as usize]
    }

    /// The node at `slot` if the slot was ever handed out.
    #[inline(always)]
    pub(crate) fn get(&self, slot: u32) -> Option<&Node> {
        if slot < self.high {
            Some(self.node(slot))
        } else {
            None
        }
    }

    /// Adds a vacant node at the end.
    #[cold]
    fn grow(&mut self) {
        self.nodes.push(Node::vacant(NIL));
    }

    /// Takes a vacant slot and makes it a live, unlinked node holding nothing
    /// yet (`len` 0, inline): the caller stores the value next. The caller
    /// has checked [`vacancy`](Self::vacancy) before changing anything.
    #[inline(always)]
    fn claim(&mut self, desc: &'static TypeDesc, flags: u32) -> u32 {
        let slot = if self.free != NIL {
            self.free
        } else {
            let slot = self.high;
            debug_assert!(slot < self.cap, "claim without a vacancy");
            if slot as usize == self.nodes.len() {
                self.grow();
            }
            self.high += 1;
            // A fresh vacant node's `next` is NIL: the free list stays empty.
            slot
        };
        self.live += 1;
        let n = self.node_mut(slot);
        // Pop the free list (for a fresh node this keeps it empty).
        let next = n.next;
        n.gen = n.gen.wrapping_add(1);
        n.flags = flags | flag::INLINE;
        n.parent = NIL;
        n.child = NIL;
        n.prev = NIL;
        n.next = NIL;
        n.len = 0;
        n.rare = NIL;
        n.desc = desc;
        self.free = next;
        slot
    }

    /// Stores `value` in a new unlinked node and returns its slot. With
    /// `pool`, a value that does not fit inline is carved from that region if
    /// it fits there.
    pub(crate) fn insert<T: 'static>(
        &mut self,
        value: T,
        flags: u32,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        let desc = <T as Object>::desc();
        let data = self.reserve(desc, 1, pool, flags)?;
        // SAFETY: `reserve` returned room for one `T` in the node's storage.
        unsafe { data.1.cast::<T>().write(value) };
        self.node_mut(data.0).len = 1;
        Ok(data.0)
    }

    /// Stores `len` elements produced by `fill` (called with each index in
    /// order) as a slice object.
    pub(crate) fn insert_slice<T: 'static>(
        &mut self,
        len: usize,
        flags: u32,
        pool: Option<u32>,
        mut fill: impl FnMut(usize) -> T,
    ) -> Result<u32, StoreError> {
        let desc = <[T] as Object>::desc();
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let (slot, _) = self.reserve(desc, len, pool, flags)?;
        // Both the element pointer and the length come from one borrow of
        // the node: a fresh `&mut Node` would invalidate an inline pointer.
        let n = self.node_mut(slot);
        let base = n.data_mut().cast::<T>();
        // The guard counts initialised elements as we go and stores the count
        // in the node when it is dropped, also when `fill` panics: the node is
        // then consistent and `free` drops exactly what was written. Keeping
        // the count in a local lets the loop compile to a plain store loop
        // (a `memset` for `zeroed`).
        struct SetLen<'a> {
            len: &'a mut u32,
            done: u32,
        }
        impl Drop for SetLen<'_> {
            fn drop(&mut self) {
                *self.len = self.done;
            }
        }
        let mut guard = SetLen {
            len: &mut n.len,
            done: 0,
        };
        for i in 0..len {
            let v = fill(i);
            // SAFETY: `reserve` returned room for `len` elements; `i < len`.
            unsafe { base.add(i).write(v) };
            guard.done = i as u32 + 1;
        }
        debug_assert_eq!(guard.done, len32);
        drop(guard);
        Ok(slot)
    }

    /// Stores `len` zero bytes as a `[u8]` object.
    #[inline]
    pub(crate) fn insert_zeroed(
        &mut self,
        len: usize,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let (slot, data) = self.reserve(<[u8] as Object>::desc(), len, pool, 0)?;
        let n = self.node_mut(slot);
        if n.has(flag::INLINE) {
            // Zero the whole inline area: a fixed-size store, no `memset` call.
            n.payload.inline = InlineBytes::ZERO;
        } else {
            // SAFETY: `reserve` returned room for `len` bytes at `data`.
            unsafe { ptr::write_bytes(data, 0, len) };
        }
        n.len = len32;
        Ok(slot)
    }

    /// Stores a string (its bytes plus a NUL).
    pub(crate) fn insert_str(
        &mut self,
        s: &str,
        flags: u32,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        let len = s.len().checked_add(1).ok_or(StoreError::TooLarge)?;
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let (slot, data) = self.reserve(&STR_DESC, len, pool, flags)?;
        // SAFETY: `reserve` returned room for `len = s.len() + 1` bytes.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), data, s.len());
            data.add(s.len()).write(0);
        }
        self.node_mut(slot).len = len32;
        Ok(slot)
    }

    /// A node with no value (contexts, pools, reference handles). Under a
    /// pool it is a member of the region (taking no bytes), so that its own
    /// children are carved from the pool too, as in C.
    pub(crate) fn insert_marker(
        &mut self,
        desc: &'static TypeDesc,
        flags: u32,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        self.vacancy()?;
        let slot = self.claim(desc, flags);
        self.node_mut(slot).len = 1;
        if let Some(r) =
            pool.and_then(|p| self.regions.get_mut(p as usize)?.as_mut().map(|r| (p, r)))
        {
            let (region, r) = r;
            r.count += 1;
            // SAFETY: `end <= size`, so the address is inside the region or
            // one past its end; no bytes are used.
            let ptr = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(r.end)) };
            let n = self.node_mut(slot);
            n.flags = (n.flags | flag::IN_POOL) & !flag::INLINE;
            n.payload.out = OutOfLine {
                ptr,
                pool: region,
                cap: 0,
            };
        }
        Ok(slot)
    }

    /// Claims a slot and room for `len` elements; returns the slot and where
    /// the elements go.
    #[inline]
    fn reserve(
        &mut self,
        desc: &'static TypeDesc,
        len: usize,
        pool: Option<u32>,
        flags: u32,
    ) -> Result<(u32, *mut u8), StoreError> {
        self.vacancy()?;
        // The common cases first, inlined: a small value outside pools, or
        // a value that fits in its pool.
        if desc.elem_align <= 8 {
            if let Some(size) = desc.elem_size.checked_mul(len) {
                match pool {
                    None if size <= INLINE_BYTES => {
                        let slot = self.claim(desc, flags);
                        let data = self.node_mut(slot).data_mut();
                        return Ok((slot, data));
                    }
                    Some(region) if size <= u32::MAX as usize => {
                        if let Some(found) = self.reserve_in_pool(desc, size, region, flags) {
                            return Ok(found);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.reserve_slow(desc, len, pool, flags)
    }

    /// Carves `size` bytes (alignment at most 8) from a region and claims a
    /// node for them; `None` if they do not fit.
    #[inline]
    fn reserve_in_pool(
        &mut self,
        desc: &'static TypeDesc,
        size: usize,
        region: u32,
        flags: u32,
    ) -> Option<(u32, *mut u8)> {
        let r = self.regions.get_mut(region as usize)?.as_mut()?;
        // Regions are 16-aligned, so aligning the offset to 8 aligns the
        // address.
        let off = align_up(r.end, 8);
        if off > r.size || size > r.size - off {
            return None;
        }
        let cap = granule(off, size, r.size);
        r.end = off + cap;
        r.count += 1;
        // SAFETY: `off + size <= r.size`: the range lies inside the region's
        // allocation.
        let p = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(off)) };
        let slot = self.claim(desc, flags | flag::IN_POOL);
        let n = self.node_mut(slot);
        n.flags &= !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr: p,
            pool: region,
            cap: cap as u32,
        };
        Some((slot, p.as_ptr()))
    }

    /// [`reserve`](Self::reserve) for pools and values that do not fit inline.
    #[inline(never)]
    fn reserve_slow(
        &mut self,
        desc: &'static TypeDesc,
        len: usize,
        pool: Option<u32>,
        flags: u32,
    ) -> Result<(u32, *mut u8), StoreError> {
        let lay = layout(desc, len)?;
        if lay.size() <= INLINE_BYTES && lay.align() <= 8 && pool.is_none() {
            let slot = self.claim(desc, flags);
            let data = self.node_mut(slot).data_mut();
            return Ok((slot, data));
        }
        if let Some(region) = pool {
            if let Some((off, cap)) = self.carve(region, lay) {
                let slot = self.claim(desc, flags | flag::IN_POOL);
                let r = self.regions[region as usize].as_mut().expect("live region");
                r.count += 1;
                // SAFETY: `carve` returned an offset with `lay.size()` bytes
                // inside the region's allocation.
                let p = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(off)) };
                let n = self.node_mut(slot);
                n.flags &= !flag::INLINE;
                n.payload.out = OutOfLine {
                    ptr: p,
                    pool: region,
                    cap: cap as u32,
                };
                return Ok((slot, p.as_ptr()));
            }
            if lay.size() <= INLINE_BYTES && lay.align() <= 8 {
                // Did not fit in the pool: an ordinary inline value, as C
                // falls back to malloc.
                let slot = self.claim(desc, flags);
                let data = self.node_mut(slot).data_mut();
                return Ok((slot, data));
            }
        }
        let p = alloc_bytes(lay)?;
        let slot = self.claim(desc, flags);
        let n = self.node_mut(slot);
        n.flags &= !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr: p,
            pool: NIL,
            cap: lay.size() as u32,
        };
        Ok((slot, p.as_ptr()))
    }

    /// Takes a range for `lay` at the region's end, if it fits: its offset
    /// and the bytes it takes (a whole granule).
    #[inline]
    fn carve(&mut self, region: u32, lay: Layout) -> Option<(usize, usize)> {
        let r = self.regions.get_mut(region as usize)?.as_mut()?;
        let off = r.fit_from(r.end, lay)?;
        let cap = granule(off, lay.size(), r.size);
        r.end = off + cap;
        Some((off, cap))
    }

    /// Makes a new pool region of `size` bytes and returns its id.
    pub(crate) fn new_region(&mut self, size: usize) -> Result<u32, StoreError> {
        let lay =
            Layout::from_size_align(size.max(1), REGION_ALIGN).map_err(|_| StoreError::TooLarge)?;
        let mem = alloc_bytes(lay)?;
        let region = Region {
            mem,
            size,
            end: 0,
            base: 0,
            count: 1,
            pool_alive: true,
        };
        Ok(match self.free_regions.pop() {
            Some(id) => {
                self.regions[id as usize] = Some(region);
                id
            }
            None => {
                self.regions.push(Some(region));
                (self.regions.len() - 1) as u32
            }
        })
    }

    /// Turns a freshly inserted marker node into the pool node of `region`.
    pub(crate) fn mark_pool(&mut self, slot: u32, region: u32) {
        let r = self.regions[region as usize].as_ref().expect("live region");
        let mem = r.mem;
        let n = self.node_mut(slot);
        n.flags = (n.flags | flag::POOL) & !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr: mem,
            pool: region,
            cap: 0,
        };
    }

    /// Stores `value` as the body of a pooled object: carved first from a new
    /// region of `extra` more bytes, the node being the pool itself.
    pub(crate) fn insert_pooled<T: 'static>(
        &mut self,
        value: T,
        flags: u32,
        extra: usize,
    ) -> Result<u32, StoreError> {
        self.vacancy()?;
        let desc = <T as Object>::desc();
        let lay = layout(desc, 1)?;
        let size = align_up(lay.size(), 16)
            .checked_add(extra)
            .ok_or(StoreError::TooLarge)?;
        if lay.align() > REGION_ALIGN {
            return Err(StoreError::TooLarge);
        }
        let region = self.new_region(size)?;
        let (off, _) = self.carve(region, lay).expect("region sized for the body");
        let r = self.regions[region as usize].as_mut().expect("live region");
        r.base = r.end;
        // SAFETY: offset 0 of a region of at least `lay.size()` bytes.
        let p = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(off)) };
        // SAFETY: `p` is aligned for `T` (regions are 16-aligned, align <= 16)
        // and has room for one `T`.
        unsafe { p.as_ptr().cast::<T>().write(value) };
        let slot = self.claim(desc, flags | flag::POOL);
        let n = self.node_mut(slot);
        n.flags &= !flag::INLINE;
        n.len = 1;
        n.payload.out = OutOfLine {
            ptr: p,
            pool: region,
            cap: lay.size() as u32,
        };
        Ok(slot)
    }

    /// Bytes of a region: (size, used).
    pub(crate) fn region_usage(&self, region: u32) -> Option<(usize, usize, u32)> {
        let r = self.regions.get(region as usize)?.as_ref()?;
        Some((r.size, r.end, r.count))
    }

    /// Number of live pool regions.
    pub(crate) fn live_regions(&self) -> usize {
        self.regions.iter().filter(|r| r.is_some()).count()
    }

    /// Drops the value of a live node, releases its storage and makes the
    /// slot vacant. The node must already be unlinked. Returns a panic raised
    /// by the value's `Drop`, which the caller resumes once the heap is
    /// consistent again.
    #[inline(always)]
    pub(crate) fn release(&mut self, slot: u32) -> Option<Box<dyn std::any::Any + Send>> {
        let free = self.free;
        self.live -= 1;
        let n = self.node_mut(slot);
        let (desc, len, flags) = (n.desc, n.len, n.flags);
        // Vacate first, so the heap is consistent even if the drop panics.
        // The payload is left as it is: `release_value` still reads it.
        n.gen = n.gen.wrapping_add(1);
        n.flags = 0;
        n.parent = NIL;
        n.child = NIL;
        n.prev = NIL;
        n.len = 0;
        n.rare = NIL;
        // A generation about to wrap retires the slot for good: a handle
        // from its first life must never match again.
        let reuse = n.gen < u32::MAX - 1;
        n.next = if reuse { free } else { NIL };
        if reuse {
            self.free = slot;
        } else {
            self.retired += 1;
        }
        if !desc.needs_drop {
            if flags & flag::INLINE != 0 {
                return None;
            }
            if flags & flag::IN_POOL != 0 {
                self.release_pooled(slot);
                return None;
            }
        }
        self.release_value(slot, desc, len as usize, flags)
    }

    /// Gives a released pool member's bytes back to its region (a value that
    /// needs no drop).
    #[inline(never)]
    fn release_pooled(&mut self, slot: u32) {
        // SAFETY: an IN_POOL node stores `out` (set by `reserve`); vacating
        // did not touch the payload.
        let out = unsafe { self.node(slot).payload.out };
        self.region_put(out.pool, out.ptr.as_ptr(), out.cap as usize);
    }

    /// Drops a released node's value and gives its storage back. The node is
    /// already vacant; its payload still says where the value is.
    #[inline(never)]
    fn release_value(
        &mut self,
        slot: u32,
        desc: &'static TypeDesc,
        len: usize,
        flags: u32,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        // The pointer comes from a unique borrow: the drop writes through it.
        let n = self.node_mut(slot);
        let (data, out) = if flags & flag::INLINE != 0 {
            (ptr::addr_of_mut!(n.payload.inline).cast::<u8>(), None)
        } else {
            // SAFETY: the node was live and not inline, so it stores `out`
            // (invariant 1); vacating did not touch the payload.
            let out = unsafe { n.payload.out };
            (out.ptr.as_ptr(), Some(out))
        };
        let mut panic = None;
        if desc.needs_drop && len > 0 {
            let drop = desc.drop;
            // SAFETY: the node held `len` initialised elements (invariant 1);
            // it is now vacant, so nothing reads them again.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                drop(data, len)
            }));
            panic = r.err();
        }
        match out {
            Some(out) if flags & (flag::IN_POOL | flag::POOL) != 0 => {
                if flags & flag::POOL != 0 {
                    if let Some(r) = self.regions[out.pool as usize].as_mut() {
                        r.pool_alive = false;
                    }
                }
                self.region_put(out.pool, data, out.cap as usize)
            }
            Some(out) => {
                let lay = Layout::from_size_align(out.cap as usize, desc.elem_align)
                    .expect("layout was valid when allocated");
                // SAFETY: `data` came from `alloc_bytes(lay)` with this layout.
                unsafe { dealloc_bytes(NonNull::new_unchecked(data), lay) };
            }
            None => {}
        }
        panic
    }

    /// One object of a region is gone.
    #[inline]
    fn region_put(&mut self, region: u32, data: *mut u8, size: usize) {
        let r = self.regions[region as usize].as_mut().expect("live region");
        r.count -= 1;
        let off = data as usize - r.mem.as_ptr() as usize;
        if off + size == r.end && off >= r.base {
            r.end = off;
        }
        if r.count == 1 && r.pool_alive {
            // Only the pool itself is left: all of the region is free again.
            r.end = r.base;
        }
        if r.count == 0 {
            self.drop_region(region);
        }
    }

    /// Gives a region's memory back (its pool and last object are gone).
    #[cold]
    fn drop_region(&mut self, region: u32) {
        let r = self.regions[region as usize].take().expect("live region");
        let lay = Layout::from_size_align(r.size.max(1), REGION_ALIGN).expect("valid");
        // SAFETY: `mem` came from `alloc_bytes` with this layout.
        unsafe { dealloc_bytes(r.mem, lay) };
        self.free_regions.push(region);
    }

    /// A shared reference to the value of a live node.
    ///
    /// # Safety
    /// The node must be live and hold a `T` (invariant 2: the caller checked
    /// the handle's generation, or the descriptor's type id).
    unsafe fn value<T: Object + ?Sized>(&self, slot: u32) -> &T {
        let n = self.node(slot);
        // SAFETY: per the caller, the node holds a `T` with `len` elements.
        unsafe { &*T::from_raw(n.data(), n.len) }
    }

    /// A mutable reference to the value of a live node.
    ///
    /// # Safety
    /// As for [`Slots::value`].
    unsafe fn value_mut<T: Object + ?Sized>(&mut self, slot: u32) -> &mut T {
        let n = self.node_mut(slot);
        let len = n.len;
        // SAFETY: per the caller, the node holds a `T`; the pointer comes
        // from `&mut self`, which makes the reference unique.
        unsafe { &mut *T::from_raw(n.data_mut(), len) }
    }

    /// The text of a live string node (without its NUL), or `None` for any
    /// other kind of node.
    pub(crate) fn str_text(&self, slot: u32) -> Option<&str> {
        let n = self.node(slot);
        if n.desc.kind != Kind::Str {
            return None;
        }
        // SAFETY: string nodes hold valid UTF-8 plus a NUL (invariant 1 and
        // `Object for str`), borrowed with `&self`.
        Some(unsafe { &*<str as Object>::from_raw(n.data(), n.len) })
    }

    /// Resizes a live `[T]` node to `new_len` elements, keeping the first
    /// `min(len, new_len)`. Elements past the old length are made by `fill`;
    /// elements past the new length are dropped. The node stays where it is
    /// in the tree; it may leave its pool (returns the region it left).
    pub(crate) fn resize<T: 'static>(
        &mut self,
        slot: u32,
        new_len: usize,
        fill: impl FnMut(usize) -> T,
    ) -> Result<Option<u32>, StoreError> {
        let n = self.node(slot);
        if !n.is_live() || n.desc.kind != Kind::Slice || !self.holds::<[T]>(slot) {
            return Err(StoreError::WrongKind);
        }
        // SAFETY: the node is live and holds a `[T]`, checked just above.
        unsafe { self.resize_unchecked(slot, new_len, fill) }
    }

    /// [`resize`](Self::resize) without the type check.
    ///
    /// # Safety
    /// The node must be live and hold a `[T]` (or `str` with `T = u8`, whose
    /// caller keeps the bytes UTF-8 and NUL-terminated).
    unsafe fn resize_unchecked<T: 'static>(
        &mut self,
        slot: u32,
        new_len: usize,
        mut fill: impl FnMut(usize) -> T,
    ) -> Result<Option<u32>, StoreError> {
        let desc = self.node(slot).desc;
        let old_len = self.node(slot).len as usize;
        let new_len32 = u32::try_from(new_len).map_err(|_| StoreError::TooLarge)?;
        let new_lay = layout(desc, new_len)?;
        let cap = self.capacity(slot);
        let mut left = None;
        if new_len < old_len {
            // Drop the tail first; the node then holds `new_len` elements.
            let n = self.node_mut(slot);
            let data = n.data_mut().cast::<T>();
            n.len = new_len32;
            // SAFETY: elements new_len..old_len are initialised and no longer
            // counted by the node.
            unsafe {
                ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                    data.add(new_len),
                    old_len - new_len,
                ))
            };
            self.pool_shrink(slot, new_lay.size());
            return Ok(None);
        }
        let plan = if new_lay.size() > cap {
            self.pool_grow(slot, new_lay.size())
        } else {
            None
        };
        if let Some(plan) = plan {
            self.pool_move(slot, plan, new_lay.size(), desc.elem_size * old_len);
        } else if new_lay.size() > cap {
            // Move to a bigger home: grow geometrically, always off-pool.
            let want = new_lay
                .size()
                .max(cap.saturating_mul(2))
                .min(u32::MAX as usize);
            let lay =
                Layout::from_size_align(want, desc.elem_align).map_err(|_| StoreError::TooLarge)?;
            let p = alloc_bytes(lay)?;
            let old = self.node_mut(slot).data_mut();
            // SAFETY: both ranges hold at least `old_len` elements and are
            // distinct allocations; this is a move of the elements.
            unsafe { ptr::copy_nonoverlapping(old, p.as_ptr(), desc.elem_size * old_len) };
            let was_inline = self.node(slot).has(flag::INLINE);
            let region = self.node(slot).pool_region();
            if !was_inline {
                match region {
                    Some(region) => {
                        self.region_put(region, old, cap);
                        left = Some(region);
                    }
                    None => {
                        let old_lay = Layout::from_size_align(cap, desc.elem_align)
                            .expect("valid when allocated");
                        // SAFETY: `old` came from `alloc_bytes(old_lay)`.
                        unsafe { dealloc_bytes(NonNull::new_unchecked(old), old_lay) };
                    }
                }
            }
            let n = self.node_mut(slot);
            n.flags &= !(flag::INLINE | flag::IN_POOL);
            n.payload.out = OutOfLine {
                ptr: p,
                pool: NIL,
                cap: want as u32,
            };
        }
        // One borrow of the node for the pointer and the length (as in
        // `insert_slice`); the length follows each write, so a panicking
        // `fill` leaves the node consistent.
        let n = self.node_mut(slot);
        let data = n.data_mut().cast::<T>();
        for i in old_len..new_len {
            let v = fill(i);
            // SAFETY: capacity holds `new_len` elements; `i < new_len`.
            unsafe { data.add(i).write(v) };
            n.len = i as u32 + 1;
        }
        n.len = new_len32;
        Ok(left)
    }

    /// Where a pool member growing to `new_size` bytes would go inside its
    /// pool, or `None` if it is no pool member or must leave its pool.
    fn pool_grow(&self, slot: u32, new_size: usize) -> Option<PoolGrow> {
        let n = self.node(slot);
        if !n.has(flag::IN_POOL) {
            return None;
        }
        // SAFETY: IN_POOL nodes store `out` (set by `reserve`).
        let out = unsafe { n.payload.out };
        let r = self.regions.get(out.pool as usize)?.as_ref()?;
        let lay = Layout::from_size_align(new_size, n.desc.elem_align).ok()?;
        let off = out.ptr.as_ptr() as usize - r.mem.as_ptr() as usize;
        if r.members() == 1 {
            if let Some(start) = r.fit_from(r.base, lay) {
                return Some(PoolGrow::Slide(start));
            }
        }
        if off + out.cap as usize == r.end && off + new_size <= r.size {
            return Some(PoolGrow::InPlace);
        }
        r.fit_from(r.end, lay).map(PoolGrow::Carve)
    }

    /// Whether a live node resized to `new_size` bytes keeps (or, being in
    /// no pool, has) no pool: true when it stays inside its pool region.
    pub(crate) fn stays_in_pool(&self, slot: u32, new_size: usize) -> bool {
        self.node(slot).has(flag::IN_POOL)
            && (new_size <= self.capacity(slot) || self.pool_grow(slot, new_size).is_some())
    }

    /// Moves or widens a pool member's range as `plan` says, for `new_size`
    /// bytes, keeping its first `keep` bytes.
    fn pool_move(&mut self, slot: u32, plan: PoolGrow, new_size: usize, keep: usize) {
        // SAFETY: only IN_POOL nodes get a plan (see `pool_grow`).
        let out = unsafe { self.node(slot).payload.out };
        let r = self.regions[out.pool as usize]
            .as_mut()
            .expect("live region");
        let old = out.ptr.as_ptr();
        let off = match plan {
            PoolGrow::InPlace => old as usize - r.mem.as_ptr() as usize,
            PoolGrow::Slide(off) | PoolGrow::Carve(off) => off,
        };
        let cap = granule(off, new_size, r.size);
        r.end = off + cap;
        // SAFETY: `pool_grow` checked that `off + new_size <= r.size`.
        let new = unsafe { r.mem.as_ptr().add(off) };
        if new != old {
            // SAFETY: both ranges lie in the region and hold `keep` bytes; a
            // slide may overlap the old range, so this is a `memmove`.
            unsafe { ptr::copy(old, new, keep) };
        }
        let n = self.node_mut(slot);
        n.payload.out = OutOfLine {
            // SAFETY: an offset into the region's non-null allocation.
            ptr: unsafe { NonNull::new_unchecked(new) },
            pool: out.pool,
            cap: cap as u32,
        };
    }

    /// A shrunk pool member that is its region's last gives the tail of its
    /// range back, as C rewinds the pool's end.
    fn pool_shrink(&mut self, slot: u32, new_size: usize) {
        if !self.node(slot).has(flag::IN_POOL) {
            return;
        }
        // SAFETY: IN_POOL nodes store `out` (set by `reserve`).
        let out = unsafe { self.node(slot).payload.out };
        let Some(r) = self.regions[out.pool as usize].as_mut() else {
            return;
        };
        let off = out.ptr.as_ptr() as usize - r.mem.as_ptr() as usize;
        if off + out.cap as usize != r.end {
            return;
        }
        let cap = granule(off, new_size, r.size);
        r.end = off + cap;
        self.node_mut(slot).payload.out.cap = cap as u32;
    }

    /// Bytes available for the value without moving it.
    pub(crate) fn capacity(&self, slot: u32) -> usize {
        let n = self.node(slot);
        if n.has(flag::INLINE) {
            INLINE_BYTES
        } else {
            // SAFETY: non-inline live nodes store `out` (invariant 1).
            unsafe { n.payload.out.cap as usize }
        }
    }

    /// Appends bytes to a live string node (before its NUL).
    pub(crate) fn str_append(&mut self, slot: u32, extra: &str) -> Result<Option<u32>, StoreError> {
        let n = self.node(slot);
        if !n.is_live() || n.desc.kind != Kind::Str {
            return Err(StoreError::WrongKind);
        }
        let old_len = self.node(slot).len as usize; // includes the NUL
        let new_len = old_len
            .checked_add(extra.len())
            .ok_or(StoreError::TooLarge)?;
        // SAFETY: the node is a live string (checked above), which holds
        // `len` bytes; the NUL at old_len-1 is overwritten below, the new
        // tail filled with `extra` and a NUL.
        let left = unsafe { self.resize_unchecked::<u8>(slot, new_len, |_| 0)? };
        let data = self.node_mut(slot).data_mut();
        // SAFETY: the node now holds `new_len` bytes; we write the range
        // [old_len-1, new_len) which is inside it.
        unsafe {
            ptr::copy_nonoverlapping(extra.as_ptr(), data.add(old_len - 1), extra.len());
            data.add(new_len - 1).write(0);
        }
        Ok(left)
    }

    /// Drops every live value and releases all storage (the heap is going).
    /// Returns the first panic raised by a `Drop`.
    pub(crate) fn clear(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut first = None;
        for slot in 0..self.high {
            if self.node(slot).is_live() {
                let p = self.release(slot);
                if first.is_none() {
                    first = p;
                }
            }
        }
        first
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // Values are dropped by `Talloc`'s own Drop through `clear`; this
        // catches what is left (for example after a panic) and the regions.
        let _ = self.clear();
        for r in self.regions.drain(..).flatten() {
            let lay = Layout::from_size_align(r.size.max(1), REGION_ALIGN).expect("valid");
            // SAFETY: `mem` came from `alloc_bytes` with this layout, and no
            // node refers to it any more (all were released above).
            unsafe { dealloc_bytes(r.mem, lay) };
        }
    }
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

/// A value taken out of its heap with its storage, on its way to another
/// heap (see `Parcel`). It owns the value: dropping it drops the value.
pub(crate) struct Detached {
    desc: &'static TypeDesc,
    len: u32,
    store: DetachedStore,
}

enum DetachedStore {
    /// The value's bytes, copied out of the node (a Rust move). They stay
    /// 8-aligned wherever the `Detached` is moved (see [`InlineBytes`]).
    Inline(InlineBytes),
    /// The value's own allocation, handed over as is.
    Heap { ptr: NonNull<u8>, cap: u32 },
}

// SAFETY: a `Detached` is only made (by `Slots::detach_value`) from nodes
// without the NOT_SEND flag, i.e. values allocated through `T: Send` APIs,
// and it owns its value and storage exclusively.
unsafe impl Send for Detached {}

impl Detached {
    /// A placeholder holding nothing (dropping it does nothing).
    pub(crate) fn empty() -> Detached {
        Detached {
            desc: marker_desc::<()>(),
            len: 0,
            store: DetachedStore::Inline(InlineBytes::UNINIT),
        }
    }

    fn data(&mut self) -> *mut u8 {
        match &mut self.store {
            DetachedStore::Inline(b) => b.as_mut_ptr(),
            DetachedStore::Heap { ptr, .. } => ptr.as_ptr(),
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let (desc, len) = (self.desc, self.len as usize);
        let data = self.data();
        if desc.needs_drop && len > 0 {
            // SAFETY: a Detached owns `len` initialised elements at `data`,
            // and nothing else refers to them.
            unsafe { (desc.drop)(data, len) };
        }
        if let DetachedStore::Heap { ptr, cap } = self.store {
            let lay = Layout::from_size_align(cap as usize, desc.elem_align).expect("valid");
            // SAFETY: the allocation came from `alloc_bytes` with this layout
            // (it was the node's own `out` storage).
            unsafe { dealloc_bytes(ptr, lay) };
        }
    }
}

impl Slots {
    /// Moves a live node's value out (without dropping it) and makes the
    /// slot vacant. The node must be unlinked, childless in the tree sense
    /// (the caller handles links) and not in a pool.
    pub(crate) fn detach_value(&mut self, slot: u32) -> Detached {
        let n = self.node(slot);
        debug_assert!(n.pool_region().is_none(), "pool members are never detached");
        let (desc, len) = (n.desc, n.len);
        let store = if n.has(flag::INLINE) {
            // SAFETY: reading the inline bytes of a live inline node: they
            // hold the value (invariant 1); after the copy the slot is
            // vacated, so the value has exactly one owner (a Rust move).
            DetachedStore::Inline(unsafe { n.payload.inline })
        } else {
            // SAFETY: non-inline live nodes store `out` (invariant 1).
            let out = unsafe { n.payload.out };
            DetachedStore::Heap {
                ptr: out.ptr,
                cap: out.cap,
            }
        };
        // Vacate without dropping: the value now belongs to the Detached.
        let n = self.node_mut(slot);
        n.len = 0;
        n.flags = flag::INLINE;
        let _ = self.release(slot);
        Detached { desc, len, store }
    }

    /// Makes a new unlinked node holding a detached value. The caller has
    /// checked that there are enough [`vacancies`](Self::vacancies).
    pub(crate) fn attach_value(&mut self, d: Detached, flags: u32) -> u32 {
        debug_assert!(self.vacancy().is_ok());
        let d = mem::ManuallyDrop::new(d);
        let slot = self.claim(d.desc, flags);
        let n = self.node_mut(slot);
        n.len = d.len;
        match d.store {
            DetachedStore::Inline(bytes) => {
                n.payload.inline = bytes;
            }
            DetachedStore::Heap { ptr, cap } => {
                n.flags &= !flag::INLINE;
                n.payload.out = OutOfLine {
                    ptr,
                    pool: NIL,
                    cap,
                };
            }
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Talloc;

    fn fresh() -> Slots {
        Slots::new(HEAP_IDS.take().unwrap())
    }

    #[test]
    fn node_is_compact() {
        // Links, flags, generation, length, rare index (32 bytes), the type
        // descriptor (8) and 32 bytes of inline value.
        assert_eq!(mem::size_of::<Node>(), 72);
    }

    #[test]
    fn region_is_released_when_last_object_goes() {
        let mut s = fresh();
        let region = s.new_region(1024).unwrap();
        let pool = s.insert_marker(marker_desc::<()>(), 0, None).unwrap();
        s.mark_pool(pool, region);
        let a = s.insert([1u8; 100], 0, Some(region)).unwrap();
        assert_eq!(s.region_usage(region).unwrap().2, 2);
        let _ = s.release(pool);
        assert_eq!(s.live_regions(), 1, "a member keeps the region");
        let _ = s.release(a);
        assert_eq!(s.live_regions(), 0);
    }

    #[test]
    fn inline_bytes_keep_their_alignment_when_moved() {
        assert!(mem::align_of::<InlineBytes>() >= 8);
        assert!(mem::align_of::<DetachedStore>() >= 8);
        let mut s = fresh();
        let slot = s.insert((1u64, 2u64), 0, None).unwrap();
        let mut d = vec![s.detach_value(slot)];
        d.push(Detached::empty());
        for d in &mut d {
            assert_eq!(d.data() as usize % 8, 0);
        }
    }

    #[test]
    fn heap_ids_are_never_handed_out_twice() {
        let ids = IdSource::starting_at(NonZeroU64::new(u64::MAX - 3).unwrap());
        let taken: Vec<u64> = std::iter::from_fn(|| ids.take().map(HeapId::get)).collect();
        assert_eq!(taken, [u64::MAX - 3, u64::MAX - 2, u64::MAX - 1]);
        // Exhausted for good: the counter neither wraps nor panics.
        assert!(ids.take().is_none());
        assert!(ids.take().is_none());
    }

    #[test]
    fn a_full_heap_is_an_error_that_changes_nothing() {
        let mut heap = Talloc::new();
        let root = heap.new_context(None).unwrap();
        let pool = heap.pool(root, 1024).unwrap();
        heap.slots.set_capacity(2);
        assert_eq!(heap.alloc(root, 1u8), Err(Error::HeapFull));
        assert_eq!(heap.zeroed(pool, 8), Err(Error::HeapFull));
        assert_eq!(heap.strdup(None, "x"), Err(Error::HeapFull));
        assert_eq!(heap.new_context(None), Err(Error::HeapFull));
        assert_eq!(heap.pool(None, 64).map(|_| ()), Err(Error::HeapFull));
        assert_eq!(heap.reference(root, pool).map(|_| ()), Err(Error::HeapFull));
        assert_eq!(heap.live_objects(), 2);
        assert_eq!(heap.verify(), Ok(()));

        // A parcel that does not fit is handed back whole.
        let mut other = Talloc::new();
        let a = other.alloc(None, String::from("a")).unwrap();
        other.alloc(a, 2u32).unwrap();
        let parcel = other.detach(a).unwrap();
        heap.free(pool).unwrap();
        let back = heap.attach(None, parcel).unwrap_err();
        assert_eq!(back.error, Error::HeapFull);
        assert_eq!(heap.live_objects(), 1);
        let a = other
            .attach(None, back.parcel)
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(other[a], "a");
        assert_eq!(heap.verify(), Ok(()));
    }

    #[test]
    fn a_slot_whose_generation_runs_out_is_retired() {
        let mut s = fresh();
        let slot = s.insert(1u8, 0, None).unwrap();
        // The last live generation a slot may have.
        s.node_mut(slot).gen = u32::MAX - 2;
        let key = s.key(slot);
        let _ = s.release(slot);
        assert_eq!(s.retired, 1);
        assert_eq!(s.lookup(key), Err(Error::Stale));
        s.set_capacity(1);
        assert_eq!(s.vacancies(), 0);
        assert_eq!(s.insert(2u8, 0, None), Err(StoreError::Full));
        assert_eq!(s.lookup(key), Err(Error::Stale));
    }
}
