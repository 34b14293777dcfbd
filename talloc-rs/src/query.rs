//! Questions about the tree: parents, children, sizes.

use crate::iter::Children;
use crate::storage::NIL;
use crate::{AnyPtr, Error, Talloc};

impl Talloc {
    /// The object's parent (`talloc_parent`), or `None` at the top level.
    /// O(1): every node stores its parent (C walks the sibling list).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let b = heap.alloc(a, 1u8)?;
    /// assert_eq!(heap.parent(b)?, Some(a.erase()));
    /// assert_eq!(heap.parent(a)?, None);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn parent(&self, p: impl Into<AnyPtr>) -> Result<Option<AnyPtr>, Error> {
        let slot = self.slot(p.into().key)?;
        let parent = self.slots.node(slot).parent;
        Ok((parent != NIL).then(|| self.any(parent)))
    }

    /// The name of the object's parent (`talloc_parent_name`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let b = heap.alloc(a, 1u8)?;
    /// assert_eq!(heap.parent_name(b)?, Some("talloc_new"));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn parent_name(&self, p: impl Into<AnyPtr>) -> Result<Option<&str>, Error> {
        let slot = self.slot(p.into().key)?;
        let parent = self.slots.node(slot).parent;
        Ok((parent != NIL).then(|| self.name_of(parent)))
    }

    /// The children of an object, newest first, as C lists them (reference
    /// handles and name chunks included).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.new_context(None)?;
    /// let a = heap.alloc(p, 1u8)?;
    /// let b = heap.alloc(p, 2u8)?;
    /// let kids: Vec<_> = heap.children(p)?.collect();
    /// assert_eq!(kids, [b.erase(), a.erase()]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn children(&self, p: impl Into<AnyPtr>) -> Result<Children<'_>, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(Children::new(self, self.slots.node(slot).child))
    }

    /// Every top-level object of the heap (children of C's null context),
    /// newest first, as any parent's children. It walks the top level's own
    /// list: the cost is the number of top-level objects, not of the heap.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// heap.alloc(a, 1u8)?;
    /// let b = heap.new_context(None)?;
    /// assert_eq!(heap.top_level().collect::<Vec<_>>(), [b.erase(), a.erase()]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn top_level(&self) -> Children<'_> {
        Children::new(self, self.top)
    }

    /// Whether `ancestor` is `p` or one of its ancestors. This is C's
    /// `talloc_is_parent(p, ancestor)`: note the argument order, which reads
    /// the other way round in C.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let top = heap.new_context(None)?;
    /// let kid = heap.new_context(top)?;
    /// let grandkid = heap.new_context(kid)?;
    /// assert!(heap.is_ancestor(top, grandkid)?);
    /// assert!(!heap.is_ancestor(grandkid, top)?);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn is_ancestor(
        &self,
        ancestor: impl Into<AnyPtr>,
        p: impl Into<AnyPtr>,
    ) -> Result<bool, Error> {
        let a = self.slot(ancestor.into().key)?;
        let p = self.slot(p.into().key)?;
        Ok(self.is_within(p, a))
    }

    /// The object's own size in bytes, excluding children
    /// (`talloc_get_size`): `size_of::<T>()` for a value, the element size
    /// times the length for an array, the length plus the NUL for a string,
    /// 0 for contexts, pools and reference handles.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc_array::<u32>(None, 5)?;
    /// assert_eq!(heap.size(a)?, 20);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn size(&self, p: impl Into<AnyPtr>) -> Result<usize, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(self.slots.own_size(slot))
    }

    /// Number of elements of an array (`talloc_array_length`), or 1 for a
    /// single value; for a string, its length in bytes without the NUL.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.alloc_array::<u64>(None, 3)?;
    /// assert_eq!(heap.len(a)?, 3);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn len(&self, p: impl Into<AnyPtr>) -> Result<usize, Error> {
        let slot = self.slot(p.into().key)?;
        let n = self.slots.node(slot);
        Ok(match self.slots.desc(slot).kind {
            crate::storage::Kind::Str => n.len as usize - 1,
            _ => n.len as usize,
        })
    }

    /// Bytes in the subtree (`talloc_total_size`), with C's rules: reference
    /// handles count 0, name chunks count, a referenced object counts only
    /// under its parent.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc_zeroed(None, 10)?;
    /// heap.alloc_zeroed(p, 5)?;
    /// assert_eq!(heap.total_size(p)?, 15);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn total_size(&self, p: impl Into<AnyPtr>) -> Result<usize, Error> {
        let slot = self.slot(p.into().key)?;
        let mut total = 0;
        self.walk(slot, |n, _| {
            total += self.slots.own_size(n);
            true
        });
        Ok(total)
    }

    /// Objects in the subtree, the object itself included
    /// (`talloc_total_blocks`); reference handles and name chunks count.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc_zeroed(None, 5)?;
    /// let other = heap.new_context(None)?;
    /// heap.reference(p, other)?;
    /// assert_eq!(heap.total_blocks(p)?, 2);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn total_blocks(&self, p: impl Into<AnyPtr>) -> Result<usize, Error> {
        let slot = self.slot(p.into().key)?;
        let mut total = 0;
        self.walk(slot, |_, _| {
            total += 1;
            true
        });
        Ok(total)
    }

    /// Visits `root` and its subtree depth first, children newest first,
    /// with each node's depth below `root`; `f` returns whether to descend.
    pub(crate) fn walk(&self, root: u32, mut f: impl FnMut(u32, usize) -> bool) {
        // A leaf (the common message, the common report line) needs no stack.
        if self.slots.node(root).child == NIL {
            f(root, 0);
            return;
        }
        let mut stack = vec![(root, 0usize)];
        while let Some((slot, depth)) = stack.pop() {
            if !f(slot, depth) {
                continue;
            }
            // Push the children oldest first so the newest pops first.
            let first = stack.len();
            let mut c = self.slots.node(slot).child;
            while c != NIL {
                stack.push((c, depth + 1));
                c = self.slots.node(c).next;
            }
            stack[first..].reverse();
        }
    }
}
