//! Reparenting: steal, move, reparent; references and unlink.

use crate::ptr::Key;
use crate::storage::{flag, marker_desc, NIL};
use crate::{AnyPtr, Error, IntoParent, Ptr, Talloc};

/// The zero-sized value of a reference handle.
pub(crate) struct Reference;

impl Talloc {
    /// Gives an object a new parent (`talloc_steal`); `None` makes it
    /// top-level. The object goes to the head of the new parent's children
    /// (it becomes the newest child), even when the parent does not change.
    ///
    /// Unlike C, a steal that would put an object under itself or one of its
    /// own descendants is refused with [`Error::Loop`] (C makes a cycle that
    /// leaks). The check walks up from the new parent, so a steal costs
    /// O(depth of the new parent); the relinking itself is O(1). References
    /// are left as they are: only the primary parent changes.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let b = heap.new_context(None)?;
    /// let x = heap.alloc_str(a, "x")?;
    /// heap.steal(b, x)?;
    /// assert_eq!(heap.parent(x)?, Some(b.erase()));
    /// heap.free(a)?;
    /// assert_eq!(&heap[x], "x");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn steal<T: ?Sized>(
        &mut self,
        new_parent: impl IntoParent,
        p: Ptr<T>,
    ) -> Result<Ptr<T>, Error> {
        self.steal_key(new_parent.into_parent(), p.key)?;
        Ok(p)
    }

    /// [`steal`](Talloc::steal) for a type-erased handle.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let x = heap.alloc(None, 1u8)?.erase();
    /// heap.steal_any(a, x)?;
    /// assert_eq!(heap.parent(x)?, Some(a.erase()));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn steal_any(&mut self, new_parent: impl IntoParent, p: AnyPtr) -> Result<(), Error> {
        self.steal_key(new_parent.into_parent(), p.key)
    }

    /// The body of [`steal`](Talloc::steal), not generic; inlined into the
    /// caller (a steal is a few dozen instructions, and the call was a
    /// fifth of them).
    #[inline(always)]
    fn steal_key(&mut self, new_parent: Option<AnyPtr>, key: Key) -> Result<(), Error> {
        let slot = self.slot(key)?;
        let dest = self.parent_slot(new_parent)?;
        let n = self.slots.node(slot);
        if n.has(flag::FREEING) {
            return Err(Error::BeingFreed);
        }
        if dest != NIL {
            // Only a node with children is an ancestor of anything but
            // itself: a leaf needs no walk up from `dest`.
            if dest == slot || (n.child != NIL && self.is_within(dest, slot)) {
                return Err(Error::Loop);
            }
            if self.slots.node(dest).has(flag::REF_HANDLE) {
                return Err(Error::IsReference);
            }
        }
        self.move_to(slot, dest);
        Ok(())
    }

    /// Steals the object and takes the caller's handle (`talloc_move`): after
    /// the call the `Option` is `None`. On an error the handle stays.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let dest = heap.new_context(None)?;
    /// let mut mine = Some(heap.alloc_str(None, "data")?);
    /// let moved = heap.move_to_parent(dest, &mut mine)?;
    /// assert!(mine.is_none());
    /// assert_eq!(heap.parent(moved)?, Some(dest.erase()));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn move_to_parent<T: ?Sized>(
        &mut self,
        new_parent: impl IntoParent,
        p: &mut Option<Ptr<T>>,
    ) -> Result<Ptr<T>, Error> {
        let handle = p.ok_or(Error::Stale)?;
        self.steal(new_parent, handle)?;
        *p = None;
        Ok(handle)
    }

    /// Relinks a live node under `dest` (NIL: top level), keeping memory
    /// limits right. No checks.
    #[inline]
    pub(crate) fn move_to(&mut self, slot: u32, dest: u32) {
        if self.limits == 0 {
            self.slots.relink(slot, dest, &mut self.top);
            return;
        }
        self.move_to_limited(slot, dest);
    }

    /// [`move_to`](Self::move_to) while memory limits are set.
    #[inline(never)]
    fn move_to_limited(&mut self, slot: u32, dest: u32) {
        let old = self.slots.node(slot).parent;
        let bytes = if self.limits > 0 {
            self.charged_bytes(slot)
        } else {
            0
        };
        if self.limits > 0 && old != NIL && !self.slots.node(old).has(flag::FREEING) {
            self.uncharge(old, bytes);
        }
        self.unlink_node(slot);
        self.link(dest, slot);
        if self.limits > 0 && dest != NIL {
            // Steals never fail on a limit (T19): usage may go past it.
            self.charge_unchecked(dest, bytes);
        }
    }

    /// Changes one specific parent of an object (`talloc_reparent`): if
    /// `old_parent` is its parent, this is a steal; if `old_parent` owns a
    /// reference to it, that reference moves to `new_parent`. Otherwise
    /// [`Error::NotAParent`].
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let (a, b, c) = (heap.new_context(None)?, heap.new_context(None)?, heap.new_context(None)?);
    /// let x = heap.alloc_str(a, "x")?;
    /// heap.reference(b, x)?;
    /// heap.reparent(b, c, x)?;                // the reference moves to c
    /// assert_eq!(heap.parent(x)?, Some(a.erase()));
    /// heap.unlink(c, x)?;
    /// assert_eq!(heap.reference_count(x)?, 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn reparent<T: ?Sized>(
        &mut self,
        old_parent: impl IntoParent,
        new_parent: impl IntoParent,
        p: Ptr<T>,
    ) -> Result<Ptr<T>, Error> {
        let slot = self.slot(p.key)?;
        let old = self.parent_slot(old_parent.into_parent())?;
        let new_parent = new_parent.into_parent();
        if self.slots.node(slot).parent == old {
            return self.steal(new_parent, p);
        }
        let handle = self.find_handle(slot, old).ok_or(Error::NotAParent)?;
        let h = self.any(handle);
        self.steal_any(new_parent, h)?;
        Ok(p)
    }

    /// Makes `owner` an additional parent of `p` (`talloc_reference`): `p`
    /// now lives until both its parent and `owner` let go of it. The
    /// reference is a small handle object, a child of `owner`.
    ///
    /// References turn the tree into a graph; prefer steal. A referenced
    /// object cannot be freed directly ([`Error::HasReferences`]); when its
    /// parent is freed it survives, and the owner of its newest reference
    /// becomes its parent.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let (p1, p2) = (heap.new_context(None)?, heap.new_context(None)?);
    /// let c = heap.alloc_str(p1, "shared")?;
    /// heap.reference(p2, c)?;
    /// heap.free(p1)?;
    /// assert_eq!(heap.parent(c)?, Some(p2.erase()));
    /// assert_eq!(heap.reference_count(c)?, 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn reference<T: ?Sized>(
        &mut self,
        owner: impl IntoParent,
        p: Ptr<T>,
    ) -> Result<Ptr<T>, Error> {
        let target = self.slot(p.key)?;
        let owner = self.parent_slot(owner.into_parent())?;
        let tn = self.slots.node(target);
        if tn.has(flag::FREEING) {
            return Err(Error::BeingFreed);
        }
        if tn.has(flag::REF_HANDLE) {
            return Err(Error::IsReference);
        }
        if owner != NIL && self.slots.node(owner).has(flag::REF_HANDLE) {
            return Err(Error::IsReference);
        }
        let handle =
            self.slots
                .insert_marker(marker_desc::<Reference>(), flag::REF_HANDLE, None)?;
        self.rare_mut(handle).target = Some(p.key);
        self.link(owner, handle);
        self.rare_mut(target).refs.push(handle);
        self.slots.node_mut(target).flags |= flag::REFERENCED;
        Ok(p)
    }

    /// A reference with no owner (`talloc_increase_ref_count`): the object
    /// stays alive until [`unlink`](Talloc::unlink)`(None, p)`.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let x = heap.alloc_str(None, "x")?;
    /// heap.increase_ref_count(x)?;
    /// assert_eq!(heap.reference_count(x)?, 1);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn increase_ref_count<T: ?Sized>(&mut self, p: Ptr<T>) -> Result<Ptr<T>, Error> {
        self.reference(None, p)
    }

    /// Number of references to an object (`talloc_reference_count`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let x = heap.alloc_str(None, "x")?;
    /// assert_eq!(heap.reference_count(x)?, 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn reference_count(&self, p: impl Into<AnyPtr>) -> Result<usize, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(self.rare(slot).map_or(0, |r| r.refs.len()))
    }

    /// Removes one parent of an object (`talloc_unlink`): if `ctx` owns a
    /// reference to it, that reference goes; if `ctx` is its parent, the
    /// object is freed when it has no references, and otherwise passes to
    /// the owner of its newest reference. When that newest reference is the
    /// object's own (a self-reference), only that reference goes and the
    /// object stays where it is, as in C. A newest reference held deeper in
    /// the object's subtree is passed over for the newest one from outside
    /// (C would make a loop). Anything else is [`Error::NotAParent`].
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let (a, b) = (heap.new_context(None)?, heap.new_context(None)?);
    /// let x = heap.alloc_str(a, "x")?;
    /// heap.reference(b, x)?;
    /// heap.unlink(a, x)?;                      // b now owns x
    /// assert_eq!(heap.parent(x)?, Some(b.erase()));
    /// heap.unlink(b, x)?;                      // x is freed
    /// assert!(!heap.contains(x));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn unlink(&mut self, ctx: impl IntoParent, p: impl Into<AnyPtr>) -> Result<(), Error> {
        self.unlink_ref(ctx.into_parent(), p.into())
    }

    pub(crate) fn unlink_ref(&mut self, ctx: Option<AnyPtr>, p: AnyPtr) -> Result<(), Error> {
        let slot = self.slot(p.key)?;
        let owner = self.parent_slot(ctx)?;
        if let Some(handle) = self.find_handle(slot, owner) {
            let h = self.any(handle);
            return self.free(h);
        }
        if self.slots.node(slot).parent != owner {
            return Err(Error::NotAParent);
        }
        if self.slots.node(slot).has(flag::FREEING) {
            return Err(Error::BeingFreed);
        }
        // A newest reference held by the object itself is dropped and the
        // object stays (C steals it to itself, which changes nothing).
        if let Some(&newest) = self.rare(slot).and_then(|r| r.refs.last()) {
            if self.slots.node(newest).parent == slot {
                let h = self.any(newest);
                return self.free(h);
            }
        }
        // The newest reference from outside the object's own subtree becomes
        // the parent link; with none, the object goes (references held inside
        // its subtree go with it).
        let Some(&handle) = self.outside_refs(slot).last() else {
            return self.free_subtree(p.key, slot);
        };
        let new_parent = self.slots.node(handle).parent;
        let h = self.any(handle);
        self.free(h)?;
        self.move_to(slot, new_parent);
        Ok(())
    }

    /// The reference handles of `slot` held from outside its subtree,
    /// oldest first.
    pub(crate) fn outside_refs(&self, slot: u32) -> Vec<u32> {
        if !self.slots.node(slot).has(flag::REFERENCED) {
            return Vec::new();
        }
        let refs = self.rare(slot).map(|r| r.refs.as_slice()).unwrap_or(&[]);
        refs.iter()
            .copied()
            .filter(|&h| !self.is_within(h, slot))
            .collect()
    }

    /// The newest reference handle of `target` owned by `owner`.
    fn find_handle(&self, target: u32, owner: u32) -> Option<u32> {
        let refs = &self.rare(target)?.refs;
        refs.iter()
            .rev()
            .copied()
            .find(|&h| self.slots.node(h).parent == owner)
    }

    /// A reference handle is going: take it off its target's list.
    pub(crate) fn forget_handle(&mut self, handle: u32) {
        let Some(target) = self.rare(handle).and_then(|r| r.target) else {
            return;
        };
        let Ok(t) = self.slot(target) else { return };
        let rare = self.rare_mut(t);
        rare.refs.retain(|&h| h != handle);
        if rare.refs.is_empty() {
            self.slots.node_mut(t).flags &= !flag::REFERENCED;
        }
    }

    /// The object a reference handle points at (for reports).
    pub(crate) fn handle_target(&self, handle: u32) -> Option<u32> {
        self.rare(handle)
            .and_then(|r| r.target)
            .and_then(|k| self.slot(k).ok())
    }
}
