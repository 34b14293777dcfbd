//! Handles: small `Copy` values that name an object and never dangle.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use crate::storage::HeapId;

/// The identity of one object: heap, slot and the slot's generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) heap: HeapId,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// A typed handle to an object of type `T` in a [`Talloc`](crate::Talloc)
/// heap.
///
/// A `Ptr` is 16 bytes and `Copy`. It is not a Rust reference: it borrows
/// nothing, and it stays safe to use after its object is freed or moved to
/// another heap, where every access returns [`Error::Stale`](crate::Error::Stale).
/// A handle used on another heap returns
/// [`Error::ForeignHeap`](crate::Error::ForeignHeap).
///
/// ```
/// use talloc::{Talloc, Error};
/// let mut heap = Talloc::new();
/// let p = heap.alloc(None, 41u32)?;
/// heap[p] += 1;
/// assert_eq!(heap.get(p)?, &42);
/// heap.free(p)?;
/// assert_eq!(heap.get(p), Err(Error::Stale));
/// # Ok::<(), Error>(())
/// ```
pub struct Ptr<T: ?Sized> {
    pub(crate) key: Key,
    _type: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> Ptr<T> {
    pub(crate) fn from_key(key: Key) -> Ptr<T> {
        Ptr {
            key,
            _type: PhantomData,
        }
    }

    /// The type-erased form of this handle.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// assert_eq!(heap.downcast::<u8>(p.erase())?, p);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        AnyPtr { key: self.key }
    }
}

impl<T: ?Sized> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for Ptr<T> {}
impl<T: ?Sized> PartialEq for Ptr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T: ?Sized> Eq for Ptr<T> {}
impl<T: ?Sized> Hash for Ptr<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}
/// Handles order by heap, then slot, then generation, as [`AnyPtr`]s do:
/// an order to keep them in a `BTreeMap`, not an order of allocation.
///
/// ```
/// use std::collections::BTreeSet;
/// # let mut heap = talloc::Talloc::new();
/// let a = heap.alloc(None, 1u8)?;
/// let b = heap.alloc(None, 2u8)?;
/// let set: BTreeSet<_> = [b, a, b].into_iter().collect();
/// assert_eq!(set.len(), 2);
/// assert_eq!(a.cmp(&b), a.erase().cmp(&b.erase()));
/// # Ok::<(), talloc::Error>(())
/// ```
impl<T: ?Sized> Ord for Ptr<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}
impl<T: ?Sized> PartialOrd for Ptr<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: ?Sized> PartialEq<AnyPtr> for Ptr<T> {
    fn eq(&self, other: &AnyPtr) -> bool {
        self.key == other.key
    }
}
impl<T: ?Sized> PartialEq<Ptr<T>> for AnyPtr {
    fn eq(&self, other: &Ptr<T>) -> bool {
        self.key == other.key
    }
}

impl<T: ?Sized> fmt::Debug for Ptr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ptr<{}>", std::any::type_name::<T>())?;
        fmt::Debug::fmt(&self.key, f)
    }
}

/// A type-erased handle to any object of a heap: what `children`, `parent`
/// and reports hand out. Turn it back into a typed [`Ptr`] with
/// [`Talloc::downcast`](crate::Talloc::downcast).
///
/// ```
/// # let mut heap = talloc::Talloc::new();
/// let root = heap.new_context(None)?;
/// let s = heap.alloc_str(root, "hello")?;
/// let kid = heap.children(root)?.next().unwrap();
/// assert_eq!(kid, s.erase());
/// assert_eq!(heap.get(heap.downcast::<str>(kid)?)?, "hello");
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnyPtr {
    pub(crate) key: Key,
}

impl fmt::Debug for AnyPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyPtr")?;
        fmt::Debug::fmt(&self.key, f)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(heap {}, slot {}, gen {})",
            self.heap.get(),
            self.slot,
            self.gen
        )
    }
}

impl<T: ?Sized> From<Ptr<T>> for AnyPtr {
    fn from(p: Ptr<T>) -> AnyPtr {
        p.erase()
    }
}

/// What can name the parent of a new or moved object: a handle, or `None`
/// for a top-level object (C's `NULL` context).
///
/// ```
/// # let mut heap = talloc::Talloc::new();
/// let top = heap.alloc(None, 1u8)?;          // top level
/// let kid = heap.alloc(top, 2u8)?;           // under a typed handle
/// let any = heap.alloc(top.erase(), 3u8)?;   // under an erased one
/// let maybe: Option<talloc::AnyPtr> = Some(kid.erase());
/// heap.alloc(maybe, 4u8)?;
/// # Ok::<(), talloc::Error>(())
/// ```
pub trait IntoParent {
    /// The parent, or `None` for the top level.
    ///
    /// ```
    /// use talloc::IntoParent;
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// assert_eq!(p.into_parent(), Some(p.erase()));
    /// assert_eq!(None::<talloc::AnyPtr>.into_parent(), None);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    fn into_parent(self) -> Option<AnyPtr>;
}

impl<T: ?Sized> IntoParent for Ptr<T> {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.erase())
    }
}
impl IntoParent for AnyPtr {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self)
    }
}
impl IntoParent for Option<AnyPtr> {
    fn into_parent(self) -> Option<AnyPtr> {
        self
    }
}
