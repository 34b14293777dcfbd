//! Storing values in nodes (inline, out of line or in a pool region),
//! reading them, and resizing them.

use std::alloc::Layout;
use std::ptr::{self, NonNull};

use super::object::STR_DESC;
use super::*;

impl Slots {
    /// Stores `value` in a new unlinked node and returns its slot. With
    /// `pool`, a value that does not fit inline is carved from that region if
    /// it fits there.
    /// On an error the value comes back, untouched.
    pub(crate) fn insert<T: 'static>(
        &mut self,
        value: T,
        flags: Flags,
        pool: Option<u32>,
    ) -> Result<u32, (StoreError, T)> {
        let desc = <T as Object>::desc();
        let data = match self
            .type_of(desc)
            .and_then(|ty| self.reserve(desc, ty, 1, pool, flags))
        {
            Ok(data) => data,
            Err(e) => return Err((e, value)),
        };
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
        flags: Flags,
        pool: Option<u32>,
        mut fill: impl FnMut(usize) -> T,
    ) -> Result<u32, StoreError> {
        let desc = <[T] as Object>::desc();
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let ty = self.type_of(desc)?;
        let (slot, _) = self.reserve(desc, ty, len, pool, flags)?;
        // Both the element pointer and the length come from one borrow of
        // the node: a fresh `&mut Node` would invalidate an inline pointer.
        let n = self.node_mut(slot);
        let base = n.data_mut().cast::<T>();
        // The guard counts initialised elements as we go and stores the count
        // in the node when it is dropped, also when `fill` panics: the node is
        // then consistent and `free` drops exactly what was written. Keeping
        // the count in a local lets the loop compile to a plain store loop
        // (a `memset` for `alloc_zeroed`).
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
    #[inline(always)]
    pub(crate) fn insert_zeroed(
        &mut self,
        len: usize,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let (slot, data) = self.reserve(<[u8] as Object>::desc(), types::BYTES, len, pool, 0)?;
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
        flags: Flags,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        let len = s.len().checked_add(1).ok_or(StoreError::TooLarge)?;
        let len32 = u32::try_from(len).map_err(|_| StoreError::TooLarge)?;
        let (slot, data) = self.reserve(&STR_DESC, types::STR, len, pool, flags)?;
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
        flags: Flags,
        pool: Option<u32>,
    ) -> Result<u32, StoreError> {
        self.vacancy()?;
        let ty = self.type_of(desc)?;
        let slot = self.claim(ty, flags);
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

    /// Claims a slot and room for `len` elements of `desc`, stored as `ty`;
    /// returns the slot and where the elements go.
    #[inline(always)]
    pub(super) fn reserve(
        &mut self,
        desc: &'static TypeDesc,
        ty: TypeRef,
        len: usize,
        pool: Option<u32>,
        flags: Flags,
    ) -> Result<(u32, *mut u8), StoreError> {
        self.vacancy()?;
        // The common cases first, inlined: a small value outside pools, or
        // a value that fits in its pool.
        if desc.elem_align <= 8 {
            if let Some(size) = desc.elem_size.checked_mul(len) {
                match pool {
                    None if size <= INLINE_BYTES => {
                        let slot = self.claim(ty, flags);
                        let data = self.node_mut(slot).data_mut();
                        return Ok((slot, data));
                    }
                    Some(region) if size <= u32::MAX as usize => {
                        if let Some(found) = self.reserve_in_pool(ty, size, region, flags) {
                            return Ok(found);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.reserve_slow(desc, ty, len, pool, flags)
    }

    /// [`reserve`](Self::reserve) for pools and values that do not fit inline.
    #[inline(never)]
    pub(super) fn reserve_slow(
        &mut self,
        desc: &'static TypeDesc,
        ty: TypeRef,
        len: usize,
        pool: Option<u32>,
        flags: Flags,
    ) -> Result<(u32, *mut u8), StoreError> {
        let lay = layout(desc, len)?;
        if lay.size() <= INLINE_BYTES && lay.align() <= 8 && pool.is_none() {
            let slot = self.claim(ty, flags);
            let data = self.node_mut(slot).data_mut();
            return Ok((slot, data));
        }
        if let Some(region) = pool {
            if let Some((off, cap)) = self.carve(region, lay) {
                let slot = self.claim(ty, flags | flag::IN_POOL);
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
                let slot = self.claim(ty, flags);
                let data = self.node_mut(slot).data_mut();
                return Ok((slot, data));
            }
        }
        let p = alloc_bytes(lay)?;
        let slot = self.claim(ty, flags);
        let n = self.node_mut(slot);
        n.flags &= !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr: p,
            pool: NIL,
            cap: lay.size() as u32,
        };
        Ok((slot, p.as_ptr()))
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
        if !self.node(slot).is_live()
            || self.desc(slot).kind != Kind::Slice
            || !self.holds::<[T]>(slot)
        {
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
    pub(super) unsafe fn resize_unchecked<T: 'static>(
        &mut self,
        slot: u32,
        new_len: usize,
        mut fill: impl FnMut(usize) -> T,
    ) -> Result<Option<u32>, StoreError> {
        let desc = self.desc(slot);
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
        if !self.node(slot).is_live() || self.desc(slot).kind != Kind::Str {
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
}
