//! Freeing: destructors first, then the children newest first, depth first,
//! with an explicit stack (a million-deep chain frees fine).

use std::any::Any;

use crate::destructor::Destructor;
use crate::heap::{DestructorResult, Refused};
use crate::ptr::Key;
use crate::storage::{flag, Flags, NIL};
use crate::{AnyPtr, Error, Talloc};

/// One object whose children are being freed.
struct Frame {
    slot: u32,
    key: Key,
    /// Where a refusing child goes (the parent this object had when its own
    /// free began), if that object is still alive.
    refuge: Option<Key>,
    /// Release the object itself once its children are gone (false for
    /// `free_children`).
    release: bool,
}

/// What became of a child we tried to free.
enum Outcome {
    /// It is unlinked and marked: free its children, then it.
    Started,
    /// It stays alive (it moved elsewhere, or out of the list).
    Kept,
}

/// A panic caught in a destructor or a `Drop`, resumed once the heap is
/// consistent again.
pub(crate) type Panic = Option<Box<dyn Any + Send>>;

/// Records a caught panic unless an earlier one is waiting to be resumed.
#[cold]
fn keep_first(panic: &mut Panic, p: Box<dyn Any + Send>) {
    if panic.is_none() {
        *panic = Some(p);
    }
}

/// Drops a released node's rare entry: a destructor closure it still holds
/// may run arbitrary `Drop` code, whose panic is kept like the others.
fn drop_rare(rare: Option<crate::heap::Rare>, panic: &mut Panic) {
    if let Some(rare) = rare {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(rare)));
        if let Err(p) = r {
            keep_first(panic, p);
        }
    }
}

/// Flags of an object that can be released without any side-table work:
/// nothing rare, not a pool, not being freed (its value may need a drop,
/// which `release` runs).
const PLAIN: Flags =
    flag::INLINE | flag::NOT_SEND | flag::IN_POOL | flag::CONTEXT | flag::NEEDS_DROP;

impl Talloc {
    /// Frees an object and its whole subtree (`talloc_free`).
    ///
    /// The object's destructor runs first and may refuse
    /// ([`Error::Refused`]: nothing is freed). Then the children are freed
    /// newest first, each destructor before that child's own children. A
    /// child whose destructor refuses survives: it moves up to the parent of
    /// the object being freed (talloc's rule T4), so the free itself still
    /// succeeds. An object with references from outside its subtree is not
    /// freed ([`Error::HasReferences`]), except a top-level one with exactly
    /// one, which then belongs to that reference's owner (as in C).
    /// References held inside the object's own subtree go with it. C refuses
    /// those (`-1`), except that a top-level object whose only reference is
    /// its own is kept and that reference dropped (C returns 0); talloc-rs
    /// frees the object in both cases.
    ///
    /// Freeing an object that is already being freed (from a destructor) is
    /// `Ok` and does nothing more; freeing an object from its own destructor
    /// is [`Error::DestructorRunning`].
    ///
    /// # Panics
    /// A panic in a destructor or a value's `Drop` is resumed after the free
    /// has finished and the heap is consistent; the object whose destructor
    /// panicked is kept, as if it had refused.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use talloc::Talloc;
    /// let mut heap = Talloc::new();
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let p = heap.alloc_str(None, "P")?;
    /// let c1 = heap.alloc_str(p, "C1")?;
    /// let c2 = heap.alloc_str(p, "C2")?;
    /// let g1 = heap.alloc_str(c1, "G1")?;
    /// for x in [p, c1, c2, g1] {
    ///     let log = log.clone();
    ///     heap.set_destructor(x, move |heap, me| {
    ///         log.borrow_mut().push(heap[me].to_string());
    ///         Ok(())
    ///     })?;
    /// }
    /// heap.free(p)?;
    /// assert_eq!(*log.borrow(), ["P", "C2", "C1", "G1"]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn free(&mut self, p: impl Into<AnyPtr>) -> Result<(), Error> {
        self.free_key(p.into().key)
    }

    // Always inlined (its slow path is not): with the call, a free cost
    // about a tenth more instructions and a churn step 17% more time.
    #[inline(always)]
    fn free_key(&mut self, key: Key) -> Result<(), Error> {
        let slot = self.slot(key)?;
        // The common case: a leaf with nothing rare (no destructor, name,
        // reference, limit) while no limits are set: unlink and release,
        // in one pass when its value needs no drop. It is kept small, apart
        // from the rest, so that it saves few registers.
        if self.limits == 0 && self.slots.free_leaf(slot, &mut self.top) {
            return Ok(());
        }
        let n = self.slots.node(slot);
        if n.child == NIL && n.flags & !PLAIN == 0 && self.limits == 0 {
            self.unlink_node(slot);
            if let Some(p) = self.slots.release(slot) {
                std::panic::resume_unwind(p);
            }
            return Ok(());
        }
        self.free_slow(key, slot)
    }

    /// [`free_key`](Self::free_key) of anything but a plain leaf.
    #[inline(never)]
    fn free_slow(&mut self, key: Key, slot: u32) -> Result<(), Error> {
        let n = self.slots.node(slot);
        if n.has(flag::FREEING) {
            return Ok(());
        }
        if n.has(flag::IN_DESTRUCTOR) {
            return Err(Error::DestructorRunning);
        }
        let outside = self.outside_refs(slot).len();
        if outside > 0 {
            if n.parent == NIL && outside == 1 {
                return self.unlink_ref(None, AnyPtr { key });
            }
            return Err(Error::HasReferences { count: outside });
        }
        self.free_subtree(key, slot)
    }

    /// Frees a live object and its subtree, without the reference check.
    pub(crate) fn free_subtree(&mut self, key: Key, slot: u32) -> Result<(), Error> {
        if self.slots.node(slot).has(flag::IN_DESTRUCTOR) {
            return Err(Error::DestructorRunning);
        }
        let mut panic: Panic = None;
        if self.slots.node(slot).has(flag::DESTRUCTOR) {
            if let Err(Refused) = self.run_destructor(slot, &mut panic) {
                if let Some(p) = panic {
                    std::panic::resume_unwind(p);
                }
                return Err(Error::Refused);
            }
            // The destructor may have freed or moved things, even this
            // object's ancestors: look again.
            if self.slot(key).is_err() || self.slots.node(slot).has(flag::FREEING) {
                return Ok(());
            }
        }
        let parent = self.slots.node(slot).parent;
        let refuge = (parent != NIL).then(|| self.key(parent));
        self.detach_for_free(slot);
        let frame = Frame {
            slot,
            key,
            refuge,
            release: true,
        };
        self.drain(frame, &mut panic);
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        Ok(())
    }

    /// Frees every child of an object but not the object
    /// (`talloc_free_children`). A name set with
    /// [`set_name`](Talloc::set_name) survives, as in C. Children whose
    /// destructors refuse move to the object's parent.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.new_context(None)?;
    /// heap.set_name(p, format_args!("conn {}", 1))?;
    /// heap.alloc_zeroed(p, 10)?;
    /// heap.alloc_zeroed(p, 10)?;
    /// heap.free_children(p)?;
    /// assert_eq!(heap.name(p)?, "conn 1");
    /// assert_eq!(heap.total_blocks(p)?, 2); // p and its name
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn free_children(&mut self, p: impl Into<AnyPtr>) -> Result<(), Error> {
        let key = p.into().key;
        let slot = self.slot(key)?;
        if self.slots.node(slot).has(flag::FREEING) {
            return Ok(());
        }
        // Keep the name chunk out of the way while the children go.
        let name = self.name_chunk(slot);
        if let Some(name) = name {
            if self.limits > 0 {
                let bytes = self.charged_bytes(name);
                self.uncharge(slot, bytes);
            }
            self.unlink_node(name);
        }
        let parent = self.slots.node(slot).parent;
        let refuge = (parent != NIL).then(|| self.key(parent));
        let mut panic: Panic = None;
        self.drain(
            Frame {
                slot,
                key,
                refuge,
                release: false,
            },
            &mut panic,
        );
        if let Some(name) = name {
            if self.slot(key).is_ok() {
                self.link(slot, name);
                if self.limits > 0 {
                    let bytes = self.charged_bytes(name);
                    self.charge_unchecked(slot, bytes);
                }
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        Ok(())
    }

    /// Takes an object out of the tree for freeing: limits are uncharged,
    /// then it is unlinked and marked.
    #[inline]
    fn detach_for_free(&mut self, slot: u32) {
        let parent = self.slots.node(slot).parent;
        if self.limits > 0 && parent != NIL && !self.slots.node(parent).has(flag::FREEING) {
            let bytes = self.charged_bytes(slot);
            self.uncharge(parent, bytes);
        }
        self.unlink_node(slot);
        self.slots.node_mut(slot).flags |= flag::FREEING;
    }

    /// Frees the children of `root` (and `root` itself if asked), depth
    /// first, without recursion.
    fn drain(&mut self, root: Frame, panic: &mut Panic) {
        // The frame being worked on, and the ones above it. The stack only
        // allocates once the walk goes below a first level of plain leaves.
        let mut top = root;
        let mut above: Vec<Frame> = Vec::new();
        loop {
            let (slot, key) = (top.slot, top.key);
            // A frame that is not being freed (free_children) may have been
            // freed by a destructor meanwhile.
            let gone = !top.release && self.slot(key).is_err();
            let child = if gone {
                NIL
            } else {
                self.slots.node(slot).child
            };
            if child == NIL {
                if top.release {
                    self.release(slot, panic);
                }
                match above.pop() {
                    Some(next) => top = next,
                    None => return,
                }
                continue;
            }
            // The common case: leaves with no destructor, reference or name,
            // released in a row. They need no unlinking one by one: the
            // list's head is fixed once after the run. A leaf whose only
            // rare part is a destructor joins the run once its destructor
            // has agreed; the head is fixed before the call, so that the
            // destructor sees a consistent tree.
            let mut outcome = None;
            let mut child = child;
            if self.limits == 0 {
                let mut c = child;
                let mut head = child;
                loop {
                    let n = self.slots.node(c);
                    if n.child != NIL {
                        break;
                    }
                    let next = if n.flags & !PLAIN == 0 {
                        let next = n.next;
                        self.release(c, panic);
                        next
                    } else if n.flags & !(PLAIN | flag::RARE | flag::DESTRUCTOR) == 0
                        && n.has(flag::DESTRUCTOR)
                    {
                        if c != head {
                            self.set_first_child(slot, c);
                        }
                        match self.free_destructor_leaf(slot, c, top.refuge, panic) {
                            Ok(next) => {
                                head = next;
                                next
                            }
                            Err(o) => {
                                // Settled the general way: go on from it.
                                (head, child, outcome) = (c, c, Some(o));
                                break;
                            }
                        }
                    } else {
                        break;
                    };
                    c = next;
                    if c == NIL {
                        break;
                    }
                }
                if c != head {
                    self.set_first_child(slot, c);
                }
                if c != child && outcome.is_none() {
                    continue;
                }
            }
            let outcome =
                outcome.unwrap_or_else(|| self.begin_child_free(child, slot, top.refuge, panic));
            if let Outcome::Started = outcome {
                if self.slots.node(child).child == NIL {
                    // A leaf (say, with a destructor that has run): no frame.
                    self.release(child, panic);
                    continue;
                }
                let frame = Frame {
                    slot: child,
                    key: self.key(child),
                    refuge: Some(key),
                    release: true,
                };
                above.push(std::mem::replace(&mut top, frame));
            }
        }
    }

    /// Makes `c` the first of `parent`'s children, dropping those before it
    /// from the list (they were released in a run).
    #[inline]
    fn set_first_child(&mut self, parent: u32, c: u32) {
        self.slots.node_mut(parent).child = c;
        if c != NIL {
            self.slots.node_mut(c).prev = NIL;
        }
    }

    /// Frees `c`, the first child of `parent`, a leaf whose only rare part
    /// is its destructor: the destructor runs, and if it agreed and left
    /// `c` where it was, `c` is released at once. Returns the next sibling
    /// to go on with; otherwise what [`begin_child_free`] would have
    /// returned, having done what it does.
    ///
    /// [`begin_child_free`]: Talloc::begin_child_free
    fn free_destructor_leaf(
        &mut self,
        parent: u32,
        c: u32,
        refuge: Option<Key>,
        panic: &mut Panic,
    ) -> Result<u32, Outcome> {
        let key = self.key(c);
        let Some((d, verdict)) = self.call_destructor(c, key, panic) else {
            return Err(self.begin_child_free(c, parent, refuge, panic));
        };
        if verdict.is_ok() && self.limits == 0 {
            let n = self.slots.node(c);
            let still = n.gen == key.gen && n.parent == parent && n.prev == NIL;
            let leaf = n.child == NIL
                && n.flags & !(PLAIN | flag::RARE | flag::DESTRUCTOR | flag::IN_DESTRUCTOR) == 0;
            if still && leaf {
                // Still the first child, with nothing new: unlink it as the
                // head and release it (a destructor it set for itself is
                // dropped with it).
                let (next, rare) = (n.next, n.has(flag::RARE));
                self.set_first_child(parent, next);
                // Its destructor was a function, which needs nothing given
                // back, or its rare entry held only the destructor, taken
                // out above: either way released here, without the general
                // release's checks.
                if !rare || self.drop_empty_rare(c) {
                    if let Some(p) = self.slots.release(c) {
                        keep_first(panic, p);
                    }
                } else {
                    self.release(c, panic);
                }
                drop(d);
                return Ok(next);
            }
        }
        let refused = self.end_destructor(c, key, d, verdict).is_err();
        Err(self.settle_child(c, key, parent, refuge, refused, false))
    }

    /// Tries to free `child` of `parent` (whose own refuge is `refuge`).
    fn begin_child_free(
        &mut self,
        child: u32,
        parent: u32,
        refuge: Option<Key>,
        panic: &mut Panic,
    ) -> Outcome {
        // A referenced child survives under the owner of its newest
        // reference, unless that reference lives inside the child's own
        // subtree (then it is simply dropped). As in C, the new home is
        // chosen before anything is dropped: when it is the child itself (a
        // self-reference), moving there changes nothing, and the child stays
        // first in line to be tried again.
        let self_home = self.newest_ref_owner(child) == Some(child);
        while self.slots.node(child).has(flag::REFERENCED) {
            let handle = *self
                .rare(child)
                .and_then(|r| r.refs.last())
                .expect("REFERENCED has refs");
            let owner = self.slots.node(handle).parent;
            let inside = self.is_within(handle, child);
            self.drop_handle(handle, panic);
            if !inside {
                if self.slots.node(child).parent == parent && !self_home {
                    // An owner-less reference leaves no home: the child
                    // goes where a refusing child would (C's fallback).
                    let dest = if owner == NIL {
                        refuge.and_then(|k| self.slot(k).ok()).unwrap_or(NIL)
                    } else {
                        owner
                    };
                    self.move_to(child, dest);
                }
                return Outcome::Kept;
            }
        }
        let ckey = self.key(child);
        let refused = if self.slots.node(child).has(flag::IN_DESTRUCTOR) {
            true
        } else if self.slots.node(child).has(flag::DESTRUCTOR) {
            self.run_destructor(child, panic).is_err()
        } else {
            false
        };
        self.settle_child(child, ckey, parent, refuge, refused, self_home)
    }

    /// The end of [`begin_child_free`](Talloc::begin_child_free), once the
    /// destructor (if any) has given its verdict.
    fn settle_child(
        &mut self,
        child: u32,
        ckey: Key,
        parent: u32,
        refuge: Option<Key>,
        refused: bool,
        self_home: bool,
    ) -> Outcome {
        if self.slot(ckey).is_err() {
            // The destructor could not free its own object, but it may have
            // freed an ancestor of it that was not being freed... either way
            // there is nothing left to do here.
            return Outcome::Kept;
        }
        if refused {
            // T4: the child stays alive. If the destructor already gave it a
            // new home, leave it there; otherwise it moves up one level
            // (unless its home was itself: then it is tried again, and its
            // destructor asked again, as in C).
            if self.slots.node(child).parent == parent && !self_home {
                let dest = refuge.and_then(|k| self.slot(k).ok()).unwrap_or(NIL);
                self.move_to(child, dest);
            }
            return Outcome::Kept;
        }
        self.detach_for_free(child);
        Outcome::Started
    }

    /// The owner of an object's newest reference (`Some(NIL)` for an
    /// owner-less one), if it has any.
    fn newest_ref_owner(&self, slot: u32) -> Option<u32> {
        if !self.slots.node(slot).has(flag::REFERENCED) {
            return None;
        }
        let handle = *self.rare(slot)?.refs.last()?;
        Some(self.slots.node(handle).parent)
    }

    /// Runs an object's destructor. A panicking destructor counts as a
    /// refusal; the panic is kept for the caller to resume.
    pub(crate) fn run_destructor(&mut self, slot: u32, panic: &mut Panic) -> DestructorResult {
        let key = self.key(slot);
        let Some((d, verdict)) = self.call_destructor(slot, key, panic) else {
            return Ok(());
        };
        self.end_destructor(slot, key, d, verdict)
    }

    /// Takes an object's destructor out and calls it, marked as running;
    /// gives it back with its verdict, `None` if there was none. Inlined
    /// into the free loop: out of line, its prologue cost a tenth of a
    /// destructor free.
    #[inline(always)]
    fn call_destructor(
        &mut self,
        slot: u32,
        key: Key,
        panic: &mut Panic,
    ) -> Option<(Destructor, DestructorResult)> {
        let mut d = self.take_destructor(slot)?;
        self.slots.node_mut(slot).flags |= flag::IN_DESTRUCTOR;
        let me = AnyPtr { key };
        // One unwinding guard per kind, each around a single call, so that
        // both stay inline.
        let r = match &mut d {
            Destructor::Closure(f) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, me)))
            }
            Destructor::Function(i) => {
                let f = self.functions.get(*i);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, me)))
            }
        };
        let verdict = match r {
            Ok(v) => v,
            Err(p) => {
                keep_first(panic, p);
                Err(Refused)
            }
        };
        Some((d, verdict))
    }

    /// After a destructor ran: the object (if it is still there) is no
    /// longer in its destructor, and keeps the destructor if it refused.
    fn end_destructor(
        &mut self,
        slot: u32,
        key: Key,
        d: Destructor,
        verdict: DestructorResult,
    ) -> DestructorResult {
        if self.slot(key).is_ok() {
            self.slots.node_mut(slot).flags &= !flag::IN_DESTRUCTOR;
            if verdict.is_err() {
                // Restore it, unless the destructor set another one.
                self.restore_destructor(slot, d);
            } else {
                // The object is about to go; a destructor it set for itself
                // meanwhile is dropped with it (a function named without a
                // side entry is simply forgotten).
                let n = self.slots.node_mut(slot);
                n.flags &= !flag::DESTRUCTOR;
                if !n.has(flag::RARE) {
                    n.rare = NIL;
                }
            }
        }
        verdict
    }

    /// Releases a node that is out of the tree and childless.
    #[inline(always)]
    fn release(&mut self, slot: u32, panic: &mut Panic) {
        if !self.slots.node(slot).has(flag::RARE) {
            // No destructor, name, reference or limit to take care of.
            if let Some(p) = self.slots.release(slot) {
                keep_first(panic, p);
            }
            return;
        }
        self.release_rare(slot, panic);
    }

    /// [`release`](Self::release) of a node with a rare entry.
    #[inline(never)]
    fn release_rare(&mut self, slot: u32, panic: &mut Panic) {
        // The common case first, with no panic guard and nothing to drop.
        if self.drop_spent_rare(slot) {
            if let Some(p) = self.slots.release(slot) {
                keep_first(panic, p);
            }
            return;
        }
        let rare = self.clear_rare_links(slot, panic);
        let p = self.slots.release(slot);
        if panic.is_none() {
            *panic = p;
        }
        drop_rare(rare, panic);
    }

    /// Takes a node being released out of the side tables: its reference
    /// links, its limit, its rare entry (returned, to be dropped once the
    /// node is gone).
    fn clear_rare(&mut self, slot: u32, panic: &mut Panic) -> Option<crate::heap::Rare> {
        if self.drop_spent_rare(slot) {
            return None;
        }
        self.clear_rare_links(slot, panic)
    }

    /// Gives back the rare entry of a node being released when it only held
    /// a destructor that has run (and was taken): nothing to forget, nothing
    /// to drop. False, and nothing done, otherwise.
    #[inline]
    fn drop_spent_rare(&mut self, slot: u32) -> bool {
        self.slots.node(slot).flags & (flag::REF_HANDLE | flag::REFERENCED | flag::LIMIT) == 0
            && self.drop_empty_rare(slot)
    }

    /// [`clear_rare`](Self::clear_rare) past the common case: references,
    /// a limit, or contents to drop.
    fn clear_rare_links(&mut self, slot: u32, panic: &mut Panic) -> Option<crate::heap::Rare> {
        if self.slots.node(slot).has(flag::REF_HANDLE) {
            self.forget_handle(slot);
        }
        // References that escaped the subtree while it was being freed (a
        // refusing child took them along) die with their target.
        while self.slots.node(slot).has(flag::REFERENCED) {
            let handle = *self
                .rare(slot)
                .and_then(|r| r.refs.last())
                .expect("REFERENCED has refs");
            if self.slots.node(handle).has(flag::FREEING) {
                // Being freed already (handles are leaves): just forget it.
                self.forget_handle(handle);
            } else {
                self.drop_handle(handle, panic);
            }
        }
        if self.slots.node(slot).has(flag::LIMIT) {
            self.limits -= 1;
        }
        self.drop_rare(slot)
    }

    /// Takes a live object whose only child may be its name out of the
    /// tree and out of the heap, and gives its value back (the end of
    /// [`take`](Talloc::take)).
    pub(crate) fn remove_leaf<T: 'static>(&mut self, slot: u32) -> T {
        let key = self.key(slot);
        let parent = self.slots.node(slot).parent;
        let refuge = (parent != NIL).then(|| self.key(parent));
        self.detach_for_free(slot);
        let mut panic: Panic = None;
        // The name chunk, freed as children are.
        self.drain(
            Frame {
                slot,
                key,
                refuge,
                release: false,
            },
            &mut panic,
        );
        let rare = self.clear_rare(slot, &mut panic);
        let value = self.slots.remove::<T>(slot);
        drop_rare(rare, &mut panic);
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        value
    }

    /// Frees a reference handle (unlinking it from its target).
    pub(crate) fn drop_handle(&mut self, handle: u32, panic: &mut Panic) {
        let key = self.key(handle);
        let parent = self.slots.node(handle).parent;
        let refuge = (parent != NIL).then(|| self.key(parent));
        self.detach_for_free(handle);
        self.drain(
            Frame {
                slot: handle,
                key,
                refuge,
                release: true,
            },
            panic,
        );
    }

    /// Whether `slot` is `ancestor` or below it.
    pub(crate) fn is_within(&self, mut slot: u32, ancestor: u32) -> bool {
        while slot != NIL {
            if slot == ancestor {
                return true;
            }
            slot = self.slots.node(slot).parent;
        }
        false
    }
}
