//! Moving a subtree from one heap to another: detach it into a `Send`
//! [`Parcel`] after checking the transfer rules over every object in it, then
//! attach the parcel under a parent of another heap.

use std::fmt;
use std::marker::PhantomData;

use crate::heap::Name;
use crate::storage::{flag, Detached, Flags, NIL};
use crate::{AnyPtr, Error, IntoParent, Ptr, Talloc};

/// Which transfer rule an object broke.
///
/// ```
/// use talloc::{Talloc, TransferRule};
/// let mut heap = Talloc::new();
/// let pool = heap.pool(None, 256)?;
/// let rule = |heap: &Talloc, p| heap.check_transfer(p).unwrap().map(|e| e.rule);
/// assert_eq!(rule(&heap, pool.erase()), Some(TransferRule::InPool));
/// let plain = heap.alloc_str(None, "ok")?;
/// assert_eq!(rule(&heap, plain.erase()), None);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferRule {
    /// The object was carved from a pool (or is a pool): its memory belongs
    /// to a region of the sending heap.
    InPool,
    /// The object has a destructor: a closure of the sending thread.
    Destructor,
    /// The value was allocated as not `Send` (with `alloc_local`), such as an
    /// event handle.
    NotSend,
    /// A reference crosses the subtree's boundary (an outside object
    /// references an object inside, or a reference inside points outside).
    OutsideReference,
    /// The object is being freed or its destructor is running.
    Busy,
}

impl fmt::Display for TransferRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferRule::InPool => "objects in a pool cannot move between heaps",
            TransferRule::Destructor => "objects with a destructor cannot move between heaps",
            TransferRule::NotSend => "values that are not Send cannot move between threads",
            TransferRule::OutsideReference => "a reference crosses the subtree's boundary",
            TransferRule::Busy => "the object is being freed",
        })
    }
}

/// A refused transfer: the first offending object (in the order a report
/// walks the subtree) and the rule it broke. The subtree is untouched.
///
/// ```
/// use talloc::{Talloc, TransferRule};
/// let mut heap = Talloc::new();
/// let msg = heap.new_context(None)?;
/// let part = heap.alloc_str(msg, "part")?;
/// heap.set_destructor(part, |_, _| Ok(()))?;
/// let err = heap.check_transfer(msg)?.unwrap();
/// assert_eq!(err.object, part.erase());
/// assert_eq!(err.name, "part"); // alloc_str names a string by its text, as C does
/// assert_eq!(err.rule, TransferRule::Destructor);
/// assert!(err.to_string().contains("destructor"));
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferError {
    /// The offending object, still where it was.
    pub object: AnyPtr,
    /// Its name, for messages.
    pub name: String,
    /// The rule it broke.
    pub rule: TransferRule,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot transfer '{}' ({:?}): {}",
            self.name, self.object, self.rule
        )
    }
}

impl std::error::Error for TransferError {}

/// One object of a parcel.
struct Entry {
    value: Detached,
    /// Index of the parent entry; NIL for the root.
    parent: u32,
    flags: Flags,
    name: Option<ParcelName>,
    /// For a reference handle: the entry it points at.
    target: Option<u32>,
    /// The entries of the references to this object, oldest first (so the
    /// newest stays the newest).
    refs: Vec<u32>,
    limit: Option<usize>,
}

enum ParcelName {
    Const(&'static str),
    /// The entry holding the name chunk.
    Chunk(u32),
    /// A name chunk that was stolen out of the subtree: its text travels.
    Text(String),
}

/// A subtree taken out of one heap, on its way to another: it owns every
/// value in it, and it is `Send` because every value in it is.
///
/// Make one with [`Talloc::detach`]; put it back with [`Talloc::attach`]
/// (into any heap, on any thread). Dropping a parcel drops its values.
///
/// ```
/// use talloc::Talloc;
/// let mut a = Talloc::new();
/// let msg = a.alloc_str(None, "hello")?;
/// a.alloc_str(msg, "attachment")?;
/// let parcel = a.detach(msg).map_err(|e| e.to_string()).unwrap();
/// assert!(a.get(msg).is_err()); // the old handle is stale
///
/// let got = std::thread::spawn(move || {
///     let mut b = Talloc::new();
///     let msg = b.attach(None, parcel).map_err(|e| e.error).unwrap();
///     (b[msg].to_string(), b.total_blocks(msg).unwrap())
/// }).join().unwrap();
/// assert_eq!(got, ("hello".to_string(), 2));
/// # Ok::<(), talloc::Error>(())
/// ```
pub struct Parcel<T: ?Sized> {
    /// Pre-order, children newest first: parents come before children.
    entries: Vec<Entry>,
    _root: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> fmt::Debug for Parcel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parcel")
            .field("root", &std::any::type_name::<T>())
            .field("objects", &self.entries.len())
            .finish()
    }
}

impl<T: Send + 'static> Parcel<T> {
    /// A parcel of one object holding `value`, made without a heap: attach
    /// it to a heap to get the object (on any thread, since `T` is `Send`).
    /// Its name is the type's, as [`alloc`](Talloc::alloc) gives. On an
    /// error (out of memory, a value over 4 GiB) the value comes back.
    ///
    /// ```
    /// use talloc::{Parcel, Talloc};
    /// let parcel = Parcel::new(vec![1, 2, 3]).map_err(|(e, _)| e)?;
    /// let mut heap = Talloc::new();
    /// let v = heap.attach(None, parcel).map_err(|e| e.error)?;
    /// assert_eq!(heap[v], [1, 2, 3]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Parcel<T>, (Error, T)> {
        let value = Detached::from_value(value).map_err(|(e, v)| (Error::from(e), v))?;
        Ok(Parcel {
            entries: vec![Entry {
                value,
                parent: NIL,
                flags: 0,
                name: None,
                target: None,
                refs: Vec::new(),
                limit: None,
            }],
            _root: PhantomData,
        })
    }
}

impl<T: ?Sized> Parcel<T> {
    /// Number of objects in the parcel.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.new_context(None)?;
    /// heap.alloc_zeroed(p, 8)?;
    /// assert_eq!(heap.detach(p).unwrap().len(), 2);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a parcel holds at least its root.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 1u8)?;
    /// assert!(!heap.detach(p).unwrap().is_empty());
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A failed attach: why, and the parcel back, untouched.
///
/// ```
/// use talloc::{Error, Talloc};
/// let (mut a, mut b) = (Talloc::new(), Talloc::new());
/// let msg = a.alloc_str(None, "msg")?;
/// let parcel = a.detach(msg).unwrap();
/// let gone = b.new_context(None)?;
/// b.free(gone)?;
/// // A stale parent: the parcel comes back and can go elsewhere.
/// let err = b.attach(gone, parcel).unwrap_err();
/// assert_eq!(err.error, Error::Stale);
/// let msg = b.attach(None, err.parcel).unwrap();
/// assert_eq!(&b[msg], "msg");
/// # Ok::<(), Error>(())
/// ```
pub struct AttachError<T: ?Sized> {
    /// Why the parcel could not be attached.
    pub error: Error,
    /// The parcel, to try elsewhere or drop.
    pub parcel: Parcel<T>,
}

impl<T: ?Sized> fmt::Debug for AttachError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachError")
            .field("error", &self.error)
            .field("parcel", &self.parcel)
            .finish()
    }
}

impl<T: ?Sized> fmt::Display for AttachError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot attach the parcel")
    }
}

/// The cause is the [`error`](AttachError::error) field.
impl<T: ?Sized> std::error::Error for AttachError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A refused or impossible detach.
///
/// ```
/// use talloc::{DetachError, Error, Talloc, TransferRule};
/// let mut heap = Talloc::new();
/// let local = heap.alloc_local(None, std::rc::Rc::new(1))?;
/// match heap.detach(local) {
///     Err(DetachError::Transfer(e)) => assert_eq!(e.rule, TransferRule::NotSend),
///     other => panic!("{other:?}"),
/// }
/// heap.free(local)?;
/// assert_eq!(heap.detach(local).unwrap_err(), DetachError::Handle(Error::Stale));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachError {
    /// The handle is no good (stale, foreign).
    Handle(Error),
    /// A transfer rule refused an object of the subtree.
    Transfer(TransferError),
}

impl fmt::Display for DetachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetachError::Handle(e) => e.fmt(f),
            DetachError::Transfer(e) => e.fmt(f),
        }
    }
}

/// Both variants are transparent: they show the error they hold, which
/// has no cause of its own.
impl std::error::Error for DetachError {}

/// So that `?` works on `detach` in functions returning [`Error`].
impl From<DetachError> for Error {
    fn from(e: DetachError) -> Error {
        match e {
            DetachError::Handle(e) => e,
            DetachError::Transfer(t) => Error::Transfer(t),
        }
    }
}

/// So that `?` works on `attach` in functions returning [`Error`] (the
/// parcel is dropped).
impl<T: ?Sized> From<AttachError<T>> for Error {
    fn from(e: AttachError<T>) -> Error {
        e.error
    }
}

impl From<Error> for DetachError {
    fn from(e: Error) -> Self {
        DetachError::Handle(e)
    }
}

impl Talloc {
    /// Checks whether the subtree of `p` could move to another heap, without
    /// moving anything: the first offending object and its rule, if any.
    ///
    /// ```
    /// use talloc::{Talloc, TransferRule};
    /// let mut heap = Talloc::new();
    /// let msg = heap.new_context(None)?;
    /// let local = heap.alloc_local(msg, std::rc::Rc::new(1))?;
    /// let err = heap.check_transfer(msg)?.unwrap();
    /// assert_eq!((err.object, err.rule), (local.erase(), TransferRule::NotSend));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn check_transfer(&self, p: impl Into<AnyPtr>) -> Result<Option<TransferError>, Error> {
        let root = self.slot(p.into().key)?;
        let mut found = None;
        self.walk(root, |slot, _| {
            if found.is_some() {
                return false;
            }
            if let Some(rule) = self.transfer_rule_broken(root, slot) {
                found = Some(TransferError {
                    object: self.any(slot),
                    name: self.name_of(slot).to_string(),
                    rule,
                });
                return false;
            }
            true
        });
        Ok(found)
    }

    fn transfer_rule_broken(&self, root: u32, slot: u32) -> Option<TransferRule> {
        let n = self.slots.node(slot);
        if n.has(flag::FREEING | flag::IN_DESTRUCTOR) {
            return Some(TransferRule::Busy);
        }
        if n.has(flag::POOL | flag::IN_POOL) {
            return Some(TransferRule::InPool);
        }
        if n.has(flag::DESTRUCTOR) {
            return Some(TransferRule::Destructor);
        }
        if n.has(flag::NOT_SEND) {
            return Some(TransferRule::NotSend);
        }
        if n.has(flag::REFERENCED) {
            let refs = self.rare(slot).map(|r| r.refs.as_slice()).unwrap_or(&[]);
            if refs.iter().any(|&h| !self.is_within(h, root)) {
                return Some(TransferRule::OutsideReference);
            }
        }
        if n.has(flag::REF_HANDLE)
            && !self
                .handle_target(slot)
                .is_some_and(|t| self.is_within(t, root))
        {
            return Some(TransferRule::OutsideReference);
        }
        None
    }

    /// Takes the subtree of `p` out of this heap into a [`Parcel`], after
    /// checking every object against the transfer rules: no pool, no
    /// destructor, every value `Send`, no reference across the boundary. A
    /// refusal leaves the subtree exactly as it was. After a detach, every
    /// handle into the subtree is stale here.
    ///
    /// ```
    /// use talloc::{Talloc, TransferRule, DetachError};
    /// let mut heap = Talloc::new();
    /// let msg = heap.alloc_str(None, "m")?;
    /// heap.set_destructor(msg, |_, _| Ok(()))?;
    /// match heap.detach(msg) {
    ///     Err(DetachError::Transfer(e)) => assert_eq!(e.rule, TransferRule::Destructor),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(&heap[msg], "m"); // untouched
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn detach<T: ?Sized>(&mut self, p: Ptr<T>) -> Result<Parcel<T>, DetachError> {
        let root = self.slot(p.key)?;
        if let Some(e) = self.check_transfer(p.erase())? {
            return Err(DetachError::Transfer(e));
        }
        // Number the subtree in pre-order.
        let mut order = Vec::new();
        self.walk(root, |slot, _| {
            order.push(slot);
            true
        });
        // Slot -> entry number; a lone object (the common message) needs no
        // map at all.
        let index: std::collections::HashMap<u32, u32> = order
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &s)| (s, i as u32))
            .collect();
        let lookup = |s: u32| {
            if s == root {
                Some(0)
            } else {
                index.get(&s).copied()
            }
        };
        // Parents and reference targets are inside (checked above).
        let entry = |s: u32| lookup(s).expect("inside the subtree");
        // The root leaves its parent (limits included).
        let parent = self.slots.node(root).parent;
        if self.limits > 0 && parent != NIL {
            let bytes = self.charged_bytes(root);
            self.uncharge(parent, bytes);
        }
        self.unlink_node(root);
        let mut entries = Vec::with_capacity(order.len());
        for &slot in &order {
            let n = self.slots.node(slot);
            let flags = n.flags & (flag::CONTEXT | flag::NAME_CHUNK | flag::REF_HANDLE);
            let parent = if slot == root { NIL } else { entry(n.parent) };
            let (name, target, limit) = match self.rare(slot) {
                Some(r) => (
                    r.name.as_ref().and_then(|name| match name {
                        Name::Const(s) => Some(ParcelName::Const(s)),
                        Name::Chunk(k) => {
                            let c = self.slot(*k).ok()?;
                            Some(match lookup(c) {
                                Some(i) => ParcelName::Chunk(i),
                                None => ParcelName::Text(self.name_of(slot).to_string()),
                            })
                        }
                    }),
                    r.target.and_then(|k| self.slot(k).ok()).map(entry),
                    r.limit.map(|(max, _)| max),
                ),
                None => (None, None, None),
            };
            let refs = self
                .rare(slot)
                .map_or(Vec::new(), |r| r.refs.iter().map(|&h| entry(h)).collect());
            entries.push(Entry {
                value: Detached::empty(),
                parent,
                flags,
                name,
                target,
                refs,
                limit,
            });
        }
        // Now empty the slots (after all lookups above: a released slot no
        // longer answers them): values moved out without a drop.
        for (&slot, entry) in order.iter().zip(entries.iter_mut()) {
            if self.slots.node(slot).has(flag::LIMIT) {
                self.limits -= 1;
            }
            let _ = self.drop_rare(slot);
            let n = self.slots.node_mut(slot);
            n.child = NIL;
            n.parent = NIL;
            n.prev = NIL;
            n.next = NIL;
            entry.value = self.slots.detach_value(slot);
        }
        Ok(Parcel {
            entries,
            _root: PhantomData,
        })
    }

    /// Puts a parcel under `parent` in this heap (`None`: top level) and
    /// returns the new handle of its root. The subtree keeps its shape, child
    /// order, names and internal references. On an error (a stale or foreign
    /// parent) the parcel comes back in the [`AttachError`].
    ///
    /// ```
    /// # let mut a = talloc::Talloc::new();
    /// # let mut b = talloc::Talloc::new();
    /// let x = a.alloc_slice(None, &[1, 2, 3])?;
    /// let parcel = a.detach(x).unwrap();
    /// let home = b.new_context(None)?;
    /// let x = b.attach(home, parcel).unwrap();
    /// assert_eq!(&b[x], &[1, 2, 3]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn attach<T: ?Sized>(
        &mut self,
        parent: impl IntoParent,
        parcel: Parcel<T>,
    ) -> Result<Ptr<T>, AttachError<T>> {
        let dest = match self.parent_slot(parent.into_parent()) {
            Ok(d) if d != NIL && self.slots.node(d).has(flag::REF_HANDLE) => {
                return Err(AttachError {
                    error: Error::IsReference,
                    parcel,
                });
            }
            Ok(d) => d,
            Err(error) => return Err(AttachError { error, parcel }),
        };
        if parcel.entries.len() > self.slots.vacancies() as usize
            || self
                .slots
                .admit_types(parcel.entries.iter().map(|e| &e.value))
                .is_err()
        {
            return Err(AttachError {
                error: Error::HeapFull,
                parcel,
            });
        }
        let mut entries = parcel.entries;
        let slots: Vec<u32> = entries
            .iter_mut()
            .map(|e| {
                let value = std::mem::replace(&mut e.value, Detached::empty());
                self.slots.attach_value(value, e.flags)
            })
            .collect();
        // Link in reverse pre-order: older siblings first, so each list ends
        // newest first as it was.
        for i in (1..slots.len()).rev() {
            self.link(slots[entries[i].parent as usize], slots[i]);
        }
        for (i, e) in entries.into_iter().enumerate() {
            let slot = slots[i];
            let name = match e.name {
                Some(ParcelName::Const(s)) => Some(Name::Const(s)),
                Some(ParcelName::Chunk(c)) => Some(Name::Chunk(self.key(slots[c as usize]))),
                Some(ParcelName::Text(text)) => {
                    // Best effort: a name that cannot be stored is dropped.
                    let _ = self.set_name(self.any(slot), text);
                    None
                }
                None => None,
            };
            if let Some(name) = name {
                self.rare_mut(slot).name = Some(name);
                self.slots.node_mut(slot).flags |= flag::NAMED;
            }
            if let Some(t) = e.target {
                let tslot = slots[t as usize];
                let tkey = self.key(tslot);
                self.rare_mut(slot).target = Some(tkey);
            }
            if !e.refs.is_empty() {
                self.rare_mut(slot).refs = e.refs.iter().map(|&h| slots[h as usize]).collect();
                self.slots.node_mut(slot).flags |= flag::REFERENCED;
            }
            if let Some(max) = e.limit {
                self.rare_mut(slot).limit = Some((max, 0));
                self.slots.node_mut(slot).flags |= flag::LIMIT;
                self.limits += 1;
            }
        }
        let root = slots[0];
        if self.limits > 0 {
            for &slot in &slots {
                if self.slots.node(slot).has(flag::LIMIT) {
                    let used = self.charged_bytes(slot);
                    if let Some(l) = self.rare_mut(slot).limit.as_mut() {
                        l.1 = used;
                    }
                }
            }
        }
        if self.limits > 0 && dest != NIL {
            let bytes = self.charged_bytes(root);
            self.charge_unchecked(dest, bytes);
        }
        self.link(dest, root);
        Ok(Ptr::from_key(self.key(root)))
    }
}
