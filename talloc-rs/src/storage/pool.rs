//! Pool regions: bump-allocated byte ranges carved into members, their
//! memory reused from the end as C's pools do, and released when the
//! pool and its last member are gone.

use std::alloc::Layout;
use std::ptr::{self, NonNull};

use super::*;

impl Region {
    /// The first offset at or after `from` where `lay` fits, if any. The
    /// address is aligned, not the offset: regions are only 16-aligned.
    pub(super) fn fit_from(&self, from: usize, lay: Layout) -> Option<usize> {
        let base = self.mem.as_ptr() as usize;
        let off = align_up(base + from, lay.align().max(8)) - base;
        let end = off.checked_add(lay.size())?;
        (end <= self.size).then_some(off)
    }

    /// Members other than the pool node itself.
    pub(super) fn members(&self) -> u32 {
        self.count - u32::from(self.pool_alive)
    }
}

/// Where a pool member that outgrows its granule goes, C's order of
/// preference: C grows a chunk in place when it is the pool's last, slides
/// the pool's only member to the pool's start, carves a new chunk from the
/// same pool, and only then leaves the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoolGrow {
    /// Stays where it is, its granule widened (it was the region's last).
    InPlace,
    /// The region's only member: it slides to this offset (its start).
    Slide(usize),
    /// A new range at this offset, the old one left behind.
    Carve(usize),
}

/// Pool members take whole granules of this many bytes (clipped at the end
/// of the region), as C's pool chunks do: a member can grow within its
/// granule without moving.
pub(super) const GRANULE: usize = 16;

/// The bytes a member of `size` bytes at `off` takes in a region of
/// `region_size` bytes (`off + size <= region_size`).
#[inline]
pub(super) fn granule(off: usize, size: usize, region_size: usize) -> usize {
    align_up(size, GRANULE).min(region_size - off)
}

impl Slots {
    /// Carves `size` bytes (alignment at most 8) from a region and claims a
    /// node for them; `None` if they do not fit.
    #[inline(always)]
    pub(super) fn reserve_in_pool(
        &mut self,
        ty: TypeRef,
        size: usize,
        region: u32,
        flags: Flags,
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
        let slot = self.claim(ty, flags | flag::IN_POOL);
        let n = self.node_mut(slot);
        n.flags &= !flag::INLINE;
        n.payload.out = OutOfLine {
            ptr: p,
            pool: region,
            cap: cap as u32,
        };
        Some((slot, p.as_ptr()))
    }

    /// Takes a range for `lay` at the region's end, if it fits: its offset
    /// and the bytes it takes (a whole granule).
    #[inline]
    pub(super) fn carve(&mut self, region: u32, lay: Layout) -> Option<(usize, usize)> {
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
    /// region of `extra` more bytes, the node being the pool itself. On an
    /// error the value comes back, untouched.
    pub(crate) fn insert_pooled<T: 'static>(
        &mut self,
        value: T,
        flags: Flags,
        extra: usize,
    ) -> Result<u32, (StoreError, T)> {
        let desc = <T as Object>::desc();
        let ty = match self.type_of(desc) {
            Ok(ty) => ty,
            Err(e) => return Err((e, value)),
        };
        let region = match self.pooled_region::<T>(extra) {
            Ok(region) => region,
            Err(e) => return Err((e, value)),
        };
        let lay = layout(desc, 1).expect("checked by pooled_region");
        let (off, _) = self.carve(region, lay).expect("region sized for the body");
        let r = self.regions[region as usize].as_mut().expect("live region");
        r.base = r.end;
        // SAFETY: offset 0 of a region of at least `lay.size()` bytes.
        let p = unsafe { NonNull::new_unchecked(r.mem.as_ptr().add(off)) };
        // SAFETY: `p` is aligned for `T` (regions are 16-aligned, align <= 16)
        // and has room for one `T`.
        unsafe { p.as_ptr().cast::<T>().write(value) };
        let slot = self.claim(ty, flags | flag::POOL);
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

    /// A new region for a pooled object holding a `T` and `extra` more
    /// bytes.
    fn pooled_region<T: 'static>(&mut self, extra: usize) -> Result<u32, StoreError> {
        self.vacancy()?;
        let lay = layout(<T as Object>::desc(), 1)?;
        let size = align_up(lay.size(), 16)
            .checked_add(extra)
            .ok_or(StoreError::TooLarge)?;
        if lay.align() > REGION_ALIGN {
            return Err(StoreError::TooLarge);
        }
        self.new_region(size)
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

    /// Gives a released pool member's bytes back to its region (a value that
    /// needs no drop). Inlined into the free: it is a few instructions.
    #[inline(always)]
    pub(super) fn release_pooled(&mut self, slot: u32) {
        // SAFETY: an IN_POOL node stores `out` (set by `reserve`); vacating
        // did not touch the payload.
        let out = unsafe { self.node(slot).payload.out };
        self.region_put(out.pool, out.ptr.as_ptr(), out.cap as usize);
    }

    /// One object of a region is gone.
    #[inline(always)]
    pub(super) fn region_put(&mut self, region: u32, data: *mut u8, size: usize) {
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
    pub(super) fn drop_region(&mut self, region: u32) {
        let r = self.regions[region as usize].take().expect("live region");
        let lay = Layout::from_size_align(r.size.max(1), REGION_ALIGN).expect("valid");
        // SAFETY: `mem` came from `alloc_bytes` with this layout.
        unsafe { dealloc_bytes(r.mem, lay) };
        self.free_regions.push(region);
    }

    /// Where a pool member growing to `new_size` bytes would go inside its
    /// pool, or `None` if it is no pool member or must leave its pool.
    pub(super) fn pool_grow(&self, slot: u32, new_size: usize) -> Option<PoolGrow> {
        let n = self.node(slot);
        if !n.has(flag::IN_POOL) {
            return None;
        }
        // SAFETY: IN_POOL nodes store `out` (set by `reserve`).
        let out = unsafe { n.payload.out };
        let r = self.regions.get(out.pool as usize)?.as_ref()?;
        let lay = Layout::from_size_align(new_size, self.desc(slot).elem_align).ok()?;
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
    pub(super) fn pool_move(&mut self, slot: u32, plan: PoolGrow, new_size: usize, keep: usize) {
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
    pub(super) fn pool_shrink(&mut self, slot: u32, new_size: usize) {
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
}
