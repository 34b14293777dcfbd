//! The one error type of the heap.

use std::fmt;

use crate::AnyPtr;

/// Why a heap operation did nothing.
///
/// Every operation that returns an `Error` left the heap exactly as it was.
///
/// ```
/// use talloc::{Talloc, Error};
/// let mut heap = Talloc::new();
/// let a = heap.new_context(None)?;
/// let b = heap.new_context(a)?;
/// assert_eq!(heap.steal(b, a), Err(Error::Loop));   // C would make a cycle
/// heap.free(a)?;
/// assert_eq!(heap.free(a), Err(Error::Stale));     // C would abort
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The handle's object was freed (or moved to another heap).
    Stale,
    /// The handle belongs to another heap.
    ForeignHeap,
    /// The object is not of the requested type.
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        actual: &'static str,
    },
    /// The steal would put an object under itself or its own descendant.
    Loop,
    /// The object has references (more than one parent), so it cannot be
    /// freed directly: unlink the references first.
    HasReferences {
        /// How many references point at it.
        count: usize,
    },
    /// The object's destructor (or a destructor in its subtree, for the
    /// object itself) refused the free.
    Refused,
    /// The object's destructor is running (a destructor freeing its own
    /// object).
    DestructorRunning,
    /// The object is in the middle of being freed.
    BeingFreed,
    /// The context is neither the parent of the object nor the owner of one
    /// of its references.
    NotAParent,
    /// The size does not fit (more than 4 GiB, or arithmetic overflow).
    TooLarge,
    /// The system allocator failed.
    OutOfMemory,
    /// The heap holds as many objects as its handles can name (2^32 - 1
    /// slots, less those retired because their generation ran out), or as
    /// many distinct types as its nodes can name (65,536; bytes and
    /// strings can always be stored).
    HeapFull,
    /// Every heap id of the process has been handed out (2^64 - 2 heaps):
    /// a new heap could not be told apart from an old one.
    HeapIdsExhausted,
    /// A memory limit set with `set_memlimit` on an ancestor would be
    /// exceeded.
    MemoryLimit {
        /// The limited context.
        context: AnyPtr,
    },
    /// Pools cannot be resized (as in C).
    IsPool,
    /// The operation needs a slice or string object.
    NotResizable,
    /// The operation is not possible on a reference handle.
    IsReference,
    /// A string operation got a length that is not on a character boundary.
    NotCharBoundary,
    /// Two handles given to
    /// [`get_disjoint_mut`](crate::Talloc::get_disjoint_mut) name the same
    /// object.
    Aliased,
    /// A subtree could not move to another heap (see
    /// [`Talloc::detach`](crate::Talloc::detach)).
    Transfer(crate::TransferError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Stale => f.write_str("the object was freed or moved to another heap"),
            Error::ForeignHeap => f.write_str("the handle belongs to another heap"),
            Error::WrongType { expected, actual } => {
                write!(f, "type mismatch: expected {expected}, found {actual}")
            }
            Error::Loop => f.write_str("the steal would make a loop"),
            Error::HasReferences { count } => {
                write!(f, "the object has {count} reference(s): unlink them first")
            }
            Error::Refused => f.write_str("a destructor refused the free"),
            Error::DestructorRunning => f.write_str("the object's destructor is running"),
            Error::BeingFreed => f.write_str("the object is being freed"),
            Error::NotAParent => f.write_str("the context is not a parent of the object"),
            Error::TooLarge => f.write_str("the size is too large"),
            Error::OutOfMemory => f.write_str("out of memory"),
            Error::HeapFull => f.write_str("the heap has no free slot (or type index) left"),
            Error::HeapIdsExhausted => f.write_str("no heap id is left in this process"),
            Error::MemoryLimit { context } => {
                write!(f, "the memory limit of {context:?} would be exceeded")
            }
            Error::IsPool => f.write_str("a pool cannot be resized"),
            Error::NotResizable => f.write_str("only slices and strings can be resized"),
            Error::IsReference => f.write_str("the object is a reference handle"),
            Error::NotCharBoundary => f.write_str("the length is not on a character boundary"),
            Error::Aliased => f.write_str("two handles name the same object"),
            Error::Transfer(e) => e.fmt(f),
        }
    }
}

/// Every variant is a cause of its own: none has a `source`. (`Transfer`
/// shows its [`TransferError`](crate::TransferError) as its own message.)
impl std::error::Error for Error {}

impl From<crate::storage::StoreError> for Error {
    fn from(e: crate::storage::StoreError) -> Error {
        match e {
            crate::storage::StoreError::TooLarge => Error::TooLarge,
            crate::storage::StoreError::OutOfMemory => Error::OutOfMemory,
            crate::storage::StoreError::Full => Error::HeapFull,
            crate::storage::StoreError::WrongKind => Error::NotResizable,
        }
    }
}

/// A failed [`alloc`](crate::Talloc::alloc): why, and the value back,
/// untouched (as calloop's `InsertError` gives its source back).
///
/// `?` turns it into the plain [`Error`] (dropping the value), so code that
/// does not want the value back reads as before.
///
/// ```
/// use talloc::{Error, Talloc};
/// let mut heap = Talloc::new();
/// let gone = heap.new_context(None)?;
/// heap.free(gone)?;
/// let err = heap.alloc(gone, String::from("keep me")).unwrap_err();
/// assert_eq!(err.error, Error::Stale);
/// let p = heap.alloc(None, err.value)?; // try elsewhere
/// assert_eq!(heap[p], "keep me");
/// # Ok::<(), Error>(())
/// ```
pub struct AllocError<T> {
    /// Why the value could not be stored.
    pub error: Error,
    /// The value, still the caller's.
    pub value: T,
}

impl<T> AllocError<T> {
    /// The value, given back.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// Shows the error and the value's type (the value itself need not be
/// `Debug`).
impl<T> fmt::Debug for AllocError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocError")
            .field("error", &self.error)
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> fmt::Display for AllocError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot allocate a {}", std::any::type_name::<T>())
    }
}

/// The cause is the [`error`](AllocError::error) field.
impl<T> std::error::Error for AllocError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// So that `?` works on `alloc` in functions returning [`Error`] (the value
/// is dropped).
impl<T> From<AllocError<T>> for Error {
    fn from(e: AllocError<T>) -> Error {
        e.error
    }
}

/// Compares the error only, so that tests can write
/// `assert_eq!(heap.alloc(p, v).unwrap_err(), Error::Stale)`.
impl<T> PartialEq<Error> for AllocError<T> {
    fn eq(&self, other: &Error) -> bool {
        self.error == *other
    }
}
