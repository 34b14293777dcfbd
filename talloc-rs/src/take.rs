//! Values out of the heap: take an object's value back, or swap it.
//!
//! C has no counterpart: a C caller copies the bytes out and frees the
//! chunk. Here the value moves out whole (a Rust move, nothing is cloned),
//! and the rule for the object's children is fixed: they stay alive and
//! move up to the object's parent, as children whose destructors refuse do
//! when their parent is freed (T4).

use crate::free::Panic;
use crate::storage::{flag, NIL};
use crate::{Error, Ptr, Talloc};

impl Talloc {
    /// Removes an object from the heap and gives its value back.
    ///
    /// The object ends as in a [`free`](Talloc::free): its destructor runs
    /// first and may refuse ([`Error::Refused`]; then nothing changes), its
    /// name goes with it, and its handle reads [`Error::Stale`] afterwards.
    /// Unlike a free, its children survive: they move to the object's parent
    /// (to the top level if it had none), keeping their order, newest first.
    ///
    /// Refused, with nothing changed: an object that others reference
    /// ([`Error::HasReferences`]; their handles would point at nothing), one
    /// being freed ([`Error::BeingFreed`]) or whose destructor is running
    /// ([`Error::DestructorRunning`]).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let conn = heap.new_context(None)?;
    /// let buf = heap.alloc(conn, vec![1u8, 2, 3])?;
    /// let note = heap.alloc_str(buf, "note")?;
    /// let bytes: Vec<u8> = heap.take(buf)?;
    /// assert_eq!(bytes, [1, 2, 3]);
    /// assert!(!heap.contains(buf));
    /// assert_eq!(heap.parent(note)?, Some(conn.erase())); // moved up
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn take<T: 'static>(&mut self, p: Ptr<T>) -> Result<T, Error> {
        let key = p.key;
        let slot = self.slot(key)?;
        let n = self.slots.node(slot);
        if n.has(flag::FREEING) {
            return Err(Error::BeingFreed);
        }
        if n.has(flag::IN_DESTRUCTOR) {
            return Err(Error::DestructorRunning);
        }
        self.check_unreferenced(slot)?;
        if self.slots.node(slot).has(flag::DESTRUCTOR) {
            let mut panic: Panic = None;
            let verdict = self.run_destructor(slot, &mut panic);
            if let Some(p) = panic {
                std::panic::resume_unwind(p);
            }
            verdict.map_err(|_| Error::Refused)?;
            // The destructor may have freed an ancestor (and so this object)
            // or added a reference: look again.
            self.slot(key)?;
            if self.slots.node(slot).has(flag::FREEING) {
                return Err(Error::BeingFreed);
            }
            self.check_unreferenced(slot)?;
        }
        self.hand_children_up(slot);
        Ok(self.remove_leaf(slot))
    }

    /// Puts `value` in the object's place and gives the old value back
    /// (`std::mem::replace` through a handle). The object, its name, its
    /// children and its destructor stay as they are.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let state = heap.alloc(None, String::from("connecting"))?;
    /// let old = heap.replace(state, String::from("open"))?;
    /// assert_eq!((old.as_str(), heap[state].as_str()), ("connecting", "open"));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn replace<T: 'static>(&mut self, p: Ptr<T>, value: T) -> Result<T, Error> {
        Ok(std::mem::replace(self.get_mut(p)?, value))
    }

    /// [`Error::HasReferences`] if any reference points at the object.
    fn check_unreferenced(&self, slot: u32) -> Result<(), Error> {
        match self.rare(slot) {
            Some(r) if self.slots.node(slot).has(flag::REFERENCED) => Err(Error::HasReferences {
                count: r.refs.len(),
            }),
            _ => Ok(()),
        }
    }

    /// Moves every child of `slot` but its name to its parent, oldest first
    /// so that they arrive in the same order.
    fn hand_children_up(&mut self, slot: u32) {
        let parent = self.slots.node(slot).parent;
        let name = self.name_chunk(slot);
        let mut oldest = self.slots.node(slot).child;
        if oldest == NIL {
            return;
        }
        while self.slots.node(oldest).next != NIL {
            oldest = self.slots.node(oldest).next;
        }
        let mut c = oldest;
        while c != NIL {
            let newer = self.slots.node(c).prev;
            if Some(c) != name {
                self.move_to(c, parent);
            }
            c = newer;
        }
    }
}
