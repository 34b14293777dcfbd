//! Values between two heaps: a [`Detached`] value owns its storage while
//! a parcel carries it from one heap to another.

use std::alloc::Layout;
use std::mem;
use std::ptr::NonNull;

use super::*;

/// A value taken out of its heap with its storage, on its way to another
/// heap (see `Parcel`). It owns the value: dropping it drops the value.
pub(crate) struct Detached {
    desc: &'static TypeDesc,
    len: u32,
    store: DetachedStore,
}

pub(super) enum DetachedStore {
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

    /// A value that never was in a heap, stored as a node would store it:
    /// inline when it fits, else in an allocation of its own. On an error
    /// (no memory, too large) the value comes back.
    pub(crate) fn from_value<T: Send + 'static>(value: T) -> Result<Detached, (StoreError, T)> {
        let desc = <T as Object>::desc();
        let lay = match layout(desc, 1) {
            Ok(lay) => lay,
            Err(e) => return Err((e, value)),
        };
        let store = if lay.size() <= INLINE_BYTES && lay.align() <= 8 {
            let mut bytes = InlineBytes::UNINIT;
            // SAFETY: the inline bytes are 8-aligned and INLINE_BYTES long,
            // and `T` needs no more (checked just above).
            unsafe { bytes.as_mut_ptr().cast::<T>().write(value) };
            DetachedStore::Inline(bytes)
        } else {
            let ptr = match alloc_bytes(lay) {
                Ok(ptr) => ptr,
                Err(e) => return Err((e, value)),
            };
            // SAFETY: `alloc_bytes` gave room for one `T`, aligned for it
            // (a dangling aligned pointer for a zero-sized `T`).
            unsafe { ptr.as_ptr().cast::<T>().write(value) };
            DetachedStore::Heap {
                ptr,
                cap: lay.size() as u32,
            }
        };
        Ok(Detached {
            desc,
            len: 1,
            store,
        })
    }

    pub(super) fn data(&mut self) -> *mut u8 {
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
        let (desc, len) = (self.desc(slot), n.len);
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

    /// Registers the types of detached values about to be attached, so
    /// that attaching them cannot fail half way: `Full` if the heap's type
    /// table cannot take them all (some may have been registered, which
    /// changes nothing a user can see).
    pub(crate) fn admit_types<'a>(
        &mut self,
        values: impl IntoIterator<Item = &'a Detached>,
    ) -> Result<(), StoreError> {
        for d in values {
            self.type_of(d.desc)?;
        }
        Ok(())
    }

    /// Makes a new unlinked node holding a detached value. The caller has
    /// checked that there are enough [`vacancies`](Self::vacancies) and
    /// [admitted](Self::admit_types) its type.
    pub(crate) fn attach_value(&mut self, d: Detached, flags: Flags) -> u32 {
        debug_assert!(self.vacancy().is_ok());
        let d = mem::ManuallyDrop::new(d);
        let ty = self
            .type_of(d.desc)
            .expect("the caller admitted the type, and types stay registered");
        let slot = self.claim(ty, flags);
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
