//! The hottest operations, each in one pass over the node array: storing
//! a small value as the newest child of a parent, freeing a plain leaf,
//! and moving a node to a new parent.
//!
//! They do what the general paths do (`reserve` and `claim` then `link`
//! for an allocation, `unlink_node` then `release` for a free, `unlink_node`
//! then `link` for a move), for the common case only, and decline anything
//! else before changing anything. Borrowing the node array once, as a
//! slice, lets the compiler keep its address and length in registers:
//! through `node_mut` each store into a node could have changed the
//! table's own fields, which were read again after every store
//! (`talloc_churn` ran 201 instructions a step with the general paths, 150
//! with these).

use std::mem;

use super::pool::granule;
use super::*;
use crate::ptr::Key;

/// The flags a plain leaf may have: freeing it runs nothing, and it needs
/// no bookkeeping beyond its links and its storage.
const LEAF: Flags = flag::INLINE | flag::NOT_SEND | flag::IN_POOL | flag::CONTEXT;

impl Slots {
    /// Claims a vacant slot off the free list as the newest child of the
    /// live slot `parent` (of the top level, whose head is `top`, for NIL),
    /// with `desc`, `flags` (plus `INLINE`) and `len`: everything but the
    /// value. `None`, and nothing changed, only when the free list is empty.
    ///
    /// Every caller has the parent from `Talloc::home`, which refuses a
    /// reference handle and says whether children go to a pool.
    #[inline(always)]
    fn claim_leaf(
        &mut self,
        parent: u32,
        top: &mut u32,
        ty: TypeRef,
        flags: Flags,
        len: u32,
    ) -> Option<(u32, &mut Node)> {
        let slot = self.free;
        if slot == NIL {
            return None;
        }
        let nodes = &mut self.nodes[..];
        let head = push_head(nodes, slot, parent, top);
        let n = &mut nodes[slot as usize];
        self.free = n.next;
        self.live += 1;
        n.occupy(ty, flags, parent, head);
        n.len = len;
        Some((slot, n))
    }

    /// Stores `len <= INLINE_BYTES` zero bytes as a `[u8]` child of the
    /// live slot `parent` (NIL: the top level, headed by `top`), whose
    /// children go to no pool (and no memory limit is set: the caller
    /// checked). `None`, and nothing changed, if the fast path does not
    /// apply.
    #[inline(always)]
    pub(crate) fn insert_zeroed_leaf(
        &mut self,
        parent: u32,
        top: &mut u32,
        len: usize,
    ) -> Option<Key> {
        if len > INLINE_BYTES {
            return None;
        }
        let (slot, n) = self.claim_leaf(parent, top, types::BYTES, 0, len as u32)?;
        // A fixed-size store of the whole inline area, no `memset` call.
        n.payload.inline = InlineBytes::ZERO;
        let gen = n.gen;
        Some(self.key_of(slot, gen))
    }

    /// Stores `value` inline as a child of the live slot `parent` (see
    /// [`insert_zeroed_leaf`](Self::insert_zeroed_leaf)); the value comes
    /// back if the fast path does not apply.
    #[inline(always)]
    pub(crate) fn insert_leaf<T: 'static>(
        &mut self,
        parent: u32,
        top: &mut u32,
        value: T,
        flags: Flags,
    ) -> Result<Key, T> {
        if mem::size_of::<T>() > INLINE_BYTES || mem::align_of::<T>() > 8 {
            return Err(value);
        }
        let Ok(ty) = self.type_of(<T as Object>::desc()) else {
            return Err(value);
        };
        let Some((slot, n)) = self.claim_leaf(parent, top, ty, flags, 1) else {
            return Err(value);
        };
        // SAFETY: the inline area holds any value of at most INLINE_BYTES
        // bytes and alignment 8 (checked above); the node is ours, its
        // length already says one element, as invariant 1 asks.
        unsafe { n.payload.inline.as_mut_ptr().cast::<T>().write(value) };
        let gen = n.gen;
        Ok(self.key_of(slot, gen))
    }

    /// Stores `len` zero bytes as a `[u8]` child of the live slot `parent`,
    /// whose children go to the pool region `region`, carved from the
    /// region's end.
    /// `None`, and nothing changed, if they do not fit there (the general
    /// path then decides) or the fast path does not apply.
    #[inline(always)]
    pub(crate) fn insert_pooled_leaf(
        &mut self,
        parent: u32,
        top: &mut u32,
        region: u32,
        len: usize,
    ) -> Option<Key> {
        if len > u32::MAX as usize || self.free == NIL {
            return None;
        }
        let r = self.regions.get_mut(region as usize)?.as_mut()?;
        // Regions are 16-aligned, so aligning the offset to 8 aligns the
        // address (bytes need less).
        let off = align_up(r.end, 8);
        if off > r.size || len > r.size - off {
            return None;
        }
        let cap = granule(off, len, r.size);
        // SAFETY: `off + len <= r.size`: the range lies inside the region's
        // allocation.
        let ptr = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(off)) };
        // From here on nothing can fail: the free list is not empty.
        r.end = off + cap;
        r.count += 1;
        let (slot, n) = self.claim_leaf(parent, top, types::BYTES, flag::IN_POOL, len as u32)?;
        n.flags &= !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr,
            pool: region,
            cap: cap as u32,
        };
        let gen = n.gen;
        // SAFETY: the range is the node's own from now on (invariant 1):
        // `len` bytes inside the region, zeroed before anyone reads them.
        unsafe { ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Some(self.key_of(slot, gen))
    }

    /// Frees the live slot `slot` if it is a plain leaf: no children,
    /// nothing rare, a value with no `Drop` stored inline or in a pool.
    /// `top` is the head of the top-level list, for a node without parent.
    /// False, and nothing changed, for any other node (or while memory
    /// limits are set: the caller checks).
    #[inline(always)]
    pub(crate) fn free_leaf(&mut self, slot: u32, top: &mut u32) -> bool {
        let nodes = &mut self.nodes[..];
        let Some(n) = nodes.get(slot as usize) else {
            return false;
        };
        let flags = n.flags;
        // `LEAF` leaves out `NEEDS_DROP`: a value with a `Drop` goes the
        // general way.
        if n.child != NIL || flags & !LEAF != 0 || flags & (flag::INLINE | flag::IN_POOL) == 0 {
            return false;
        }
        debug_assert!(n.rare == NIL, "a node without RARE has no entry");
        unlink_in(nodes, slot, top);
        // The payload stays: a pooled member's range is given back below.
        if nodes[slot as usize].vacate(self.free) {
            self.free = slot;
        } else {
            self.retired += 1;
        }
        self.live -= 1;
        if flags & flag::IN_POOL != 0 {
            self.release_pooled(slot);
        }
        true
    }

    /// Moves the live slot `slot` to the head of the children of `dest`
    /// (of the top level, whose head is `top`, for NIL). The caller has
    /// checked the move (no loop, no reference handle as parent).
    #[inline(always)]
    pub(crate) fn relink(&mut self, slot: u32, dest: u32, top: &mut u32) {
        let nodes = &mut self.nodes[..];
        unlink_in(nodes, slot, top);
        link_in(nodes, slot, dest, top);
    }

    /// Puts the unlinked live slot `slot` at the head of `parent`'s
    /// children (of the top level, headed by `top`, for NIL).
    #[inline(always)]
    pub(crate) fn link(&mut self, parent: u32, slot: u32, top: &mut u32) {
        link_in(&mut self.nodes, slot, parent, top);
    }

    /// Takes the live slot `slot` out of its parent's child list (or the
    /// top level's, headed by `top`); its own links become NIL.
    #[inline(always)]
    pub(crate) fn unlink(&mut self, slot: u32, top: &mut u32) {
        unlink_in(&mut self.nodes, slot, top);
        let n = &mut self.nodes[slot as usize];
        n.parent = NIL;
        n.prev = NIL;
        n.next = NIL;
    }

    #[inline(always)]
    fn key_of(&self, slot: u32, gen: u32) -> Key {
        Key {
            heap: self.id,
            slot,
            gen,
        }
    }
}

/// Takes `slot` out of its sibling list: its neighbours (or its parent, or
/// the top level's head `top`) skip it. Its own links are left as they are.
#[inline(always)]
fn unlink_in(nodes: &mut [Node], slot: u32, top: &mut u32) {
    let n = &nodes[slot as usize];
    let (parent, prev, next) = (n.parent, n.prev, n.next);
    if prev != NIL {
        nodes[prev as usize].next = next;
    } else if parent != NIL {
        nodes[parent as usize].child = next;
    } else if *top == slot {
        *top = next;
    }
    if next != NIL {
        nodes[next as usize].prev = prev;
    }
}

/// Makes `slot` the head of `dest`'s child list (of the top level, whose
/// head is `top`, for NIL) and returns the old head, now its next sibling;
/// `slot`'s own links are the caller's to set.
#[inline(always)]
fn push_head(nodes: &mut [Node], slot: u32, dest: u32, top: &mut u32) -> u32 {
    let head = if dest == NIL {
        mem::replace(top, slot)
    } else {
        mem::replace(&mut nodes[dest as usize].child, slot)
    };
    if head != NIL {
        nodes[head as usize].prev = slot;
    }
    head
}

/// Puts `slot` at the head of `dest`'s children (of the top level, whose
/// head is `top`, for NIL), whatever its links said before.
#[inline(always)]
fn link_in(nodes: &mut [Node], slot: u32, dest: u32, top: &mut u32) {
    let head = push_head(nodes, slot, dest, top);
    let n = &mut nodes[slot as usize];
    n.parent = dest;
    n.prev = NIL;
    n.next = head;
}
