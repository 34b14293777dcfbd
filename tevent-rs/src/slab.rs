//! A generational slab: the registry's storage for event entries.
//!
//! An [`Id`] names one entry by index and generation; once the entry is
//! removed, the generation of its slot moves on and the old `Id` finds
//! nothing. A slot whose generation would wrap is retired, never reused.
//! A slab whose index space is used up (live or retired slots) refuses new
//! entries and hands the value back, so that the caller can report it.

/// The name of one slab entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Id {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

/// Entries per chunk. Storage grows a chunk at a time, so it never copies
/// the entries it has (a slab of 100,000 timers that grew by reallocation
/// peaked a third higher, and took longer). A chunk is a fixed-size array,
/// so the index inside it needs no bounds check.
const SHIFT: u32 = 9;
const CHUNK: usize = 1 << SHIFT;
const MASK: u32 = CHUNK as u32 - 1;

/// A chunk of vacant slots, made on the heap (a `[Slot<T>; CHUNK]` on the
/// stack could be large).
#[cold]
fn new_chunk<T>() -> Box<[Slot<T>; CHUNK]> {
    let slots: Vec<Slot<T>> = (0..CHUNK).map(|_| Slot { gen: 0, val: None }).collect();
    match slots.into_boxed_slice().try_into() {
        Ok(chunk) => chunk,
        Err(_) => unreachable!("the vector has CHUNK slots"),
    }
}

/// Entries of one kind, each named by an [`Id`].
pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Slot<T>; CHUNK]>>,
    /// Slots handed out so far (live, free or retired).
    used: u32,
    free: Vec<u32>,
    len: usize,
    /// Slots that may ever be handed out: every index below [`NIL`], the
    /// end-of-list mark, except in tests of a full slab.
    cap: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            used: 0,
            free: Vec::new(),
            len: 0,
            cap: NIL,
        }
    }
}

impl<T> Slab<T> {
    #[inline]
    fn slot(&self, idx: u32) -> Option<&Slot<T>> {
        self.chunks
            .get((idx >> SHIFT) as usize)
            .map(|c| &c[(idx & MASK) as usize])
    }

    #[inline]
    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<T>> {
        self.chunks
            .get_mut((idx >> SHIFT) as usize)
            .map(|c| &mut c[(idx & MASK) as usize])
    }

    /// The id the next [`insert`](Slab::insert) will return, or `None` if
    /// the slab is full.
    #[inline]
    pub(crate) fn vacant_id(&self) -> Option<Id> {
        match self.free.last() {
            Some(&idx) => Some(self.id_at(idx)),
            None if self.used < self.cap => Some(Id {
                idx: self.used,
                gen: 0,
            }),
            None => None,
        }
    }

    /// Lowers the number of slots the slab may hand out, so that tests can
    /// fill it.
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.cap = cap.max(self.used);
    }

    /// Stores a value, or hands it back if every index is live or retired.
    pub(crate) fn insert(&mut self, val: T) -> Result<Id, T> {
        if let Some(idx) = self.free.pop() {
            self.len += 1;
            let slot = self.slot_mut(idx).expect("free slots exist");
            slot.val = Some(val);
            return Ok(Id { idx, gen: slot.gen });
        }
        let idx = self.used;
        if idx >= self.cap {
            return Err(val);
        }
        self.len += 1;
        if idx as usize % CHUNK == 0 {
            self.chunks.push(new_chunk());
        }
        self.used += 1;
        let slot = self.slot_mut(idx).expect("just made");
        slot.val = Some(val);
        Ok(Id { idx, gen: 0 })
    }

    /// The entry, if the id is current.
    #[inline]
    pub(crate) fn get(&self, id: Id) -> Option<&T> {
        match self.slot(id.idx) {
            Some(s) if s.gen == id.gen => s.val.as_ref(),
            _ => None,
        }
    }

    /// The entry, mutably, if the id is current.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        match self.slot_mut(id.idx) {
            Some(s) if s.gen == id.gen => s.val.as_mut(),
            _ => None,
        }
    }

    /// The entry at an index, whatever its generation (for intrusive lists,
    /// which only hold live indices).
    #[inline]
    pub(crate) fn at(&self, idx: u32) -> &T {
        self.slot(idx)
            .and_then(|s| s.val.as_ref())
            .expect("intrusive lists hold live entries only")
    }

    /// The entry at an index, mutably (see [`at`](Slab::at)).
    #[inline]
    pub(crate) fn at_mut(&mut self, idx: u32) -> &mut T {
        self.slot_mut(idx)
            .and_then(|s| s.val.as_mut())
            .expect("intrusive lists hold live entries only")
    }

    /// The current id of a live index.
    #[inline]
    pub(crate) fn id_at(&self, idx: u32) -> Id {
        Id {
            idx,
            gen: self.slot(idx).map_or(0, |s| s.gen),
        }
    }

    /// Takes an entry out; its id (and every copy) goes stale.
    pub(crate) fn remove(&mut self, id: Id) -> Option<T> {
        let slot = self.slot_mut(id.idx)?;
        if slot.gen != id.gen {
            return None;
        }
        let val = slot.val.take()?;
        let retire = slot.gen == u32::MAX;
        slot.gen = slot.gen.wrapping_add(1);
        self.len -= 1;
        if !retire {
            self.free.push(id.idx);
        }
        Some(val)
    }

    /// Takes an entry out, as [`remove`](Slab::remove), handing back only
    /// what `f` reads from it (the rest is dropped in place, not moved).
    #[inline]
    pub(crate) fn remove_with<R>(&mut self, id: Id, f: impl FnOnce(&T) -> R) -> Option<R> {
        let slot = self.slot_mut(id.idx)?;
        if slot.gen != id.gen {
            return None;
        }
        let r = f(slot.val.as_ref()?);
        slot.val = None;
        let retire = slot.gen == u32::MAX;
        slot.gen = slot.gen.wrapping_add(1);
        self.len -= 1;
        if !retire {
            self.free.push(id.idx);
        }
        Some(r)
    }

    /// Number of live entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every live entry with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Id, &T)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .filter_map(|(i, s)| {
                let id = Id {
                    idx: i as u32,
                    gen: s.gen,
                };
                s.val.as_ref().map(|v| (id, v))
            })
    }
}

/// "No entry": the end of a [`List`].
pub(crate) const NIL: u32 = u32::MAX;

/// An entry that can sit on a [`List`]: its links to the previous and the
/// next entry, by slab index ([`NIL`]: none).
pub(crate) trait Linked {
    fn links(&mut self) -> (&mut u32, &mut u32);
}

/// A first-in, first-out list threaded through the entries of a slab
/// (immediates in their queue, timers in their run): O(1) append and
/// removal, no allocation.
#[derive(Debug)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    /// Appends entry `idx`, which is on no list, at the tail.
    #[inline(always)]
    pub(crate) fn push_back<T: Linked>(&mut self, slab: &mut Slab<T>, idx: u32) {
        let tail = self.tail;
        let (prev, next) = slab.at_mut(idx).links();
        (*prev, *next) = (tail, NIL);
        if tail == NIL {
            self.head = idx;
        } else {
            *slab.at_mut(tail).links().1 = idx;
        }
        self.tail = idx;
        self.len += 1;
    }

    /// Closes the gap an entry leaves, given the neighbours it had (read
    /// before it went: the entry itself may be gone from the slab).
    #[inline(always)]
    pub(crate) fn unlink<T: Linked>(&mut self, slab: &mut Slab<T>, prev: u32, next: u32) {
        if prev == NIL {
            self.head = next;
        } else {
            *slab.at_mut(prev).links().1 = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            *slab.at_mut(next).links().0 = prev;
        }
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_find_nothing() {
        let mut s = Slab::default();
        let a = s.insert(1).unwrap();
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(2).unwrap();
        assert_eq!(a.idx, b.idx);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(b), Some(&2));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn wrapped_slots_are_retired() {
        let mut s: Slab<u8> = Slab::default();
        let a = s.insert(1).unwrap();
        s.slot_mut(0).unwrap().gen = u32::MAX;
        let a = Id { gen: u32::MAX, ..a };
        s.remove(a);
        let b = s.insert(2).unwrap();
        assert_ne!(b.idx, a.idx);
    }

    #[test]
    fn a_full_slab_hands_the_value_back() {
        let mut s: Slab<String> = Slab::default();
        let a = s.insert("a".into()).unwrap();
        s.set_capacity(1);
        assert_eq!(s.vacant_id(), None);
        assert_eq!(s.insert("b".into()), Err("b".to_string()));
        assert_eq!(s.len(), 1);
        // A retired slot does not come back either.
        s.slot_mut(0).unwrap().gen = u32::MAX;
        s.remove(Id { gen: u32::MAX, ..a });
        assert_eq!(s.insert("c".into()), Err("c".to_string()));
        assert_eq!(s.len(), 0);
    }
}
