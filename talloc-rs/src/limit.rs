//! Memory limits (`talloc_set_memlimit`): a cap on the bytes under a context.
//!
//! Usage counts own sizes of objects not carved from a pool, plus each pool's
//! region once. While no limit is set anywhere, allocation does no limit
//! work at all.

use crate::storage::{flag, NIL};
use crate::{AnyPtr, Error, Talloc};

/// A memory limit and what its subtree uses ([`Talloc::memlimit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemLimit {
    /// The cap, in bytes.
    pub max: usize,
    /// Bytes the subtree counts against it now (it may be over the cap
    /// after a steal, which never fails on a limit).
    pub used: usize,
}

impl Talloc {
    /// Caps the bytes that the subtree of `ctx` may hold (0 removes the
    /// cap). Allocations, array growth and new pools under it fail with
    /// [`Error::MemoryLimit`] past it; limits nest, and every one on the way
    /// up is checked. Steals into a limited tree never fail, as in C: usage
    /// may go past the cap, and later allocations fail.
    ///
    /// C deprecates this feature (cgroups are the better tool for whole
    /// processes); it is here for code that uses it.
    ///
    /// ```
    /// use talloc::{Talloc, Error};
    /// let mut heap = Talloc::new();
    /// let ctx = heap.new_context(None)?;
    /// heap.set_memlimit(ctx, 100)?;
    /// heap.alloc_zeroed(ctx, 60)?;
    /// assert!(matches!(heap.alloc_zeroed(ctx, 60), Err(Error::MemoryLimit { .. })));
    /// heap.set_memlimit(ctx, 0)?;
    /// heap.alloc_zeroed(ctx, 60)?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn set_memlimit(&mut self, ctx: impl Into<AnyPtr>, max: usize) -> Result<(), Error> {
        let slot = self.slot(ctx.into().key)?;
        let had = self.slots.node(slot).has(flag::LIMIT);
        if max == 0 {
            if had {
                self.rare_mut(slot).limit = None;
                self.slots.node_mut(slot).flags &= !flag::LIMIT;
                self.limits -= 1;
            }
            return Ok(());
        }
        // Usage counts the whole subtree, the context's own bytes included.
        let used = self.charged_bytes(slot);
        self.rare_mut(slot).limit = Some((max, used));
        if !had {
            self.slots.node_mut(slot).flags |= flag::LIMIT;
            self.limits += 1;
        }
        Ok(())
    }

    /// The limit and current usage of `ctx`, if it has a limit.
    ///
    /// ```
    /// use talloc::MemLimit;
    /// # let mut heap = talloc::Talloc::new();
    /// let ctx = heap.new_context(None)?;
    /// heap.set_memlimit(ctx, 1000)?;
    /// heap.alloc_zeroed(ctx, 10)?;
    /// assert_eq!(heap.memlimit(ctx)?, Some(MemLimit { max: 1000, used: 10 }));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn memlimit(&self, ctx: impl Into<AnyPtr>) -> Result<Option<MemLimit>, Error> {
        let slot = self.slot(ctx.into().key)?;
        Ok(self
            .rare(slot)
            .and_then(|r| r.limit)
            .map(|(max, used)| MemLimit { max, used }))
    }

    /// Bytes that the subtree of `slot` counts against limits.
    pub(crate) fn charged_bytes(&self, slot: u32) -> usize {
        let mut total = 0;
        self.walk(slot, |s, _| {
            let n = self.slots.node(s);
            if n.has(flag::POOL) {
                if let Some((size, _, _)) = n.pool_region().and_then(|r| self.slots.region_usage(r))
                {
                    total += size;
                }
            } else if !n.has(flag::IN_POOL) {
                total += self.slots.own_size(s);
            }
            true
        });
        total
    }

    /// Adds `bytes` to every limit from `slot` up, or fails if one would be
    /// exceeded (then nothing is added).
    pub(crate) fn charge(&mut self, slot: u32, bytes: usize) -> Result<(), Error> {
        let mut s = slot;
        while s != NIL {
            if let Some((max, used)) = self.rare(s).and_then(|r| r.limit) {
                if used.saturating_add(bytes) > max {
                    return Err(Error::MemoryLimit {
                        context: self.any(s),
                    });
                }
            }
            s = self.slots.node(s).parent;
        }
        self.charge_unchecked(slot, bytes);
        Ok(())
    }

    pub(crate) fn charge_unchecked(&mut self, slot: u32, bytes: usize) {
        self.adjust(slot, |used| used.saturating_add(bytes));
    }

    pub(crate) fn uncharge(&mut self, slot: u32, bytes: usize) {
        self.adjust(slot, |used| used.saturating_sub(bytes));
    }

    fn adjust(&mut self, slot: u32, f: impl Fn(usize) -> usize) {
        let mut s = slot;
        while s != NIL {
            if self.slots.node(s).has(flag::LIMIT) {
                if let Some((_, used)) = self.rare_mut(s).limit.as_mut() {
                    *used = f(*used);
                }
            }
            s = self.slots.node(s).parent;
        }
    }
}
