//! The heap itself: creating objects and reaching their values.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use crate::destructor::{Boxed, Functions};
use crate::error::AllocError;
use crate::ptr::Key;
use crate::storage::{flag, marker_desc, Flags, Object, Slots, HEAP_IDS, NIL};
use crate::{AnyPtr, Error, IntoParent, Ptr};

/// What a destructor decides: `Ok(())` lets the free go on, `Err(Refused)`
/// keeps the object (and its subtree) alive, as a C destructor returning -1.
///
/// ```
/// use talloc::{DestructorResult, Error, Refused, Talloc};
/// // A destructor that only lets its object go once it is empty.
/// fn only_when_empty(heap: &mut Talloc, p: talloc::Ptr<Vec<u8>>) -> DestructorResult {
///     if heap[p].is_empty() { Ok(()) } else { Err(Refused) }
/// }
/// let mut heap = Talloc::new();
/// let buf = heap.alloc(None, vec![1u8])?;
/// heap.set_destructor(buf, only_when_empty)?;
/// assert_eq!(heap.free(buf), Err(Error::Refused));
/// heap[buf].clear();
/// heap.free(buf)?;
/// # Ok::<(), Error>(())
/// ```
pub type DestructorResult = Result<(), Refused>;

/// A destructor's refusal to let its object be freed.
///
/// ```
/// use talloc::{Talloc, Refused, Error};
/// let mut heap = Talloc::new();
/// let p = heap.alloc(None, 5u32)?;
/// heap.set_destructor(p, |_heap, _p| Err(Refused))?;
/// assert_eq!(heap.free(p), Err(Error::Refused));
/// heap.clear_destructor(p)?;
/// heap.free(p)?;
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the destructor refused the free")
    }
}

impl std::error::Error for Refused {}

/// A custom name.
pub(crate) enum Name {
    /// `set_name_const`: nothing allocated.
    Const(&'static str),
    /// `set_name`: the name is a string child, as in C. It is looked up by
    /// key: a name chunk freed or stolen by hand is no longer the name.
    Chunk(crate::ptr::Key),
}

/// The rare fields of a node, kept out of the hot node. The destructor is
/// here (24 bytes a node with one); the rarer fields are boxed behind it and
/// reached through `Deref` (`rare.name`, `rare.refs`...). Writing through
/// `DerefMut` creates the box.
#[derive(Default)]
pub(crate) struct Rare {
    pub(crate) destructor: Option<Boxed>,
    ext: Option<Box<RareExt>>,
}

/// The rarest fields: names, references, memory limits.
#[derive(Default)]
pub(crate) struct RareExt {
    pub(crate) name: Option<Name>,
    /// Reference handles pointing at this node, oldest first.
    pub(crate) refs: Vec<u32>,
    /// For a reference handle: the referenced object.
    pub(crate) target: Option<Key>,
    /// `set_memlimit`: (max, current) bytes.
    pub(crate) limit: Option<(usize, usize)>,
}

static NO_EXT: RareExt = RareExt {
    name: None,
    refs: Vec::new(),
    target: None,
    limit: None,
};

impl std::ops::Deref for Rare {
    type Target = RareExt;
    fn deref(&self) -> &RareExt {
        self.ext.as_deref().unwrap_or(&NO_EXT)
    }
}

impl std::ops::DerefMut for Rare {
    fn deref_mut(&mut self) -> &mut RareExt {
        self.ext.get_or_insert_with(Default::default)
    }
}

/// The marker type of a pool made by [`Talloc::pool`]: a context whose
/// descendants are carved from one pre-allocated region.
///
/// ```
/// # let mut heap = talloc::Talloc::new();
/// let pool: talloc::Ptr<talloc::Pool> = heap.pool(None, 4096)?;
/// let v = heap.alloc(pool, [0u64; 8])?;
/// assert!(heap.is_pooled(v)?);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug)]
pub struct Pool(());

/// A hierarchical heap in the style of Samba's talloc.
///
/// Every object has at most one parent; freeing an object frees its whole
/// subtree, newest child first, each object's destructor before its children.
/// Objects are named by [`Ptr`] handles that never dangle.
///
/// A heap belongs to one thread (it is neither `Send` nor `Sync`); subtrees
/// move between heaps as [`Parcel`](crate::Parcel)s.
///
/// ```
/// use talloc::Talloc;
/// let mut heap = Talloc::new();
/// let conn = heap.new_context(None)?;
/// heap.set_name_const(conn, "connection")?;
/// let buf = heap.alloc_zeroed(conn, 4096)?;
/// let user = heap.alloc_str(conn, "alice")?;
/// assert_eq!(heap.total_blocks(conn)?, 3);
/// heap.free(conn)?;                      // buf and user go too
/// assert!(heap.get(user).is_err());
/// # let _ = buf;
/// # Ok::<(), talloc::Error>(())
/// ```
pub struct Talloc {
    pub(crate) slots: Slots,
    rare: Vec<Rare>,
    rare_free: Vec<u32>,
    /// Destructors set as plain functions.
    pub(crate) functions: Functions,
    /// Number of live memory limits: while 0, allocation skips the check.
    pub(crate) limits: usize,
    pub(crate) leak_report: Option<crate::report::LeakReport>,
    /// The newest top-level object: the top level is one more child list,
    /// of C's null context, so [`top_level`](Talloc::top_level) walks it
    /// without scanning the slots.
    pub(crate) top: u32,
    _single_thread: PhantomData<*mut ()>,
}

impl Default for Talloc {
    fn default() -> Self {
        Talloc::new()
    }
}

impl fmt::Debug for Talloc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Talloc")
            .field("id", &self.slots.id().get())
            .field("live_objects", &self.slots.live())
            .finish()
    }
}

/// How full a pool's region is ([`Talloc::pool_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolUsage {
    /// The region's size in bytes.
    pub size: usize,
    /// Bytes carved from it so far (alignment padding included).
    pub used: usize,
    /// Objects carved from it, and the pool itself while it is alive (as
    /// C's `object_count`).
    pub objects: u32,
}

impl Talloc {
    /// An empty heap.
    ///
    /// ```
    /// let heap = talloc::Talloc::new();
    /// assert_eq!(heap.live_objects(), 0);
    /// ```
    ///
    /// # Panics
    /// Once the process has made 2^64 - 2 heaps (centuries at a heap a
    /// nanosecond); [`try_new`](Talloc::try_new) returns an error instead.
    pub fn new() -> Talloc {
        match Talloc::try_new() {
            Ok(heap) => heap,
            Err(e) => panic!("talloc: {e}"),
        }
    }

    /// An empty heap, or [`Error::HeapIdsExhausted`] once the process has
    /// made 2^64 - 2 heaps. Every heap gets an id that no other heap of the
    /// process ever had, so a handle is never taken for another heap's
    /// (C's pointers have no such check; a 32-bit counter would wrap).
    ///
    /// ```
    /// let heap = talloc::Talloc::try_new()?;
    /// assert_eq!(heap.live_objects(), 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn try_new() -> Result<Talloc, Error> {
        let id = HEAP_IDS.take().ok_or(Error::HeapIdsExhausted)?;
        Ok(Talloc {
            slots: Slots::new(id),
            rare: Vec::new(),
            rare_free: Vec::new(),
            functions: Functions::default(),
            limits: 0,
            leak_report: None,
            top: NIL,
            _single_thread: PhantomData,
        })
    }

    /// Number of live objects in the heap (reference handles and name chunks
    /// included).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// heap.alloc(None, 1u8)?;
    /// assert_eq!(heap.live_objects(), 1);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn live_objects(&self) -> usize {
        self.slots.live() as usize
    }

    // ----- handles -------------------------------------------------------

    #[inline(always)]
    pub(crate) fn key(&self, slot: u32) -> Key {
        self.slots.key(slot)
    }

    #[inline]
    pub(crate) fn any(&self, slot: u32) -> AnyPtr {
        AnyPtr {
            key: self.key(slot),
        }
    }

    /// The slot of a live object, or why the handle is no good.
    #[inline(always)]
    pub(crate) fn slot(&self, key: Key) -> Result<u32, Error> {
        self.slots.lookup(key)
    }

    /// The slot of a parent, or NIL for the top level.
    #[inline(always)]
    pub(crate) fn parent_slot(&self, parent: Option<AnyPtr>) -> Result<u32, Error> {
        match parent {
            None => Ok(NIL),
            Some(p) => self.slot(p.key),
        }
    }

    /// Whether the handle names a live object of this heap.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// assert!(heap.contains(p));
    /// heap.free(p)?;
    /// assert!(!heap.contains(p));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn contains(&self, p: impl Into<AnyPtr>) -> bool {
        self.slot(p.into().key).is_ok()
    }

    /// Whether the handle was made by another heap (its uses here fail
    /// with [`Error::ForeignHeap`]); false for this heap's handles, live or
    /// freed.
    ///
    /// ```
    /// # use talloc::Talloc;
    /// let (mut a, mut b) = (Talloc::new(), Talloc::new());
    /// let p = a.alloc(None, 1u8)?;
    /// let q = b.alloc(None, 2u8)?;
    /// a.free(p)?;
    /// assert!(!a.is_foreign(p)); // freed, but a's own
    /// assert!(a.is_foreign(q));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn is_foreign(&self, p: impl Into<AnyPtr>) -> bool {
        p.into().key.heap != self.slots.id()
    }

    // ----- the rare table ------------------------------------------------

    pub(crate) fn rare(&self, slot: u32) -> Option<&Rare> {
        let n = self.slots.node(slot);
        n.has(flag::RARE).then(|| &self.rare[n.rare as usize])
    }

    #[inline]
    pub(crate) fn rare_mut(&mut self, slot: u32) -> &mut Rare {
        let n = self.slots.node(slot);
        let r = if n.has(flag::RARE) {
            n.rare
        } else {
            self.new_rare(slot)
        };
        &mut self.rare[r as usize]
    }

    /// The rare entry at index `r`.
    #[inline]
    pub(crate) fn rare_entry(&mut self, r: u32) -> &mut Rare {
        &mut self.rare[r as usize]
    }

    /// Gives a node without one a (default) rare entry; returns its index.
    /// A function destructor the node named without an entry moves into
    /// it.
    #[inline(never)]
    fn new_rare(&mut self, slot: u32) -> u32 {
        let r = match self.rare_free.pop() {
            Some(r) => r,
            None => {
                self.rare.push(Rare::default());
                (self.rare.len() - 1) as u32
            }
        };
        let n = self.slots.node_mut(slot);
        // Without an entry, the field is NIL or names a function destructor.
        let function = std::mem::replace(&mut n.rare, r);
        n.flags |= flag::RARE;
        if function != NIL {
            self.move_function_to_entry(function, r);
        }
        r
    }

    /// A function destructor a node named without a side entry goes into
    /// its new entry `r`.
    #[cold]
    fn move_function_to_entry(&mut self, function: u32, r: u32) {
        self.rare[r as usize].destructor = Some(self.functions.boxed(function));
    }

    /// Gives an empty rare entry (no destructor and nothing in `ext`, as
    /// after a destructor that has run) of a node that is being released
    /// back without moving it out and dropping it. False, and nothing
    /// done, when the node has none or it holds something.
    #[inline]
    pub(crate) fn drop_empty_rare(&mut self, slot: u32) -> bool {
        let n = self.slots.node(slot);
        if !n.has(flag::RARE) {
            return false;
        }
        let r = n.rare;
        let e = &self.rare[r as usize];
        if e.destructor.is_some() || e.ext.is_some() {
            return false;
        }
        let n = self.slots.node_mut(slot);
        n.rare = NIL;
        n.flags &= !flag::RARE;
        self.rare_free.push(r);
        true
    }

    /// Gives the rare entry of a node that is being released back.
    pub(crate) fn drop_rare(&mut self, slot: u32) -> Option<Rare> {
        let n = self.slots.node_mut(slot);
        if !n.has(flag::RARE) {
            return None;
        }
        let r = std::mem::replace(&mut n.rare, NIL);
        n.flags &= !flag::RARE;
        self.rare_free.push(r);
        Some(std::mem::take(&mut self.rare[r as usize]))
    }

    // ----- links ---------------------------------------------------------

    /// Puts an unlinked node at the head of `parent`'s children (of the
    /// top level for NIL).
    #[inline(always)]
    pub(crate) fn link(&mut self, parent: u32, slot: u32) {
        self.slots.link(parent, slot, &mut self.top);
    }

    /// Takes a node out of its parent's child list (or the top level's).
    #[inline(always)]
    pub(crate) fn unlink_node(&mut self, slot: u32) {
        self.slots.unlink(slot, &mut self.top);
    }

    // ----- creation ------------------------------------------------------

    /// Where a new child of `parent` goes: the parent's slot and the pool
    /// region it should be carved from.
    #[inline(always)]
    fn home(&self, parent: Option<AnyPtr>) -> Result<(u32, Option<u32>), Error> {
        let p = self.parent_slot(parent)?;
        if p == NIL {
            return Ok((NIL, None));
        }
        let n = self.slots.node(p);
        if n.has(flag::REF_HANDLE) {
            return Err(Error::IsReference);
        }
        Ok((p, n.pool_region()))
    }

    /// Links a freshly stored node under its parent, charging memory limits;
    /// on a limit, the node is released and nothing changes.
    #[inline(always)]
    fn adopt<T: ?Sized>(&mut self, parent: u32, slot: u32) -> Result<Ptr<T>, Error> {
        if self.limits > 0 && parent != NIL {
            if let Err(e) = self.charge_new(parent, slot) {
                self.release_unlinked(slot);
                return Err(e);
            }
        }
        self.link(parent, slot);
        Ok(Ptr::from_key(self.key(slot)))
    }

    /// The memory-limit part of [`adopt`](Self::adopt), kept out of line.
    #[cold]
    fn charge_new(&mut self, parent: u32, slot: u32) -> Result<(), Error> {
        if self.slots.node(slot).has(flag::IN_POOL) {
            return Ok(());
        }
        let size = self.slots.own_size(slot);
        self.charge(parent, size)
    }

    /// Gives back a node that was never linked (a failed allocation).
    #[cold]
    fn release_unlinked(&mut self, slot: u32) {
        if let Some(panic) = self.slots.release(slot) {
            std::panic::resume_unwind(panic);
        }
    }

    /// [`alloc`](Self::alloc) and [`alloc_local`](Self::alloc_local): on
    /// any error the value comes back in the [`AllocError`].
    #[inline(always)]
    fn alloc_value<T: 'static>(
        &mut self,
        parent: Option<AnyPtr>,
        value: T,
        flags: Flags,
    ) -> Result<Ptr<T>, AllocError<T>> {
        let (parent, pool) = match self.home(parent) {
            Ok(home) => home,
            Err(error) => return Err(AllocError { error, value }),
        };
        let value = if self.limits == 0 && parent != NIL && pool.is_none() {
            match self.slots.insert_leaf(parent, &mut self.top, value, flags) {
                Ok(key) => return Ok(Ptr::from_key(key)),
                Err(value) => value,
            }
        } else {
            value
        };
        let slot = match self.slots.insert(value, flags, pool) {
            Ok(slot) => slot,
            Err((e, value)) => {
                return Err(AllocError {
                    error: e.into(),
                    value,
                })
            }
        };
        if self.limits > 0 && parent != NIL {
            if let Err(error) = self.charge_new(parent, slot) {
                let value = self.slots.remove(slot);
                return Err(AllocError { error, value });
            }
        }
        self.link(parent, slot);
        Ok(Ptr::from_key(self.key(slot)))
    }

    /// Allocates `value` as a child of `parent` (`talloc(ctx, type)` with the
    /// value already built). The default name is the type's name.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// #[derive(Debug, PartialEq)]
    /// struct Conn { fd: i32 }
    /// let c = heap.alloc(None, Conn { fd: 3 })?;
    /// assert_eq!(heap[c].fd, 3);
    /// assert!(heap.name(c)?.ends_with("Conn"));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn alloc<T: Send + 'static>(
        &mut self,
        parent: impl IntoParent,
        value: T,
    ) -> Result<Ptr<T>, AllocError<T>> {
        self.alloc_value(parent.into_parent(), value, 0)
    }

    /// Allocates a value that is not `Send` (an `Rc`, a `RefCell` shared with
    /// the loop...). The object is bound to this heap's thread: a
    /// [`Parcel`](crate::Parcel) refuses to carry it.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let shared = std::rc::Rc::new(5);
    /// let p = heap.alloc_local(None, shared.clone())?;
    /// assert_eq!(*heap[p], 5);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn alloc_local<T: 'static>(
        &mut self,
        parent: impl IntoParent,
        value: T,
    ) -> Result<Ptr<T>, AllocError<T>> {
        self.alloc_value(parent.into_parent(), value, flag::NOT_SEND)
    }

    /// A new empty context (`talloc_new`): an object of size 0 that exists to
    /// own other objects. Its name is `"talloc_new"`.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let ctx = heap.new_context(None)?;
    /// assert_eq!(heap.size(ctx)?, 0);
    /// assert_eq!(heap.name(ctx)?, "talloc_new");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn new_context(&mut self, parent: impl IntoParent) -> Result<Ptr<()>, Error> {
        let (parent, pool) = self.home(parent.into_parent())?;
        let slot = self
            .slots
            .insert_marker(marker_desc::<()>(), flag::CONTEXT, pool)?;
        self.adopt(parent, slot)
    }

    /// A zero-filled byte buffer of `size` bytes (`talloc_zero_size`; also
    /// what `talloc_size` gives, since Rust memory is always initialised).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let b = heap.alloc_zeroed(None, 16)?;
    /// assert_eq!(&heap[b], &[0u8; 16]);
    /// assert_eq!(heap.size(b)?, 16);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    #[doc(alias = "talloc_zero_size")]
    #[doc(alias = "talloc_size")]
    pub fn alloc_zeroed(
        &mut self,
        parent: impl IntoParent,
        size: usize,
    ) -> Result<Ptr<[u8]>, Error> {
        self.zeroed_in(parent.into_parent(), size)
    }

    /// The body of [`alloc_zeroed`](Talloc::alloc_zeroed), inlined into the
    /// caller with the storage's fast path under it: a call per allocation
    /// cost a sixth of a free-and-allocate step (`talloc_churn`).
    #[inline(always)]
    fn zeroed_in(&mut self, parent: Option<AnyPtr>, size: usize) -> Result<Ptr<[u8]>, Error> {
        let (parent, pool) = self.home(parent)?;
        // Top-level objects take the general path: the fast one takes them
        // too, but testing for them there cost a churn step 10 instructions.
        if self.limits == 0 && parent != NIL {
            let top = &mut self.top;
            let fast = match pool {
                None => self.slots.insert_zeroed_leaf(parent, top, size),
                Some(region) => self.slots.insert_pooled_leaf(parent, top, region, size),
            };
            if let Some(key) = fast {
                return Ok(Ptr::from_key(key));
            }
        }
        let slot = self.slots.insert_zeroed(size, pool)?;
        self.adopt(parent, slot)
    }

    /// An array of `len` elements, each made by `f(index)` (`talloc_array`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let squares = heap.alloc_array_with(None, 4, |i| i * i)?;
    /// assert_eq!(&heap[squares], &[0, 1, 4, 9]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn alloc_array_with<T: Send + 'static>(
        &mut self,
        parent: impl IntoParent,
        len: usize,
        f: impl FnMut(usize) -> T,
    ) -> Result<Ptr<[T]>, Error> {
        let (parent, pool) = self.home(parent.into_parent())?;
        let slot = self.slots.insert_slice(len, 0, pool, f)?;
        self.adopt(parent, slot)
    }

    /// An array of `len` default values (`talloc_zero_array`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc_array::<u32>(None, 3)?;
    /// assert_eq!(&heap[a], &[0, 0, 0]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn alloc_array<T: Default + Send + 'static>(
        &mut self,
        parent: impl IntoParent,
        len: usize,
    ) -> Result<Ptr<[T]>, Error> {
        self.alloc_array_with(parent, len, |_| T::default())
    }

    /// A copy of a slice (`talloc_memdup`, `talloc_array` + copy).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let d = heap.alloc_slice(None, b"abc")?;
    /// assert_eq!(&heap[d], b"abc");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[doc(alias = "talloc_memdup")]
    pub fn alloc_slice<T: Clone + Send + 'static>(
        &mut self,
        parent: impl IntoParent,
        src: &[T],
    ) -> Result<Ptr<[T]>, Error> {
        self.alloc_array_with(parent, src.len(), |i| src[i].clone())
    }

    /// A copy of a string (`talloc_strdup`). Its size counts the NUL, as C's.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let s = heap.alloc_str(None, "hello")?;
    /// assert_eq!(&heap[s], "hello");
    /// assert_eq!(heap.size(s)?, 6);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[doc(alias = "talloc_strdup")]
    pub fn alloc_str(&mut self, parent: impl IntoParent, s: &str) -> Result<Ptr<str>, Error> {
        let (parent, pool) = self.home(parent.into_parent())?;
        let slot = self.slots.insert_str(s, 0, pool)?;
        self.adopt(parent, slot)
    }

    /// A copy of at most the first `n` bytes of a string (`talloc_strndup`).
    /// `n` past the end copies the whole string; `n` inside a character is
    /// [`Error::NotCharBoundary`].
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let s = heap.alloc_str_prefix(None, "hello", 3)?;
    /// assert_eq!(&heap[s], "hel");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[doc(alias = "talloc_strndup")]
    pub fn alloc_str_prefix(
        &mut self,
        parent: impl IntoParent,
        s: &str,
        n: usize,
    ) -> Result<Ptr<str>, Error> {
        let n = n.min(s.len());
        let head = s.get(..n).ok_or(Error::NotCharBoundary)?;
        self.alloc_str(parent, head)
    }

    /// A formatted string (`talloc_asprintf`); [`alloc_format!`](crate::alloc_format)
    /// writes the same call as `format!` does.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let s = heap.alloc_fmt(None, format_args!("{}-{}", 1, 2))?;
    /// assert_eq!(&heap[s], "1-2");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[doc(alias = "talloc_asprintf")]
    pub fn alloc_fmt(
        &mut self,
        parent: impl IntoParent,
        args: fmt::Arguments<'_>,
    ) -> Result<Ptr<str>, Error> {
        match args.as_str() {
            Some(s) => self.alloc_str(parent, s),
            None => self.alloc_str(parent, &fmt::format(args)),
        }
    }

    /// Appends to a string in place (`talloc_strdup_append`; the handle stays
    /// the same, unlike C's returned pointer).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let s = heap.alloc_str(None, "foo")?;
    /// heap.str_append(s, "bar")?;
    /// assert_eq!(&heap[s], "foobar");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn str_append(&mut self, s: Ptr<str>, tail: &str) -> Result<(), Error> {
        let slot = self.slot(s.key)?;
        let new_size = self.slots.own_size(slot).saturating_add(tail.len());
        self.resize_checked(slot, new_size, |heap| heap.slots.str_append(slot, tail))
    }

    /// Appends formatted text to a string in place (`talloc_asprintf_append`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let s = heap.alloc_str(None, "n=")?;
    /// heap.str_append_fmt(s, format_args!("{}", 42))?;
    /// assert_eq!(&heap[s], "n=42");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn str_append_fmt(&mut self, s: Ptr<str>, args: fmt::Arguments<'_>) -> Result<(), Error> {
        match args.as_str() {
            Some(t) => self.str_append(s, t),
            None => self.str_append(s, &fmt::format(args)),
        }
    }

    /// Resizes an array in place (`talloc_realloc`), filling new elements with
    /// `f(index)`. The handle stays valid; the object keeps its place in the
    /// tree. Unlike C, a new length of 0 keeps an empty array (free it with
    /// [`free`](Talloc::free)), and a referenced array can be resized.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc_slice(None, &[1, 2])?;
    /// heap.realloc_with(a, 4, |i| i as i32 * 10)?;
    /// assert_eq!(&heap[a], &[1, 2, 20, 30]);
    /// heap.realloc_with(a, 1, |_| 0)?;
    /// assert_eq!(&heap[a], &[1]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn realloc_with<T: 'static>(
        &mut self,
        p: Ptr<[T]>,
        new_len: usize,
        f: impl FnMut(usize) -> T,
    ) -> Result<(), Error> {
        let slot = self.slot(p.key)?;
        let new_size = new_len.saturating_mul(std::mem::size_of::<T>());
        self.resize_checked(slot, new_size, |heap| heap.slots.resize(slot, new_len, f))
    }

    /// Resizes an array, filling new elements with `T::default()`.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc_zeroed(None, 2)?;
    /// heap.realloc(a, 100)?;
    /// assert_eq!(heap.size(a)?, 100);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn realloc<T: Default + 'static>(
        &mut self,
        p: Ptr<[T]>,
        new_len: usize,
    ) -> Result<(), Error> {
        self.realloc_with(p, new_len, |_| T::default())
    }

    /// Runs a resize of a node to `new_size` bytes with the checks and the
    /// memory-limit accounting around it; a limit is checked before anything
    /// changes.
    fn resize_checked(
        &mut self,
        slot: u32,
        new_size: usize,
        op: impl FnOnce(&mut Talloc) -> Result<Option<u32>, crate::storage::StoreError>,
    ) -> Result<(), Error> {
        let n = self.slots.node(slot);
        if n.has(flag::POOL) {
            return Err(Error::IsPool);
        }
        if n.has(flag::FREEING) {
            return Err(Error::BeingFreed);
        }
        if self.slots.desc(slot).kind == crate::storage::Kind::Value {
            return Err(Error::NotResizable);
        }
        // A pool member that still fits in its pool (its own bytes, the
        // pool's end, or a new range) stays there, as in C; only one that
        // leaves the pool goes onto the limits' books.
        let in_pool = n.has(flag::IN_POOL);
        let before = if in_pool {
            0
        } else {
            self.slots.own_size(slot)
        };
        let stays = self.slots.stays_in_pool(slot, new_size);
        let charged_after = if stays { 0 } else { new_size };
        if self.limits > 0 && charged_after > before {
            self.charge(slot, charged_after - before)?;
        }
        if let Err(e) = op(self) {
            if self.limits > 0 && charged_after > before {
                self.uncharge(slot, charged_after - before);
            }
            return Err(e.into());
        }
        if self.limits > 0 && charged_after < before {
            self.uncharge(slot, before - charged_after);
        }
        Ok(())
    }

    /// A pool (`talloc_pool`): a context of size 0 whose descendants are
    /// carved from one region of `size` bytes while they fit (the rest are
    /// allocated normally). The region is released only when the pool and
    /// every object carved from it are gone, stolen elsewhere or not.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let pool = heap.pool(None, 1 << 20)?;
    /// let s = heap.alloc_str(pool, "carved from the pool")?;
    /// assert!(heap.is_pooled(s)?);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn pool(&mut self, parent: impl IntoParent, size: usize) -> Result<Ptr<Pool>, Error> {
        let (parent, _) = self.home(parent.into_parent())?;
        let slot = self.slots.insert_marker(marker_desc::<Pool>(), 0, None)?;
        let region = match self.slots.new_region(size) {
            Ok(region) => region,
            Err(e) => {
                let _ = self.slots.release(slot);
                return Err(e.into());
            }
        };
        self.slots.mark_pool(slot, region);
        if self.limits > 0 && parent != NIL {
            if let Err(e) = self.charge(parent, size) {
                let _ = self.slots.release(slot);
                return Err(e);
            }
        }
        self.link(parent, slot);
        Ok(Ptr::from_key(self.key(slot)))
    }

    /// An object that is also the pool for its expected sub-objects
    /// (`talloc_pooled_object`): the value is carved first, and the region has
    /// room for `num_subobjects` more objects of `total_subobjects_size`
    /// bytes in all.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// struct Req { id: u32 }
    /// let r = heap.pooled_object(None, Req { id: 7 }, 2, 64)?;
    /// let name = heap.alloc_str(r, "req-7")?;
    /// assert!(heap.is_pooled(name)?);
    /// assert_eq!(heap[r].id, 7);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn pooled_object<T: Send + 'static>(
        &mut self,
        parent: impl IntoParent,
        value: T,
        num_subobjects: usize,
        total_subobjects_size: usize,
    ) -> Result<Ptr<T>, AllocError<T>> {
        let parent = match self.home(parent.into_parent()) {
            Ok((parent, _)) => parent,
            Err(error) => return Err(AllocError { error, value }),
        };
        // Each sub-object may lose up to 15 bytes to alignment.
        let Some(extra) = num_subobjects
            .checked_mul(16)
            .and_then(|a| a.checked_add(total_subobjects_size))
        else {
            return Err(AllocError {
                error: Error::TooLarge,
                value,
            });
        };
        let slot = match self.slots.insert_pooled(value, 0, extra) {
            Ok(slot) => slot,
            Err((e, value)) => {
                return Err(AllocError {
                    error: e.into(),
                    value,
                })
            }
        };
        if self.limits > 0 && parent != NIL {
            let region = self
                .slots
                .node(slot)
                .pool_region()
                .expect("pooled object is a pool");
            let size = self.slots.region_usage(region).map_or(0, |u| u.0);
            if let Err(error) = self.charge(parent, size) {
                let value = self.slots.remove(slot);
                return Err(AllocError { error, value });
            }
        }
        self.link(parent, slot);
        Ok(Ptr::from_key(self.key(slot)))
    }

    /// Whether the object's memory was carved from a pool region.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let plain = heap.alloc(None, [0u8; 64])?;
    /// assert!(!heap.is_pooled(plain)?);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn is_pooled(&self, p: impl Into<AnyPtr>) -> Result<bool, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(self.slots.node(slot).has(flag::IN_POOL))
    }

    /// How full the region of a pool object is (see [`PoolUsage`]).
    ///
    /// ```
    /// use talloc::PoolUsage;
    /// # let mut heap = talloc::Talloc::new();
    /// let pool = heap.pool(None, 1024)?;
    /// heap.alloc(pool, [1u64; 8])?;
    /// assert_eq!(heap.pool_usage(pool)?, PoolUsage { size: 1024, used: 64, objects: 2 });
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn pool_usage(&self, pool: impl Into<AnyPtr>) -> Result<PoolUsage, Error> {
        let slot = self.slot(pool.into().key)?;
        let n = self.slots.node(slot);
        if !n.has(flag::POOL) {
            return Err(Error::WrongType {
                expected: std::any::type_name::<Pool>(),
                actual: (self.slots.desc(slot).type_name)(),
            });
        }
        let region = n.pool_region().expect("pool nodes have a region");
        let (size, used, objects) = self
            .slots
            .region_usage(region)
            .expect("a live pool's region is live");
        Ok(PoolUsage {
            size,
            used,
            objects,
        })
    }

    /// Number of pool regions still allocated (a freed pool's region lives on
    /// while objects carved from it do).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let pool = heap.pool(None, 1024)?;
    /// let kid = heap.alloc(pool, [1u64; 8])?;
    /// heap.steal(None, kid)?;
    /// heap.free(pool)?;
    /// assert_eq!(heap.pool_regions(), 1);
    /// heap.free(kid)?;
    /// assert_eq!(heap.pool_regions(), 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn pool_regions(&self) -> usize {
        self.slots.live_regions()
    }

    // ----- access --------------------------------------------------------

    /// The value behind a handle.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, String::from("x"))?;
    /// assert_eq!(heap.get(p)?, "x");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn get<T: Object + ?Sized>(&self, p: Ptr<T>) -> Result<&T, Error> {
        self.slots.value_of(p.key)
    }

    /// The value behind a handle, mutably.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, vec![1])?;
    /// heap.get_mut(p)?.push(2);
    /// assert_eq!(heap[p], [1, 2]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn get_mut<T: Object + ?Sized>(&mut self, p: Ptr<T>) -> Result<&mut T, Error> {
        self.slots.value_of_mut(p.key)
    }

    /// Mutable access to several objects of one type at once (as
    /// `HashMap::get_disjoint_mut`). Two handles naming the same object are
    /// [`Error::Aliased`]; a stale one is [`Error::Stale`].
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let from = heap.alloc(None, 10u32)?;
    /// let to = heap.alloc(None, 0u32)?;
    /// let [a, b] = heap.get_disjoint_mut([from, to])?;
    /// std::mem::swap(a, b);
    /// assert_eq!((heap[from], heap[to]), (0, 10));
    /// assert_eq!(heap.get_disjoint_mut([from, from]).unwrap_err(), talloc::Error::Aliased);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn get_disjoint_mut<T: Object + ?Sized, const N: usize>(
        &mut self,
        ps: [Ptr<T>; N],
    ) -> Result<[&mut T; N], Error> {
        self.slots.values_of_mut(ps.map(|p| p.key))
    }

    /// The typed handle of an object, if it is a `T`
    /// (`talloc_get_type`). The check is by type, not by name.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let any = heap.alloc(None, 3u16)?.erase();
    /// assert!(heap.downcast::<u16>(any).is_ok());
    /// assert!(matches!(heap.downcast::<u32>(any), Err(talloc::Error::WrongType { .. })));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn downcast<T: Object + ?Sized>(&self, p: AnyPtr) -> Result<Ptr<T>, Error> {
        let slot = self.slot(p.key)?;
        let desc = self.slots.desc(slot);
        if (desc.type_id)() != std::any::TypeId::of::<T>() {
            return Err(Error::WrongType {
                expected: std::any::type_name::<T>(),
                actual: (desc.type_name)(),
            });
        }
        Ok(Ptr::from_key(p.key))
    }

    /// As [`downcast`](Talloc::downcast), panicking on a mismatch or a stale
    /// handle (`talloc_get_type_abort`); the message names the expected and
    /// the actual type.
    ///
    /// # Panics
    /// If the object is not a `T` or the handle is stale or foreign.
    ///
    /// ```should_panic
    /// # let mut heap = talloc::Talloc::new();
    /// let any = heap.alloc(None, 3u16)?.erase();
    /// heap.get_type_abort::<u32>(any); // panics: expected u32, found u16
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[track_caller]
    pub fn get_type_abort<T: Object + ?Sized>(&self, p: AnyPtr) -> Ptr<T> {
        match self.downcast::<T>(p) {
            Ok(p) => p,
            Err(e) => panic!("talloc: type check failed: {e}"),
        }
    }

    /// The type name of the stored value (not the custom name).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u64)?;
    /// assert_eq!(heap.type_name(p)?, "u64");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn type_name(&self, p: impl Into<AnyPtr>) -> Result<&'static str, Error> {
        let slot = self.slot(p.into().key)?;
        Ok((self.slots.desc(slot).type_name)())
    }

    /// Whether the object's value was allocated as `Send` (with
    /// [`alloc`](Talloc::alloc) rather than [`alloc_local`](Talloc::alloc_local)).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc(None, 1u8)?;
    /// let b = heap.alloc_local(None, std::rc::Rc::new(1u8))?;
    /// assert!(heap.is_send(a)? && !heap.is_send(b)?);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn is_send(&self, p: impl Into<AnyPtr>) -> Result<bool, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(!self.slots.node(slot).has(flag::NOT_SEND))
    }
}

impl<T: Object + ?Sized> Index<Ptr<T>> for Talloc {
    type Output = T;

    /// # Panics
    /// If the handle is stale or from another heap; use
    /// [`Talloc::get`] for a `Result`.
    #[track_caller]
    fn index(&self, p: Ptr<T>) -> &T {
        match self.get(p) {
            Ok(v) => v,
            Err(e) => panic!("talloc: bad handle {p:?}: {e}"),
        }
    }
}

impl<T: Object + ?Sized> IndexMut<Ptr<T>> for Talloc {
    /// # Panics
    /// If the handle is stale or from another heap; use
    /// [`Talloc::get_mut`] for a `Result`.
    #[track_caller]
    fn index_mut(&mut self, p: Ptr<T>) -> &mut T {
        if let Err(e) = self.slot(p.key) {
            panic!("talloc: bad handle {p:?}: {e}");
        }
        self.get_mut(p).expect("checked just above")
    }
}

impl Drop for Talloc {
    fn drop(&mut self) {
        if let Some(kind) = self.leak_report.take() {
            if self.slots.live() > 0 {
                eprint!("{}", self.leak_report_text(kind));
            }
        }
        // Destructors are not run here: they need the heap, which is going.
        // Every value is still dropped, so Rust resources are released.
        self.rare.clear();
        let panic = self.slots.clear();
        if let Some(p) = panic {
            if !std::thread::panicking() {
                std::panic::resume_unwind(p);
            }
        }
    }
}
