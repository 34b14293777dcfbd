//! Setting destructors: a closure owned by its object, or a plain function
//! shared by every object that has it, as C's `talloc_set_destructor`
//! takes.
//!
//! A closure needs the object's side entry. A function does not: the heap
//! keeps each distinct function once, in a table, and an object that has
//! nothing else rare names its function by its index in the node's side
//! index field (`DESTRUCTOR` without `RARE`). Setting one is a table
//! lookup and two stores, and freeing its object gives nothing back.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::heap::DestructorResult;
use crate::storage::{flag, NIL};
use crate::{AnyPtr, Error, Ptr, Talloc};

/// A destructor with its object's type erased, as a side entry keeps it:
/// it gets the handle as an `AnyPtr` and mints the typed one.
pub(crate) type Boxed = Box<dyn FnMut(&mut Talloc, AnyPtr) -> DestructorResult>;

/// A destructor taken out of its object to be called.
pub(crate) enum Destructor {
    /// A closure, from the object's side entry.
    Closure(Boxed),
    /// A plain function: its index in the heap's [`Functions`].
    Function(u32),
}

/// The bounds of a destructor `set_destructor_fn` can share.
trait Shareable<T: ?Sized>: Fn(&mut Talloc, Ptr<T>) -> DestructorResult + Copy + 'static {}

impl<T: ?Sized, F> Shareable<T> for F where
    F: Fn(&mut Talloc, Ptr<T>) -> DestructorResult + Copy + 'static
{
}

/// A function destructor with its object's type erased. It is shared
/// through an `Rc` so that a call can hold it while the heap is lent to
/// it (the function may set or free destructors itself).
type Erased = Rc<dyn Fn(&mut Talloc, AnyPtr) -> DestructorResult>;

/// The function destructors of one heap, each kept once. Entries stay
/// for the heap's life: there are as many as the program has distinct
/// destructor functions.
#[derive(Default)]
pub(crate) struct Functions {
    fns: Vec<Erased>,
    /// The function's type (a function item, or a closure that captures
    /// nothing: zero-sized, so all its values are the same) to index.
    index: HashMap<TypeId, u32>,
    /// The last function looked up, found again in a compare.
    last: Option<(TypeId, u32)>,
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Functions")
            .field("len", &self.fns.len())
            .finish()
    }
}

impl Functions {
    /// The index of the zero-sized function `f`, added on first use.
    #[inline]
    fn index_of<T: ?Sized + 'static, F: Shareable<T>>(&mut self, f: F) -> u32 {
        let key = TypeId::of::<F>();
        match self.last {
            Some((ty, i)) if ty == key => i,
            _ => self.index_of_slow(f, key),
        }
    }

    #[cold]
    fn index_of_slow<T: ?Sized + 'static, F: Shareable<T>>(&mut self, f: F, key: TypeId) -> u32 {
        let next = self.fns.len() as u32;
        let i = *self.index.entry(key).or_insert(next);
        if i == next {
            // A `Ptr<T>` is minted only for the objects this function was
            // set on, which hold a `T` (the setter took a `Ptr<T>`).
            self.fns.push(Rc::new(move |heap, me: AnyPtr| {
                f(heap, Ptr::from_key(me.key))
            }));
        }
        self.last = Some((key, i));
        i
    }

    /// The function at `i`, to call.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> Erased {
        Rc::clone(&self.fns[i as usize])
    }

    /// The function at `i` in a box, for a side entry (an object that
    /// has a function destructor and gets a name, reference or limit).
    pub(crate) fn boxed(&self, i: u32) -> Boxed {
        let f = self.get(i);
        Box::new(move |heap, me| f(heap, me))
    }

    /// Whether `i` names a function of this table.
    pub(crate) fn contains(&self, i: u32) -> bool {
        (i as usize) < self.fns.len()
    }
}

impl Talloc {
    /// Sets the destructor of an object (`talloc_set_destructor`), replacing
    /// any previous one. It runs when the object is freed, before its
    /// children, with the heap and the object's handle; returning
    /// `Err(Refused)` keeps the object alive.
    ///
    /// A closure may own state; a plain function costs less, see
    /// [`set_destructor_fn`](Talloc::set_destructor_fn).
    ///
    /// ```
    /// use talloc::{Talloc, Refused};
    /// let mut heap = Talloc::new();
    /// let top = heap.new_context(None)?;
    /// let keep = heap.alloc_str(top, "precious")?;
    /// heap.set_destructor(keep, |_, _| Err(Refused))?;
    /// heap.free(top)?;                  // the child refuses and survives
    /// assert_eq!(heap.parent(keep)?, None);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn set_destructor<T: ?Sized + 'static>(
        &mut self,
        p: Ptr<T>,
        mut f: impl FnMut(&mut Talloc, Ptr<T>) -> DestructorResult + 'static,
    ) -> Result<(), Error> {
        let slot = self.destructor_target(p.key)?;
        let erased = Box::new(move |heap: &mut Talloc, me: AnyPtr| f(heap, Ptr::from_key(me.key)));
        self.rare_mut(slot).destructor = Some(erased);
        self.slots.node_mut(slot).flags |= flag::DESTRUCTOR;
        Ok(())
    }

    /// Sets a plain function as the destructor of an object, replacing any
    /// previous one: what [`set_destructor`](Talloc::set_destructor) does,
    /// the way C's `talloc_set_destructor` takes a function pointer.
    ///
    /// A function named by its item (`f`, `f::<T>`) or a closure that
    /// captures nothing has one value, so the heap keeps it once and an
    /// object that has nothing else rare (no name, reference or limit)
    /// needs no side entry for it. Anything else `Copy` (a function
    /// pointer, a closure that captures `Copy` state) is kept per object,
    /// exactly as `set_destructor` keeps it.
    ///
    /// ```
    /// use talloc::{DestructorResult, Ptr, Refused, Talloc};
    /// fn keep_nonzero(heap: &mut Talloc, p: Ptr<u32>) -> DestructorResult {
    ///     if heap[p] == 0 { Ok(()) } else { Err(Refused) }
    /// }
    /// let mut heap = Talloc::new();
    /// let a = heap.alloc(None, 1u32)?;
    /// let b = heap.alloc(None, 0u32)?;
    /// heap.set_destructor_fn(a, keep_nonzero)?;
    /// heap.set_destructor_fn(b, keep_nonzero)?;
    /// assert_eq!(heap.free(a), Err(talloc::Error::Refused));
    /// heap.free(b)?;
    /// # Ok::<(), talloc::Error>(())
    /// ```
    #[inline]
    pub fn set_destructor_fn<T: ?Sized + 'static, F>(
        &mut self,
        p: Ptr<T>,
        f: F,
    ) -> Result<(), Error>
    where
        F: Fn(&mut Talloc, Ptr<T>) -> DestructorResult + Copy + 'static,
    {
        // A zero-sized `F` (a function item, a closure that captures
        // nothing) has one value, so one copy serves every object; being
        // `Copy`, it has no drop. A function pointer or a closure with
        // captured state is kept per object, as `set_destructor` does.
        if std::mem::size_of::<F>() != 0 {
            return self.set_destructor(p, f);
        }
        let slot = self.destructor_target(p.key)?;
        let i = self.functions.index_of(f);
        if self.slots.node(slot).has(flag::RARE) {
            // It has a side entry anyway: the function goes there.
            let boxed = self.functions.boxed(i);
            self.rare_mut(slot).destructor = Some(boxed);
        } else {
            self.slots.node_mut(slot).rare = i;
        }
        self.slots.node_mut(slot).flags |= flag::DESTRUCTOR;
        Ok(())
    }

    /// Removes an object's destructor (`talloc_set_destructor(p, NULL)`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// heap.set_destructor(p, |_, _| Err(talloc::Refused))?;
    /// heap.clear_destructor(p)?;
    /// assert!(!heap.has_destructor(p)?);
    /// heap.free(p)?;
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn clear_destructor(&mut self, p: impl Into<AnyPtr>) -> Result<(), Error> {
        let slot = self.slot(p.into().key)?;
        if self.slots.node(slot).has(flag::DESTRUCTOR) {
            let old = self.take_destructor(slot);
            self.slots.node_mut(slot).flags &= !flag::DESTRUCTOR;
            drop(old);
        }
        Ok(())
    }

    /// Whether a destructor is set.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// assert!(!heap.has_destructor(p)?);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn has_destructor(&self, p: impl Into<AnyPtr>) -> Result<bool, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(self.slots.node(slot).has(flag::DESTRUCTOR))
    }

    /// The slot of a live object that may have a destructor (not a
    /// reference handle).
    #[inline]
    fn destructor_target(&self, key: crate::ptr::Key) -> Result<u32, Error> {
        let slot = self.slot(key)?;
        if self.slots.node(slot).has(flag::REF_HANDLE) {
            return Err(Error::IsReference);
        }
        Ok(slot)
    }

    /// Takes a node's destructor out (if it has one), leaving the
    /// `DESTRUCTOR` flag to the caller. A function destructor without a
    /// side entry leaves the node's index field NIL: "taken", until
    /// [`restore_destructor`](Talloc::restore_destructor).
    #[inline]
    pub(crate) fn take_destructor(&mut self, slot: u32) -> Option<Destructor> {
        let n = self.slots.node_mut(slot);
        if !n.has(flag::RARE) {
            if !n.has(flag::DESTRUCTOR) || n.rare == NIL {
                return None;
            }
            let i = std::mem::replace(&mut n.rare, NIL);
            return Some(Destructor::Function(i));
        }
        let r = n.rare;
        self.rare_entry(r)
            .destructor
            .take()
            .map(Destructor::Closure)
    }

    /// Gives a refusing object its destructor back, unless it has another
    /// one or none any more (it set or cleared its own while running).
    pub(crate) fn restore_destructor(&mut self, slot: u32, d: Destructor) {
        let n = self.slots.node(slot);
        if !n.has(flag::DESTRUCTOR) {
            return;
        }
        if !n.has(flag::RARE) {
            if n.rare != NIL {
                return; // It set another function.
            }
            if let Destructor::Function(i) = d {
                self.slots.node_mut(slot).rare = i;
                return;
            }
        }
        if self.rare_mut(slot).destructor.is_none() {
            let boxed = match d {
                Destructor::Closure(b) => b,
                Destructor::Function(i) => self.functions.boxed(i),
            };
            self.rare_mut(slot).destructor = Some(boxed);
        }
    }
}
