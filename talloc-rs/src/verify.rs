//! The invariant checker: what users' property tests (and ours) assert
//! after every step.

use std::fmt;

use crate::storage::{flag, NIL};
use crate::{AnyPtr, Talloc};

/// The first broken invariant [`Talloc::verify`] found.
///
/// A heap changed only through its API never has one; property tests check
/// that after every step:
///
/// ```
/// use talloc::{Talloc, Violation};
/// let mut heap = Talloc::new();
/// let a = heap.new_context(None)?;
/// heap.alloc_str(a, "x")?;
/// let checked: Result<(), Violation> = heap.verify();
/// assert_eq!(checked, Ok(()));
/// // What a report of one would say:
/// let v = Violation::LiveCount { reachable: 1, recorded: 2 };
/// assert_eq!(v.to_string(), "1 objects reachable, 2 recorded alive");
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A parent/child/sibling link does not point back.
    BrokenLink {
        /// The object whose link is wrong.
        object: AnyPtr,
        /// Which link.
        link: &'static str,
    },
    /// Walking up the parents of an object never reaches the top.
    Cycle {
        /// An object on the cycle.
        object: AnyPtr,
    },
    /// The number of live objects reachable from the top level differs from
    /// the heap's count.
    LiveCount {
        /// Objects found by walking every tree.
        reachable: usize,
        /// Objects the heap says are alive.
        recorded: usize,
    },
    /// A flag disagrees with the data it summarises.
    Flag {
        /// The object.
        object: AnyPtr,
        /// The flag.
        flag: &'static str,
    },
    /// A reference handle and its target disagree.
    Reference {
        /// The reference handle or the referenced object.
        object: AnyPtr,
    },
    /// A pool region's object count is wrong.
    PoolCount {
        /// The region id.
        region: u32,
        /// Live objects carved from it (plus the pool, if alive).
        counted: u32,
        /// The region's own count.
        recorded: u32,
    },
    /// A memory limit's usage differs from the bytes under it.
    LimitUsage {
        /// The limited context.
        context: AnyPtr,
        /// Bytes found under it.
        counted: usize,
        /// Bytes it records.
        recorded: usize,
    },
    /// An object is marked busy (being freed, destructor running) while no
    /// operation is in progress.
    Busy {
        /// The object.
        object: AnyPtr,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::BrokenLink { object, link } => write!(f, "{object:?}: broken {link} link"),
            Violation::Cycle { object } => write!(f, "{object:?} is on a parent cycle"),
            Violation::LiveCount {
                reachable,
                recorded,
            } => {
                write!(
                    f,
                    "{reachable} objects reachable, {recorded} recorded alive"
                )
            }
            Violation::Flag { object, flag } => {
                write!(f, "{object:?}: flag {flag} is inconsistent")
            }
            Violation::Reference { object } => {
                write!(f, "{object:?}: reference bookkeeping is inconsistent")
            }
            Violation::PoolCount {
                region,
                counted,
                recorded,
            } => {
                write!(
                    f,
                    "pool region {region}: {counted} objects counted, {recorded} recorded"
                )
            }
            Violation::LimitUsage {
                context,
                counted,
                recorded,
            } => {
                write!(
                    f,
                    "{context:?}: limit usage {recorded} recorded, {counted} counted"
                )
            }
            Violation::Busy { object } => {
                write!(f, "{object:?} is marked busy outside an operation")
            }
        }
    }
}

impl std::error::Error for Violation {}

impl Talloc {
    /// Checks every invariant of the heap and reports the first violation:
    /// links both ways, no cycles, every live object reachable from the top
    /// level, flags matching their data, references consistent, pool counts
    /// and memory-limit usage right. O(objects); meant for tests.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let a = heap.new_context(None)?;
    /// let b = heap.alloc_str(a, "b")?;
    /// heap.reference(None, b)?;
    /// heap.free(a)?;
    /// assert_eq!(heap.verify(), Ok(()));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn verify(&self) -> Result<(), Violation> {
        let high = self.slots.high();
        let live = |s: u32| s < high && self.slots.node(s).is_live();
        if self.top != NIL && (!live(self.top) || self.slots.node(self.top).parent != NIL) {
            return Err(Violation::BrokenLink {
                object: self.any(self.top),
                link: "top level",
            });
        }
        let mut recorded = 0usize;
        let mut pool_counts: std::collections::HashMap<u32, u32> = Default::default();
        for slot in 0..high {
            let n = self.slots.node(slot);
            if !n.is_live() {
                continue;
            }
            recorded += 1;
            let me = self.any(slot);
            let broken = |link| Err(Violation::BrokenLink { object: me, link });
            if n.has(flag::FREEING | flag::IN_DESTRUCTOR) {
                return Err(Violation::Busy { object: me });
            }
            if n.parent != NIL && !live(n.parent) {
                return broken("parent");
            }
            if n.prev == NIL {
                if n.parent != NIL && self.slots.node(n.parent).child != slot {
                    return broken("parent's first child");
                }
            } else if !live(n.prev)
                || self.slots.node(n.prev).next != slot
                || self.slots.node(n.prev).parent != n.parent
            {
                return broken("prev");
            }
            if n.next != NIL && (!live(n.next) || self.slots.node(n.next).prev != slot) {
                return broken("next");
            }
            if n.child != NIL && (!live(n.child) || self.slots.node(n.child).parent != slot) {
                return broken("child");
            }
            // A top-level object first in its list is the top level's head.
            if n.parent == NIL && n.prev == NIL && self.top != slot {
                return broken("top-level head");
            }
            let rare = self.rare(slot);
            let flag_err = |flag| Err(Violation::Flag { object: me, flag });
            // Without a side entry, the node's index field names its
            // function destructor, or nothing.
            let has_destructor = match rare {
                Some(r) => r.destructor.is_some(),
                None => n.rare != NIL && self.functions.contains(n.rare),
            };
            if n.has(flag::DESTRUCTOR) != has_destructor
                || (rare.is_none() && !n.has(flag::DESTRUCTOR) && n.rare != NIL)
            {
                return flag_err("DESTRUCTOR");
            }
            if n.has(flag::REFERENCED) != rare.is_some_and(|r| !r.refs.is_empty()) {
                return flag_err("REFERENCED");
            }
            if n.has(flag::NAMED) != rare.is_some_and(|r| r.name.is_some()) {
                return flag_err("NAMED");
            }
            if n.has(flag::LIMIT) != rare.is_some_and(|r| r.limit.is_some()) {
                return flag_err("LIMIT");
            }
            if n.has(flag::NEEDS_DROP) != self.slots.desc(slot).needs_drop {
                return flag_err("NEEDS_DROP");
            }
            if let Some(r) = rare {
                for &h in &r.refs {
                    let ok = live(h)
                        && self.slots.node(h).has(flag::REF_HANDLE)
                        && self.handle_target(h) == Some(slot);
                    if !ok {
                        return Err(Violation::Reference { object: me });
                    }
                }
            }
            if n.has(flag::REF_HANDLE) {
                let ok = self
                    .handle_target(slot)
                    .is_some_and(|t| self.rare(t).is_some_and(|r| r.refs.contains(&slot)));
                if !ok {
                    return Err(Violation::Reference { object: me });
                }
            }
            if let Some(region) = self.slots.node(slot).pool_region() {
                *pool_counts.entry(region).or_default() += 1;
            }
        }
        // With the links consistent (checked above), walking down from the
        // top level cannot loop; a live object it misses is on a cycle (or
        // the counts are off).
        let mut seen = vec![false; high as usize];
        let mut reachable = 0usize;
        for top in self.top_level() {
            self.walk(top.key.slot, |s, _| {
                seen[s as usize] = true;
                reachable += 1;
                true
            });
        }
        if let Some(lost) = (0..high).find(|&s| self.slots.node(s).is_live() && !seen[s as usize]) {
            return Err(Violation::Cycle {
                object: self.any(lost),
            });
        }
        if reachable != recorded || recorded != self.slots.live() as usize {
            return Err(Violation::LiveCount {
                reachable,
                recorded: self.slots.live() as usize,
            });
        }
        for (&region, &counted) in &pool_counts {
            let recorded = self.slots.region_usage(region).map_or(0, |u| u.2);
            if counted != recorded {
                return Err(Violation::PoolCount {
                    region,
                    counted,
                    recorded,
                });
            }
        }
        if self.slots.live_regions() != pool_counts.len() {
            return Err(Violation::PoolCount {
                region: u32::MAX,
                counted: pool_counts.len() as u32,
                recorded: self.slots.live_regions() as u32,
            });
        }
        for slot in 0..high {
            let n = self.slots.node(slot);
            if n.is_live() && n.has(flag::LIMIT) {
                let recorded = self.rare(slot).and_then(|r| r.limit).map_or(0, |l| l.1);
                let counted = self.charged_bytes(slot);
                if counted != recorded {
                    return Err(Violation::LimitUsage {
                        context: self.any(slot),
                        counted,
                        recorded,
                    });
                }
            }
        }
        Ok(())
    }
}
