//! Names and types: what reports print and what checks compare.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use crate::heap::Name;
use crate::storage::{flag, Object, NIL};
use crate::{AnyPtr, Error, Ptr, Talloc};

/// The name of a reference handle, as C prints it.
///
/// ```
/// use talloc::{Talloc, REFERENCE_NAME};
/// let mut heap = Talloc::new();
/// let data = heap.alloc_str(None, "shared")?;
/// let owner = heap.new_context(None)?;
/// heap.reference(owner, data)?;
/// let handle = heap.children(owner)?.next().unwrap();
/// assert_eq!(heap.name(handle)?, REFERENCE_NAME);
/// # Ok::<(), talloc::Error>(())
/// ```
pub const REFERENCE_NAME: &str = ".reference";
/// The name of a name chunk made by [`Talloc::set_name`].
///
/// ```
/// use talloc::{Talloc, NAME_CHUNK_NAME};
/// let mut heap = Talloc::new();
/// let conn = heap.new_context(None)?;
/// heap.set_name(conn, "conn 7")?;
/// // The name lives in a child object of its own.
/// let chunk = heap.children(conn)?.next().unwrap();
/// assert_eq!(heap.name(chunk)?, NAME_CHUNK_NAME);
/// assert_eq!(heap.name(conn)?, "conn 7");
/// # Ok::<(), talloc::Error>(())
/// ```
pub const NAME_CHUNK_NAME: &str = ".name";

impl Talloc {
    /// The object's name (`talloc_get_name`): a name set with
    /// [`set_name`](Talloc::set_name) or [`set_name_const`](Talloc::set_name_const),
    /// else `"talloc_new"` for contexts, `".reference"` for reference
    /// handles, and the Rust type name for everything else.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc(None, 0u8)?;
    /// assert_eq!(heap.name(p)?, "u8");
    /// heap.set_name_const(p, "counter")?;
    /// assert_eq!(heap.name(p)?, "counter");
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn name(&self, p: impl Into<AnyPtr>) -> Result<&str, Error> {
        let slot = self.slot(p.into().key)?;
        Ok(self.name_of(slot))
    }

    pub(crate) fn name_of(&self, slot: u32) -> &str {
        let n = self.slots.node(slot);
        if n.has(flag::NAMED) {
            match self.rare(slot).and_then(|r| r.name.as_ref()) {
                Some(Name::Const(s)) => return s,
                Some(Name::Chunk(key)) => {
                    if let Some(text) = self.slot(*key).ok().and_then(|c| self.str_value(c)) {
                        return text;
                    }
                    // The chunk was freed by hand: back to the default name.
                }
                None => {}
            }
        }
        if n.has(flag::REF_HANDLE) {
            REFERENCE_NAME
        } else if n.has(flag::NAME_CHUNK) {
            NAME_CHUNK_NAME
        } else if n.has(flag::CONTEXT) {
            "talloc_new"
        } else if n.has(flag::POOL) && self.slots.desc(slot).elem_size == 0 {
            "talloc_pool"
        } else if let Some(text) = self.str_value(slot) {
            // As C's talloc_strdup: a string is named by its text.
            text
        } else {
            short_type_name((self.slots.desc(slot).type_name)())
        }
    }

    /// The text of a live string node.
    fn str_value(&self, slot: u32) -> Option<&str> {
        self.slots.str_text(slot)
    }

    /// Sets a static name (`talloc_set_name_const`): nothing is allocated.
    /// A name chunk from an earlier [`set_name`](Talloc::set_name) is freed.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.new_context(None)?;
    /// heap.set_name_const(p, "session")?;
    /// assert_eq!(heap.total_blocks(p)?, 1);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn set_name_const(
        &mut self,
        p: impl Into<AnyPtr>,
        name: &'static str,
    ) -> Result<(), Error> {
        let slot = self.slot(p.into().key)?;
        self.replace_name(slot, Name::Const(name));
        Ok(())
    }

    /// Sets a formatted name (`talloc_set_name`; any `Display` value, such as
    /// `format_args!` or a `&str`). As in C, the name is a
    /// string object, a child of `p` named `".name"`, and counts in
    /// `total_size` and `total_blocks`. Unlike C, a replaced name chunk is
    /// freed at once rather than kept until `p` goes.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.alloc_zeroed(None, 10)?;
    /// heap.set_name(p, format_args!("named {}", 1))?;
    /// assert_eq!(heap.name(p)?, "named 1");
    /// assert_eq!((heap.total_size(p)?, heap.total_blocks(p)?), (18, 2));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn set_name(&mut self, p: impl Into<AnyPtr>, name: impl fmt::Display) -> Result<(), Error> {
        let key = p.into().key;
        let chunk = self.alloc_str(AnyPtr { key }, &name.to_string())?;
        self.slots.node_mut(chunk.key.slot).flags |= flag::NAME_CHUNK;
        self.replace_name(key.slot, Name::Chunk(chunk.key));
        Ok(())
    }

    fn replace_name(&mut self, slot: u32, name: Name) {
        let old = self.name_chunk(slot);
        self.rare_mut(slot).name = Some(name);
        self.slots.node_mut(slot).flags |= flag::NAMED;
        if let Some(old) = old {
            let k = self.any(old);
            // A name chunk has no destructor or references: this cannot fail.
            let _ = self.free(k);
        }
    }

    /// The name chunk of a node, if its name is one that is still its child.
    pub(crate) fn name_chunk(&self, slot: u32) -> Option<u32> {
        match self.rare(slot)?.name.as_ref()? {
            Name::Chunk(key) => {
                let c = self.slot(*key).ok()?;
                (self.slots.node(c).parent == slot).then_some(c)
            }
            Name::Const(_) => None,
        }
    }

    /// The object's handle if its name is `name` (`talloc_check_name`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let p = heap.new_context(None)?;
    /// heap.set_name_const(p, "db")?;
    /// assert!(heap.check_name(p, "db")?.is_some());
    /// assert!(heap.check_name(p, "net")?.is_none());
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn check_name(&self, p: impl Into<AnyPtr>, name: &str) -> Result<Option<AnyPtr>, Error> {
        let p = p.into();
        Ok((self.name(p)? == name).then_some(p))
    }

    /// The nearest object named `name`, starting with `p` itself and going
    /// up (`talloc_find_parent_byname`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let top = heap.new_context(None)?;
    /// heap.set_name_const(top, "server")?;
    /// let mid = heap.new_context(top)?;
    /// let leaf = heap.alloc_zeroed(mid, 1)?;
    /// assert_eq!(heap.find_parent_by_name(leaf, "server")?, Some(top.erase()));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn find_parent_by_name(
        &self,
        p: impl Into<AnyPtr>,
        name: &str,
    ) -> Result<Option<AnyPtr>, Error> {
        let mut slot = self.slot(p.into().key)?;
        while slot != NIL {
            if self.name_of(slot) == name {
                return Ok(Some(self.any(slot)));
            }
            slot = self.slots.node(slot).parent;
        }
        Ok(None)
    }

    /// The nearest object of type `T`, starting with `p` itself and going up
    /// (`talloc_find_parent_bytype`); the check is by type, not name.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// struct Server { port: u16 }
    /// let s = heap.alloc(None, Server { port: 445 })?;
    /// let mid = heap.new_context(s)?;
    /// let leaf = heap.alloc_str(mid, "x")?;
    /// let found = heap.find_parent_by_type::<Server>(leaf)?.unwrap();
    /// assert_eq!(heap[found].port, 445);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn find_parent_by_type<T: Object + ?Sized>(
        &self,
        p: impl Into<AnyPtr>,
    ) -> Result<Option<Ptr<T>>, Error> {
        let mut slot = self.slot(p.into().key)?;
        let want = TypeId::of::<T>();
        while slot != NIL {
            let n = self.slots.node(slot);
            if (self.slots.desc(slot).type_id)() == want {
                return Ok(Some(Ptr::from_key(self.key(slot))));
            }
            slot = n.parent;
        }
        Ok(None)
    }
}

/// A type name without module paths: `alloc::vec::Vec<alloc::string::String>`
/// becomes `Vec<String>`. Computed once per type name.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    if !full.contains("::") {
        return full;
    }
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache.entry(full).or_insert_with(|| {
        let mut out = String::with_capacity(full.len());
        let mut word = String::new();
        for ch in full.chars() {
            if ch.is_alphanumeric() || ch == '_' || ch == ':' {
                word.push(ch);
            } else {
                out.push_str(word.rsplit("::").next().unwrap_or(&word));
                word.clear();
                out.push(ch);
            }
        }
        out.push_str(word.rsplit("::").next().unwrap_or(&word));
        Box::leak(out.into_boxed_str())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_type_names() {
        use super::short_type_name as s;
        assert_eq!(s("u8"), "u8");
        assert_eq!(s("alloc::string::String"), "String");
        assert_eq!(s("alloc::vec::Vec<alloc::string::String>"), "Vec<String>");
        assert_eq!(s("[core::option::Option<u32>]"), "[Option<u32>]");
        assert_eq!(s("(a::B, c::D)"), "(B, D)");
    }
}
