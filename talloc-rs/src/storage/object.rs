//! What a stored type is: the sealed [`Object`] trait and the [`TypeDesc`]
//! each type has, with its drop function.

use std::any::TypeId;
use std::mem;
use std::ptr;

/// What the heap knows about a stored type, one static per type.
#[doc(hidden)]
#[derive(Debug)]
pub struct TypeDesc {
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) type_name: fn() -> &'static str,
    pub(crate) elem_size: usize,
    pub(crate) elem_align: usize,
    pub(crate) needs_drop: bool,
    /// Drops `len` elements at the pointer.
    pub(super) drop: unsafe fn(*mut u8, usize),
    pub(crate) kind: Kind,
}

/// The shape of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One `T`.
    Value,
    /// `len` elements of `T`.
    Slice,
    /// UTF-8 bytes followed by a NUL; `len` counts the NUL as C does.
    Str,
}

impl TypeDesc {
    pub(crate) fn own_size(&self, len: u32) -> usize {
        self.elem_size * len as usize
    }
}

/// A type that can live in a [`Talloc`](crate::Talloc) heap: any `'static`
/// sized type, a slice `[T]` of them, or `str`.
///
/// The trait is sealed: it is implemented for exactly those types.
///
/// ```
/// use talloc::{AnyPtr, Object, Talloc};
/// // Generic code over whatever a heap can hold, slices and `str` included.
/// fn is_a<T: Object + ?Sized>(heap: &Talloc, p: AnyPtr) -> bool {
///     heap.downcast::<T>(p).is_ok()
/// }
/// let mut heap = Talloc::new();
/// let s = heap.alloc_str(None, "x")?.erase();
/// let v = heap.alloc(None, 7u32)?.erase();
/// assert!(is_a::<str>(&heap, s) && !is_a::<[u8]>(&heap, s));
/// assert!(is_a::<u32>(&heap, v));
/// # Ok::<(), talloc::Error>(())
/// ```
pub trait Object: private::Sealed + 'static {
    #[doc(hidden)]
    fn desc() -> &'static TypeDesc;
    /// The (possibly wide) pointer to the object stored at `data` with `len`
    /// elements. Making it creates no reference: the caller decides between
    /// `&` and `&mut` according to how it got `data`.
    #[doc(hidden)]
    fn from_raw(data: *mut u8, len: u32) -> *mut Self;
}

mod private {
    pub trait Sealed {}
    impl<T: 'static> Sealed for T {}
    impl<T: 'static> Sealed for [T] {}
    impl Sealed for str {}
}

/// Drops one `T` at `p`.
///
/// # Safety
/// `p` points to an initialised `T` that is not used again.
unsafe fn drop_one<T>(p: *mut u8, _len: usize) {
    // SAFETY: the caller guarantees an initialised, unaliased `T`.
    unsafe { ptr::drop_in_place(p.cast::<T>()) }
}

/// Drops `len` elements of `T` at `p`.
///
/// # Safety
/// `p` points to `len` initialised `T`s that are not used again.
unsafe fn drop_many<T>(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `len` initialised, unaliased elements.
    unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(p.cast::<T>(), len)) }
}

/// Bytes need no drop.
unsafe fn drop_nothing(_p: *mut u8, _len: usize) {}

struct DescOf<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: 'static> DescOf<T> {
    const VALUE: TypeDesc = TypeDesc {
        type_id: TypeId::of::<T>,
        type_name: std::any::type_name::<T>,
        elem_size: mem::size_of::<T>(),
        elem_align: mem::align_of::<T>(),
        needs_drop: mem::needs_drop::<T>(),
        drop: drop_one::<T>,
        kind: Kind::Value,
    };
    const SLICE: TypeDesc = TypeDesc {
        type_id: TypeId::of::<[T]>,
        type_name: std::any::type_name::<[T]>,
        elem_size: mem::size_of::<T>(),
        elem_align: mem::align_of::<T>(),
        needs_drop: mem::needs_drop::<T>(),
        drop: drop_many::<T>,
        kind: Kind::Slice,
    };
}

pub(super) static STR_DESC: TypeDesc = TypeDesc {
    type_id: TypeId::of::<str>,
    type_name: std::any::type_name::<str>,
    elem_size: 1,
    elem_align: 1,
    needs_drop: false,
    drop: drop_nothing,
    kind: Kind::Str,
};

impl<T: 'static> Object for T {
    fn desc() -> &'static TypeDesc {
        &DescOf::<T>::VALUE
    }
    fn from_raw(data: *mut u8, _len: u32) -> *mut T {
        data.cast::<T>()
    }
}

impl<T: 'static> Object for [T] {
    fn desc() -> &'static TypeDesc {
        &DescOf::<T>::SLICE
    }
    fn from_raw(data: *mut u8, len: u32) -> *mut [T] {
        ptr::slice_from_raw_parts_mut(data.cast::<T>(), len as usize)
    }
}

impl Object for str {
    fn desc() -> &'static TypeDesc {
        &STR_DESC
    }
    /// Strings are stored as UTF-8 followed by one NUL byte, which `len`
    /// counts and the `str` leaves out.
    fn from_raw(data: *mut u8, len: u32) -> *mut str {
        ptr::slice_from_raw_parts_mut(data, len as usize - 1) as *mut str
    }
}

/// The descriptor of internal zero-sized markers (contexts, pools, reference
/// handles): their own size is 0 and they hold no value.
pub(crate) fn marker_desc<M: 'static>() -> &'static TypeDesc {
    &DescOf::<M>::VALUE
}
