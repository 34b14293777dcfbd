//! Walking the tree: children, ancestors, descendants in free order, and
//! any of them narrowed to one type.
//!
//! Every walk follows the links the nodes keep (parent, first child, next
//! sibling), so none allocates, and each step is O(1) but for climbing
//! back up at the end of a branch.

use std::marker::PhantomData;

use crate::storage::{Object, NIL};
use crate::{AnyPtr, Ptr, Talloc};

/// The children of an object, newest first (C's order); see
/// [`Talloc::children`] and [`Talloc::top_level`].
///
/// ```
/// # let mut heap = talloc::Talloc::new();
/// let dir = heap.new_context(None)?;
/// let a = heap.alloc_str(dir, "a")?;
/// let b = heap.alloc_str(dir, "b")?;
/// let kids: talloc::Children<'_> = heap.children(dir)?;
/// assert_eq!(kids.collect::<Vec<_>>(), [b.erase(), a.erase()]);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Children<'a> {
    heap: &'a Talloc,
    next: u32,
}

impl<'a> Children<'a> {
    pub(crate) fn new(heap: &'a Talloc, first: u32) -> Children<'a> {
        Children { heap, next: first }
    }

    /// Only the children that are `T`s, as typed handles.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// struct Conn(u32);
    /// let server = heap.new_context(None)?;
    /// heap.alloc(server, Conn(1))?;
    /// heap.alloc_str(server, "a log line")?;
    /// heap.alloc(server, Conn(2))?;
    /// let ids: Vec<u32> = heap.children(server)?.of_type::<Conn>().map(|c| heap[c].0).collect();
    /// assert_eq!(ids, [2, 1]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn of_type<T: Object + ?Sized>(self) -> OfType<'a, Self, T> {
        OfType::new(self.heap, self)
    }
}

impl Iterator for Children<'_> {
    type Item = AnyPtr;

    fn next(&mut self) -> Option<AnyPtr> {
        if self.next == NIL {
            return None;
        }
        let slot = self.next;
        self.next = self.heap.slots.node(slot).next;
        Some(self.heap.any(slot))
    }
}

/// An object's parent, grandparent and so on up to its top-level ancestor;
/// see [`Talloc::ancestors`].
#[derive(Debug, Clone)]
pub struct Ancestors<'a> {
    heap: &'a Talloc,
    next: u32,
}

impl<'a> Ancestors<'a> {
    /// Only the ancestors that are `T`s, nearest first (what
    /// [`find_parent_by_type`](Talloc::find_parent_by_type) gives is the
    /// first of them).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// struct Conn;
    /// let conn = heap.alloc(None, Conn)?;
    /// let req = heap.new_context(conn)?;
    /// let buf = heap.alloc_zeroed(req, 8)?;
    /// assert_eq!(heap.ancestors(buf)?.of_type::<Conn>().next(), Some(conn));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn of_type<T: Object + ?Sized>(self) -> OfType<'a, Self, T> {
        OfType::new(self.heap, self)
    }
}

impl Iterator for Ancestors<'_> {
    type Item = AnyPtr;

    fn next(&mut self) -> Option<AnyPtr> {
        if self.next == NIL {
            return None;
        }
        let slot = self.next;
        self.next = self.heap.slots.node(slot).parent;
        Some(self.heap.any(slot))
    }
}

/// Every object below one, in the order a free of it meets them: each
/// object before its children, children newest first, depth first (the
/// order destructors run in); see [`Talloc::descendants`].
#[derive(Debug, Clone)]
pub struct Descendants<'a> {
    heap: &'a Talloc,
    root: u32,
    next: u32,
}

impl<'a> Descendants<'a> {
    /// Only the descendants that are `T`s, in the same order.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let top = heap.new_context(None)?;
    /// let a = heap.alloc(top, 1u32)?;
    /// heap.alloc_str(a, "not a u32")?;
    /// heap.alloc(a, 2u32)?;
    /// heap.alloc(top, 3u32)?;
    /// let sum: u32 = heap.descendants(top)?.of_type::<u32>().map(|p| heap[p]).sum();
    /// assert_eq!(sum, 6);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn of_type<T: Object + ?Sized>(self) -> OfType<'a, Self, T> {
        OfType::new(self.heap, self)
    }
}

impl Iterator for Descendants<'_> {
    type Item = AnyPtr;

    fn next(&mut self) -> Option<AnyPtr> {
        let slot = self.next;
        if slot == NIL {
            return None;
        }
        // Pre-order by the links: down to the first child, else along to
        // the next sibling, else up until an ancestor below the root has
        // one.
        let nodes = &self.heap.slots;
        let mut at = slot;
        self.next = loop {
            let n = nodes.node(at);
            if at == slot && n.child != NIL {
                break n.child;
            }
            if at == self.root {
                break NIL;
            }
            if n.next != NIL {
                break n.next;
            }
            at = n.parent;
            if at == self.root {
                break NIL;
            }
        };
        Some(self.heap.any(slot))
    }
}

/// Any of the walks narrowed to objects of type `T`, as typed handles
/// (`of_type` on [`Children`], [`Ancestors`] or [`Descendants`]).
pub struct OfType<'a, I, T: ?Sized> {
    heap: &'a Talloc,
    inner: I,
    _type: PhantomData<fn() -> Ptr<T>>,
}

impl<'a, I, T: ?Sized> OfType<'a, I, T> {
    fn new(heap: &'a Talloc, inner: I) -> Self {
        OfType {
            heap,
            inner,
            _type: PhantomData,
        }
    }
}

impl<I: std::fmt::Debug, T: ?Sized> std::fmt::Debug for OfType<'_, I, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfType")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<I: Clone, T: ?Sized> Clone for OfType<'_, I, T> {
    fn clone(&self) -> Self {
        OfType::new(self.heap, self.inner.clone())
    }
}

impl<I: Iterator<Item = AnyPtr>, T: Object + ?Sized> Iterator for OfType<'_, I, T> {
    type Item = Ptr<T>;

    fn next(&mut self) -> Option<Ptr<T>> {
        let heap = self.heap;
        self.inner.find_map(|p| heap.downcast::<T>(p).ok())
    }
}

impl Talloc {
    /// The object's parent, its parent's parent and so on, nearest first,
    /// up to its top-level ancestor (the object itself is not included).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let b = heap.new_context(a)?;
    /// let c = heap.new_context(b)?;
    /// assert_eq!(heap.ancestors(c)?.collect::<Vec<_>>(), [b.erase(), a.erase()]);
    /// assert_eq!(heap.ancestors(a)?.count(), 0);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn ancestors(&self, p: impl Into<AnyPtr>) -> Result<Ancestors<'_>, crate::Error> {
        let slot = self.slot(p.into().key)?;
        Ok(Ancestors {
            heap: self,
            next: self.slots.node(slot).parent,
        })
    }

    /// The object's whole subtree below it, in free order: each object
    /// before its own children, children newest first, depth first, which
    /// is the order in which a [`free`](Talloc::free) of it runs
    /// destructors. No stack: the walk follows the links.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc_str(None, "P")?;
    /// let c1 = heap.alloc_str(p, "C1")?;
    /// heap.alloc_str(p, "C2")?;
    /// heap.alloc_str(c1, "G1")?;
    /// let order: Vec<&str> = heap.descendants(p)?.of_type::<str>().map(|s| &heap[s]).collect();
    /// assert_eq!(order, ["C2", "C1", "G1"]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn descendants(&self, p: impl Into<AnyPtr>) -> Result<Descendants<'_>, crate::Error> {
        let root = self.slot(p.into().key)?;
        Ok(Descendants {
            heap: self,
            root,
            next: self.slots.node(root).child,
        })
    }
}
