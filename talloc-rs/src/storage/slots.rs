//! The slot table: claiming a node, checking a handle against it, and
//! releasing the node with its value.

use std::alloc::Layout;
use std::any::TypeId;
use std::ptr::{self, NonNull};

use super::*;
use crate::ptr::Key;
use crate::Error;

impl Slots {
    pub(crate) fn new(id: HeapId) -> Slots {
        Slots {
            id,
            cap: NIL,
            retired: 0,
            nodes: Vec::new(),
            free: NIL,
            live: 0,
            types: Types::new(),
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

    /// The values several typed handles name, mutably and at once. Two
    /// handles naming the same object are [`Error::Aliased`].
    pub(crate) fn values_of_mut<T: Object + ?Sized, const N: usize>(
        &mut self,
        keys: [Key; N],
    ) -> Result<[&mut T; N], Error> {
        let mut slots = [0u32; N];
        for i in 0..N {
            slots[i] = self.lookup(keys[i])?;
            debug_assert!(
                self.holds::<T>(slots[i]),
                "a Ptr<T> names a T (invariant 2)"
            );
            if slots[..i].contains(&slots[i]) {
                return Err(Error::Aliased);
            }
        }
        // Distinct slots are distinct nodes, and their values distinct
        // storage: an inline value is inside its node, an out-of-line one
        // has its own allocation or pool range.
        let nodes = self.nodes.as_mut_ptr();
        // SAFETY: each slot is live and holds a `T` (checked above;
        // invariant 2), the slots are pairwise distinct, and the pointer
        // comes from `&mut self`: the references are unique while they live.
        Ok(std::array::from_fn(|i| unsafe {
            let n = &mut *nodes.add(slots[i] as usize);
            let len = n.len;
            &mut *T::from_raw(n.data_mut(), len)
        }))
    }

    /// Moves the value out of a live, unlinked node that holds a `T` and
    /// makes the slot vacant: its storage is given back, the value is not
    /// dropped but returned.
    pub(crate) fn remove<T: 'static>(&mut self, slot: u32) -> T {
        assert!(
            self.holds::<T>(slot),
            "remove: the node holds a {}",
            std::any::type_name::<T>()
        );
        let n = self.node_mut(slot);
        debug_assert!(n.is_live() && n.len == 1);
        // The length goes to 0 before `release`, so the value is not dropped
        // there: the returned copy is its one owner (a Rust move).
        // SAFETY: the node is live and holds one aligned `T` (checked
        // above; invariant 1).
        let value = unsafe { n.data_mut().cast::<T>().read() };
        n.len = 0;
        let no_panic = self.release(slot);
        debug_assert!(no_panic.is_none(), "nothing is dropped");
        value
    }

    /// Whether a live node's stored type is `T`.
    pub(crate) fn holds<T: Object + ?Sized>(&self, slot: u32) -> bool {
        (self.desc(slot).type_id)() == TypeId::of::<T>()
    }

    /// The descriptor of the type a node stores.
    #[inline(always)]
    pub(crate) fn desc(&self, slot: u32) -> &'static TypeDesc {
        self.types.desc(self.node(slot).ty)
    }

    /// The own size of a live node's object, as `talloc_get_size` counts
    /// it.
    pub(crate) fn own_size(&self, slot: u32) -> usize {
        self.desc(slot).own_size(self.node(slot).len)
    }

    /// The type a value described by `desc` is stored as (see [`Types`]).
    #[inline(always)]
    pub(super) fn type_of(&mut self, desc: &'static TypeDesc) -> Result<TypeRef, StoreError> {
        self.types.of(desc)
    }

    /// Lowers the number of slots the heap may hand out, so that tests can
    /// fill a heap.
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.cap = cap.max(self.high());
    }

    /// How many more nodes the heap can hold.
    pub(crate) fn vacancies(&self) -> u32 {
        self.cap - self.live - self.retired
    }

    /// `Ok` if a slot can be claimed.
    #[inline(always)]
    pub(super) fn vacancy(&self) -> Result<(), StoreError> {
        if self.free != NIL || self.high() < self.cap {
            Ok(())
        } else {
            Err(StoreError::Full)
        }
    }

    /// Number of slots ever handed out: every live slot is below it.
    #[inline(always)]
    pub(crate) fn high(&self) -> u32 {
        // At most `cap`, a u32 (a slot is claimed only below it).
        self.nodes.len() as u32
    }

    #[inline(always)]
    pub(crate) fn node(&self, slot: u32) -> &Node {
        &self.nodes[slot as usize]
    }

    #[inline(always)]
    pub(crate) fn node_mut(&mut self, slot: u32) -> &mut Node {
        &mut self.nodes[slot as usize]
    }

    /// The node at `slot` if the slot was ever handed out (one bounds
    /// check: the array holds exactly the slots handed out so far).
    #[inline(always)]
    pub(crate) fn get(&self, slot: u32) -> Option<&Node> {
        self.nodes.get(slot as usize)
    }

    /// Adds a vacant node at the end and returns its slot.
    #[cold]
    pub(super) fn grow(&mut self) -> u32 {
        let slot = self.high();
        self.nodes.push(Node::vacant(NIL));
        slot
    }

    /// Takes a vacant slot and makes it a live, unlinked node holding nothing
    /// yet (`len` 0, inline): the caller stores the value next. The caller
    /// has checked [`vacancy`](Self::vacancy) before changing anything.
    #[inline(always)]
    pub(super) fn claim(&mut self, ty: TypeRef, flags: Flags) -> u32 {
        let slot = if self.free != NIL {
            self.free
        } else {
            debug_assert!(self.high() < self.cap, "claim without a vacancy");
            // A fresh vacant node's `next` is NIL: the free list stays empty.
            self.grow()
        };
        self.live += 1;
        let n = self.node_mut(slot);
        // Pop the free list (for a fresh node this keeps it empty).
        let next = n.next;
        n.occupy(ty, flags, NIL, NIL);
        self.free = next;
        slot
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
        let (ty, len, flags) = (n.ty, n.len, n.flags);
        // Vacate first, so the heap is consistent even if the drop panics.
        // The payload is left as it is: `release_value` still reads it.
        if n.vacate(free) {
            self.free = slot;
        } else {
            self.retired += 1;
        }
        if flags & flag::NEEDS_DROP == 0 {
            if flags & flag::INLINE != 0 {
                return None;
            }
            if flags & flag::IN_POOL != 0 {
                self.release_pooled(slot);
                return None;
            }
        }
        let desc = self.types.desc(ty);
        self.release_value(slot, desc, len as usize, flags)
    }

    /// Drops a released node's value and gives its storage back. The node is
    /// already vacant; its payload still says where the value is.
    #[inline(never)]
    pub(super) fn release_value(
        &mut self,
        slot: u32,
        desc: &'static TypeDesc,
        len: usize,
        flags: Flags,
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

    /// A shared reference to the value of a live node.
    ///
    /// # Safety
    /// The node must be live and hold a `T` (invariant 2: the caller checked
    /// the handle's generation, or the descriptor's type id).
    pub(super) unsafe fn value<T: Object + ?Sized>(&self, slot: u32) -> &T {
        let n = self.node(slot);
        // SAFETY: per the caller, the node holds a `T` with `len` elements.
        unsafe { &*T::from_raw(n.data(), n.len) }
    }

    /// A mutable reference to the value of a live node.
    ///
    /// # Safety
    /// As for [`Slots::value`].
    pub(super) unsafe fn value_mut<T: Object + ?Sized>(&mut self, slot: u32) -> &mut T {
        let n = self.node_mut(slot);
        let len = n.len;
        // SAFETY: per the caller, the node holds a `T`; the pointer comes
        // from `&mut self`, which makes the reference unique.
        unsafe { &mut *T::from_raw(n.data_mut(), len) }
    }

    /// The text of a live string node (without its NUL), or `None` for any
    /// other kind of node.
    pub(crate) fn str_text(&self, slot: u32) -> Option<&str> {
        if self.desc(slot).kind != Kind::Str {
            return None;
        }
        let n = self.node(slot);
        // SAFETY: string nodes hold valid UTF-8 plus a NUL (invariant 1 and
        // `Object for str`), borrowed with `&self`.
        Some(unsafe { &*<str as Object>::from_raw(n.data(), n.len) })
    }

    /// Drops every live value and releases all storage (the heap is going).
    /// Returns the first panic raised by a `Drop`.
    pub(crate) fn clear(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut first = None;
        for slot in 0..self.high() {
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
