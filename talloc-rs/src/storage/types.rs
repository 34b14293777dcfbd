//! The types a heap stores, each known to its nodes by a 16-bit index.
//!
//! A node names its type in two bytes instead of an eight-byte pointer to
//! the type's [`TypeDesc`], which is what makes a node 64 bytes. The table
//! maps the index back to the descriptor, and a descriptor to its index
//! when a value is stored: through a small cache by address first, so
//! that storing values of a handful of types costs a compare. Byte arrays
//! and strings, the types of `alloc_zeroed` and `alloc_str`, have fixed
//! indices and cost nothing.

use std::collections::HashMap;

use super::object::{marker_desc, STR_DESC};
use super::Object;
use super::{flag, Flags, StoreError, TypeDesc};

/// Cache entries, looked up by a hash of the descriptor's address.
const RECENT: usize = 16;

/// A type as a node stores it: its index, and the flags it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeRef {
    pub(super) index: u16,
    /// `NEEDS_DROP` if values of the type need dropping, else nothing.
    pub(super) flags: Flags,
}

/// One heap's table of stored types.
pub(super) struct Types {
    /// Index to descriptor. Entry 0 is the unit marker, the type of every
    /// vacant node.
    descs: Vec<&'static TypeDesc>,
    /// Recently indexed descriptors: (address, type), by address hash.
    recent: [(usize, TypeRef); RECENT],
    /// Descriptor address to type, for every entry of `descs`. The same
    /// type may have more than one descriptor (a constant may be
    /// duplicated across crates); each simply gets its own index, since
    /// type checks compare `TypeId`s, never descriptors.
    index: HashMap<usize, TypeRef>,
    /// Types the table may hold: all 65,536 indices, except in tests of a
    /// full table.
    cap: usize,
}

impl Types {
    pub(super) fn new() -> Types {
        let mut types = Types {
            descs: Vec::new(),
            recent: [(0, UNIT); RECENT],
            index: HashMap::new(),
            cap: 1 << 16,
        };
        for (desc, fixed) in [
            (marker_desc::<()>(), UNIT),
            (<[u8] as Object>::desc(), BYTES),
            (&STR_DESC, STR),
        ] {
            let ty = types.register(desc);
            debug_assert_eq!(ty, Ok(fixed));
        }
        types
    }

    /// The descriptor of type `index` (an index this table handed out).
    #[inline(always)]
    pub(super) fn desc(&self, index: u16) -> &'static TypeDesc {
        self.descs[usize::from(index)]
    }

    /// The type a value described by `desc` is stored as, registering it
    /// on first use. `Full` once 65,536 descriptors are registered.
    #[inline(always)]
    pub(super) fn of(&mut self, desc: &'static TypeDesc) -> Result<TypeRef, StoreError> {
        let addr = desc as *const TypeDesc as usize;
        let (seen, ty) = self.recent[hash(addr)];
        if seen == addr {
            return Ok(ty);
        }
        self.of_slow(desc)
    }

    #[cold]
    #[inline(never)]
    fn of_slow(&mut self, desc: &'static TypeDesc) -> Result<TypeRef, StoreError> {
        let addr = desc as *const TypeDesc as usize;
        let ty = match self.index.get(&addr) {
            Some(&ty) => ty,
            None => self.register(desc)?,
        };
        self.recent[hash(addr)] = (addr, ty);
        Ok(ty)
    }

    fn register(&mut self, desc: &'static TypeDesc) -> Result<TypeRef, StoreError> {
        if self.descs.len() >= self.cap {
            return Err(StoreError::Full);
        }
        let index = u16::try_from(self.descs.len()).map_err(|_| StoreError::Full)?;
        let ty = TypeRef {
            index,
            flags: if desc.needs_drop { flag::NEEDS_DROP } else { 0 },
        };
        self.descs.push(desc);
        self.index.insert(desc as *const TypeDesc as usize, ty);
        Ok(ty)
    }
}

#[cfg(test)]
impl Types {
    /// Lowers the number of types the table may hold, so that tests can
    /// fill it.
    pub(super) fn set_capacity(&mut self, cap: usize) {
        self.cap = cap.max(self.descs.len());
    }
}

/// The type of vacant nodes and of nodes that hold nothing.
const UNIT: TypeRef = TypeRef { index: 0, flags: 0 };
/// `[u8]`, in every heap.
pub(super) const BYTES: TypeRef = TypeRef { index: 1, flags: 0 };
/// `str`, in every heap.
pub(super) const STR: TypeRef = TypeRef { index: 2, flags: 0 };

/// Descriptors are 8-aligned statics at least 48 bytes apart.
#[inline(always)]
fn hash(addr: usize) -> usize {
    ((addr >> 4) ^ (addr >> 9)) % RECENT
}
