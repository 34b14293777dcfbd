//! Proptest strategies for users' own property tests (feature `proptest`).
//!
//! [`ops`] generates random sequences of heap operations ([`Op`]) whose
//! operands are indices into the handles issued so far ([`Handles`]), so
//! freed (stale) handles are used again on purpose. [`tree`] generates random
//! tree shapes ([`TreeShape`]) to build a heap to start from. Run your own
//! code between the steps and assert what it promises, together with
//! [`Talloc::verify`]:
//!
//! ```
//! use proptest::prelude::*;
//! use talloc::strategy::{ops, tree, Handles};
//!
//! proptest!(ProptestConfig::with_cases(16), |(shape in tree(8), steps in ops(0..32))| {
//!     let mut heap = talloc::Talloc::new();
//!     let mut handles = Handles::new();
//!     handles.issued = shape.build(&mut heap);
//!     for op in &steps {
//!         let _ = op.apply(&mut heap, &mut handles); // refusals are fine
//!         prop_assert_eq!(heap.verify(), Ok(()));
//!         // ... and here, the invariants of your own code over `heap`.
//!     }
//! });
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use proptest::collection::{vec, SizeRange};
use proptest::prelude::*;

use crate::{
    AnyPtr, DestructorResult, Error, Parcel, Pool, Ptr, Refused, Talloc, NAME_CHUNK_NAME,
    REFERENCE_NAME,
};

/// The handles issued so far by [`Op::apply`], and a log of destructor calls.
///
/// Every object an operation creates is pushed to `issued`: new objects,
/// reference handles, name chunks, and every object of a subtree that a
/// [`Op::Transfer`] moved (they get new handles). An operand `n` of an
/// [`Op`] names `issued[n % issued.len()]`, which may well be stale.
///
/// ```
/// use talloc::strategy::{Handles, New, Op};
/// let mut heap = talloc::Talloc::new();
/// let mut h = Handles::new();
/// Op::Alloc(None, New::Context).apply(&mut heap, &mut h)?;
/// Op::Alloc(Some(0), New::Value(7)).apply(&mut heap, &mut h)?;
/// assert_eq!(heap.parent(h.issued[1])?, Some(h.issued[0]));
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Handles {
    /// Every handle issued so far, oldest first (stale ones included).
    pub issued: Vec<AnyPtr>,
    /// The objects whose destructors (set by [`Op::SetDestructor`] or
    /// [`Op::SetDestructorFn`]) ran, in call order; a destructor that
    /// refuses is logged each time it runs. Function destructors log into
    /// the `Handles` of the operation being applied on this thread.
    pub destructor_calls: Rc<RefCell<Vec<AnyPtr>>>,
}

impl Handles {
    /// No handles yet, an empty log.
    ///
    /// ```
    /// let h = talloc::strategy::Handles::new();
    /// assert!(h.issued.is_empty());
    /// assert!(h.destructor_calls.borrow().is_empty());
    /// ```
    pub fn new() -> Handles {
        Handles::default()
    }

    /// The handle an operand names: `issued[n % issued.len()]`, or `None`
    /// while nothing was issued.
    ///
    /// ```
    /// use talloc::strategy::Handles;
    /// let mut heap = talloc::Talloc::new();
    /// let mut h = Handles::new();
    /// assert_eq!(h.pick(3), None);
    /// let a = heap.new_context(None)?.erase();
    /// let b = heap.new_context(None)?.erase();
    /// h.issued = vec![a, b];
    /// assert_eq!(h.pick(0), Some(a));
    /// assert_eq!(h.pick(3), Some(b)); // 3 % 2
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn pick(&self, n: usize) -> Option<AnyPtr> {
        (!self.issued.is_empty()).then(|| self.issued[n % self.issued.len()])
    }
}

/// What an [`Op::Alloc`] creates.
///
/// ```
/// use talloc::strategy::{Handles, New, Op};
/// let mut heap = talloc::Talloc::new();
/// let mut h = Handles::new();
/// Op::Alloc(None, New::Str("abc".into())).apply(&mut heap, &mut h)?;
/// Op::Alloc(None, New::Bytes(3, 10)).apply(&mut heap, &mut h)?;
/// let s = heap.downcast::<str>(h.issued[0])?;
/// let b = heap.downcast::<[u8]>(h.issued[1])?;
/// assert_eq!(&heap[s], "abc");
/// assert_eq!(&heap[b], &[10, 11, 12]);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum New {
    /// `Value(v)`: `alloc(parent, v)`, a `u64`.
    Value(u64),
    /// `Local(v)`: `alloc_local(parent, Rc::new(v))`, a value that is not `Send`.
    Local(u64),
    /// `Bytes(len, fill)`: a `[u8]` of `len` bytes, byte `i` being `fill + i`.
    Bytes(usize, u8),
    /// `Words(len)`: a `[u32]` of `len` elements, element `i` being `i`.
    Words(usize),
    /// `Str(s)`: `alloc_str(parent, s)`.
    Str(String),
    /// `new_context(parent)`.
    Context,
    /// `Pool(size)`: `pool(parent, size)`.
    Pool(usize),
    /// `PooledObject(v, n, bytes)`: `pooled_object(parent, v, n, bytes)` of a `u64`.
    PooledObject(u64, usize, usize),
}

/// One heap operation. Its operands (`usize`) are indices into
/// [`Handles::issued`] (see [`Handles::pick`]); a parent operand of `None` is
/// the top level. Each variant's fields follow the arguments of the call it
/// makes. Loops, stale handles and other refusals are part of the game.
///
/// ```
/// use talloc::strategy::{Handles, New, Op};
/// let mut heap = talloc::Talloc::new();
/// let mut h = Handles::new();
/// let steps = [
///     Op::Alloc(None, New::Context),          // issued[0]
///     Op::Alloc(Some(0), New::Value(1)),      // issued[1], under 0
///     Op::Alloc(None, New::Context),          // issued[2]
///     Op::Steal(Some(2), 1),                  // 1 moves under 2
///     Op::Free(0),
/// ];
/// for op in &steps {
///     op.apply(&mut heap, &mut h)?;
/// }
/// assert_eq!(heap.parent(h.issued[1])?, Some(h.issued[2]));
/// assert_eq!(heap.live_objects(), 2);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `Alloc(parent, what)`: allocates under `parent` (the top level while
    /// nothing was issued) and pushes the new handle.
    Alloc(Option<usize>, New),
    /// `Free(p)`: [`Talloc::free`].
    Free(usize),
    /// `FreeChildren(p)`: [`Talloc::free_children`].
    FreeChildren(usize),
    /// `Steal(new_parent, p)`: [`Talloc::steal_any`], loops included.
    Steal(Option<usize>, usize),
    /// `Reparent(old_parent, new_parent, p)`: [`Talloc::reparent`].
    Reparent(Option<usize>, Option<usize>, usize),
    /// `Reference(owner, p)`: [`Talloc::reference`]; pushes the new
    /// reference handle.
    Reference(Option<usize>, usize),
    /// `Unlink(ctx, p)`: [`Talloc::unlink`].
    Unlink(Option<usize>, usize),
    /// `SetDestructor(p, refuse)`: [`Talloc::set_destructor`], a destructor
    /// that logs its call in [`Handles::destructor_calls`], then accepts or
    /// refuses.
    SetDestructor(usize, bool),
    /// `SetDestructorFn(p, refuse)`: the same with
    /// [`Talloc::set_destructor_fn`], a plain function.
    SetDestructorFn(usize, bool),
    /// `ClearDestructor(p)`: [`Talloc::clear_destructor`].
    ClearDestructor(usize),
    /// `SetName(p, name)`: [`Talloc::set_name`]; pushes the new name chunk.
    SetName(usize, String),
    /// `SetNameConst(p)`: [`Talloc::set_name_const`] to `"const name"`.
    SetNameConst(usize),
    /// `Resize(p, len)`: [`Talloc::realloc`] of a `[u8]` or `[u32]` to `len`
    /// elements (new ones are 0), or [`Talloc::str_append`] of `len % 8`
    /// `'+'`s to a string; skipped for other objects.
    Resize(usize, usize),
    /// `SetMemlimit(ctx, max)`: [`Talloc::set_memlimit`].
    SetMemlimit(usize, usize),
    /// `Transfer(p, new_parent)`: [`Talloc::detach`] the subtree of `p`,
    /// [`Talloc::attach`] it under `new_parent` in the same heap and push the
    /// subtree's new handles (pre-order, children newest first). A stale
    /// `new_parent` is refused before anything moves; if the attach fails
    /// (`new_parent` was in the subtree, or is a reference handle), the
    /// parcel goes to the top level.
    Transfer(usize, Option<usize>),
    /// `Take(p)`: [`Talloc::take`] of a sized value (its children move to
    /// its parent); skipped for slices, strings and reference handles.
    Take(usize),
}

/// What [`Op::apply`] did when it did not fail.
///
/// ```
/// use talloc::strategy::{Applied, Handles, New, Op};
/// let mut heap = talloc::Talloc::new();
/// let mut h = Handles::new();
/// // Nothing issued yet: there is nothing to free.
/// assert_eq!(Op::Free(0).apply(&mut heap, &mut h), Ok(Applied::Skipped));
/// let made = Op::Alloc(None, New::Context).apply(&mut heap, &mut h);
/// assert_eq!(made, Ok(Applied::Done));
/// // A context has no bytes to resize.
/// assert_eq!(Op::Resize(0, 4).apply(&mut heap, &mut h), Ok(Applied::Skipped));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The operation ran.
    Done,
    /// The operation did not apply: no handle issued yet, or an object of
    /// the wrong kind (resizing a context, a typed call on a reference
    /// handle or on a type these operations do not allocate).
    Skipped,
}

/// `Some($body)` with `$p` the typed handle of `$any`, for every type these
/// operations allocate; `None` for any other type (reference handles too).
macro_rules! typed {
    ($heap:expr, $any:expr, $p:ident => $body:expr) => {
        typed!(@ $heap, $any, $p => $body; u64, Rc<u64>, [u8], [u32], str, (), Pool)
    };
    (@ $heap:expr, $any:expr, $p:ident => $body:expr; $($t:ty),*) => {{
        let any: AnyPtr = $any;
        let mut ran = None;
        $(if let (None, Ok($p)) = (&ran, $heap.downcast::<$t>(any)) { ran = Some($body); })*
        ran
    }};
}

impl Op {
    /// Runs the operation on `heap`, resolving operands in `handles` and
    /// pushing the handles of the objects it creates. Operations that need a
    /// typed handle check for a stale one first.
    ///
    /// ```
    /// use talloc::strategy::{Applied, Handles, New, Op};
    /// use talloc::Error;
    /// let mut heap = talloc::Talloc::new();
    /// let mut h = Handles::new();
    /// assert_eq!(Op::Free(0).apply(&mut heap, &mut h), Ok(Applied::Skipped));
    /// Op::Alloc(None, New::Context).apply(&mut heap, &mut h)?;
    /// Op::Alloc(Some(0), New::Str("x".into())).apply(&mut heap, &mut h)?;
    /// // Stealing a context under its own child would make a loop.
    /// let op = Op::Steal(Some(1), 0);
    /// assert_eq!(op.apply(&mut heap, &mut h), Err(Error::Loop));
    /// Op::Free(0).apply(&mut heap, &mut h)?;
    /// let again = Op::Free(1).apply(&mut heap, &mut h);
    /// assert_eq!(again, Err(Error::Stale));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn apply(&self, heap: &mut Talloc, handles: &mut Handles) -> Result<Applied, Error> {
        let opt = |n: &Option<usize>| n.and_then(|n| handles.pick(n));
        let object = match self {
            Op::Alloc(parent, what) => {
                let p = alloc(heap, opt(parent), what)?;
                handles.issued.push(p);
                return Ok(Applied::Done);
            }
            Op::Free(x) | Op::FreeChildren(x) | Op::ClearDestructor(x) | Op::SetNameConst(x) => x,
            Op::Steal(_, x) | Op::Reparent(_, _, x) | Op::Reference(_, x) | Op::Unlink(_, x) => x,
            Op::SetDestructor(x, _) | Op::SetDestructorFn(x, _) => x,
            Op::SetName(x, _) | Op::Resize(x, _) => x,
            Op::SetMemlimit(x, _) | Op::Transfer(x, _) | Op::Take(x) => x,
        };
        FN_LOG.with(|log| *log.borrow_mut() = Some(handles.destructor_calls.clone()));
        let Some(p) = handles.pick(*object) else {
            return Ok(Applied::Skipped);
        };
        match self {
            Op::Free(_) => return done(heap.free(p)),
            Op::FreeChildren(_) => return done(heap.free_children(p)),
            Op::Steal(to, _) => return done(heap.steal_any(opt(to), p)),
            Op::Unlink(ctx, _) => return done(heap.unlink(opt(ctx), p)),
            Op::ClearDestructor(_) => return done(heap.clear_destructor(p)),
            Op::SetNameConst(_) => return done(heap.set_name_const(p, "const name")),
            Op::SetMemlimit(_, max) => return done(heap.set_memlimit(p, *max)),
            Op::SetName(_, name) => {
                heap.set_name(p, name)?;
                let chunk = fresh(heap, Some(p), NAME_CHUNK_NAME, &handles.issued);
                handles.issued.push(chunk);
                return Ok(Applied::Done);
            }
            _ => heap.type_name(p).map(|_| ())?,
        }
        let ran = match self {
            Op::Reparent(old, to, _) => {
                let (old, to) = (opt(old), opt(to));
                typed!(heap, p, p => heap.reparent(old, to, p).map(|_| ()))
            }
            Op::Reference(owner, _) => {
                let owner = opt(owner);
                let r = typed!(heap, p, p => heap.reference(owner, p).map(|_| ()));
                if let Some(Ok(())) = r {
                    let h = fresh(heap, owner, REFERENCE_NAME, &handles.issued);
                    handles.issued.push(h);
                }
                r
            }
            Op::SetDestructor(_, refuse) => {
                let verdict = if *refuse { Err(Refused) } else { Ok(()) };
                typed!(heap, p, p => {
                    let log = handles.destructor_calls.clone();
                    heap.set_destructor(p, move |_, me| {
                        log.borrow_mut().push(me.erase());
                        verdict
                    })
                })
            }
            Op::SetDestructorFn(_, refuse) => {
                typed!(heap, p, p => set_logging_fn(heap, p, *refuse))
            }
            Op::Resize(_, len) => match heap.downcast::<str>(p) {
                Ok(s) => Some(heap.str_append(s, &"+".repeat(len % 8))),
                Err(_) => typed!(@ heap, p, a => heap.realloc(a, *len); [u8], [u32]),
            },
            Op::Transfer(_, to) => {
                let to = opt(to);
                if let Some(to) = to {
                    heap.type_name(to)?;
                }
                if let Some(e) = heap.check_transfer(p)? {
                    return Err(Error::Transfer(e));
                }
                let Some(root) = typed!(heap, p, p => transfer(heap, p, to)) else {
                    return Ok(Applied::Skipped);
                };
                push_subtree(heap, root?, &mut handles.issued);
                Some(Ok(()))
            }
            Op::Take(_) => typed!(@ heap, p, p => heap.take(p).map(drop); u64, Rc<u64>, (), Pool),
            _ => unreachable!("handled above"),
        };
        ran.map_or(Ok(Applied::Skipped), done)
    }
}

thread_local! {
    /// The destructor log of the operation being applied on this thread,
    /// for function destructors, which capture nothing.
    static FN_LOG: RefCell<Option<Rc<RefCell<Vec<AnyPtr>>>>> = const { RefCell::new(None) };
}

/// A function destructor that logs its call, then accepts or refuses.
fn logging_fn<T: ?Sized, const REFUSE: bool>(_: &mut Talloc, me: Ptr<T>) -> DestructorResult {
    FN_LOG.with(|log| {
        if let Some(log) = &*log.borrow() {
            log.borrow_mut().push(me.erase());
        }
    });
    if REFUSE {
        Err(Refused)
    } else {
        Ok(())
    }
}

fn set_logging_fn<T: ?Sized + 'static>(
    heap: &mut Talloc,
    p: Ptr<T>,
    refuse: bool,
) -> Result<(), Error> {
    // Named by their items, so that the heap shares them.
    if refuse {
        heap.set_destructor_fn(p, logging_fn::<T, true>)
    } else {
        heap.set_destructor_fn(p, logging_fn::<T, false>)
    }
}

/// `Done`, or the heap's error.
fn done(r: Result<(), Error>) -> Result<Applied, Error> {
    r.map(|()| Applied::Done)
}

fn alloc(heap: &mut Talloc, parent: Option<AnyPtr>, what: &New) -> Result<AnyPtr, Error> {
    Ok(match what {
        New::Value(v) => heap.alloc(parent, *v)?.erase(),
        New::Local(v) => heap.alloc_local(parent, Rc::new(*v))?.erase(),
        New::Bytes(len, fill) => {
            let f = |i: usize| fill.wrapping_add(i as u8);
            heap.alloc_array_with(parent, *len, f)?.erase()
        }
        New::Words(len) => heap.alloc_array_with(parent, *len, |i| i as u32)?.erase(),
        New::Str(s) => heap.alloc_str(parent, s)?.erase(),
        New::Context => heap.new_context(parent)?.erase(),
        New::Pool(size) => heap.pool(parent, *size)?.erase(),
        New::PooledObject(v, n, bytes) => heap.pooled_object(parent, *v, *n, *bytes)?.erase(),
    })
}

/// The object named `name` under `parent` (or at the top level) that is not
/// in `issued` yet: what an operation just made.
fn fresh(heap: &Talloc, parent: Option<AnyPtr>, name: &str, issued: &[AnyPtr]) -> AnyPtr {
    let known: std::collections::HashSet<AnyPtr> = issued.iter().copied().collect();
    let new = |p: &AnyPtr| !known.contains(p) && heap.name(*p) == Ok(name);
    match parent {
        Some(p) => heap.children(p).expect("a live parent").find(new),
        None => heap.top_level().find(new),
    }
    .expect("the new object")
}

/// Detaches the subtree of `p` and attaches it under `to`, or at the top
/// level if that fails; the new root.
fn transfer<T: ?Sized>(heap: &mut Talloc, p: Ptr<T>, to: Option<AnyPtr>) -> Result<AnyPtr, Error> {
    let parcel: Parcel<T> = heap.detach(p)?;
    let root = match heap.attach(to, parcel) {
        Ok(root) => root,
        Err(back) => heap.attach(None, back.parcel)?,
    };
    Ok(root.erase())
}

/// Pushes the subtree of `root` in pre-order, children newest first.
fn push_subtree(heap: &Talloc, root: AnyPtr, out: &mut Vec<AnyPtr>) {
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        out.push(p);
        let kids: Vec<AnyPtr> = heap.children(p).map(|c| c.collect()).unwrap_or_default();
        stack.extend(kids.into_iter().rev());
    }
}

/// An operand: an index into the handles issued so far.
fn operand() -> impl Strategy<Value = usize> {
    0..1024usize
}

/// A parent operand: mostly a handle, sometimes the top level.
fn parent() -> impl Strategy<Value = Option<usize>> {
    prop::option::weighted(0.8, operand())
}

/// What to allocate: every kind of [`New`] object.
///
/// ```
/// use proptest::prelude::*;
/// use talloc::strategy::{new_object, Handles, Op};
/// proptest!(ProptestConfig::with_cases(16), |(what in new_object())| {
///     let mut heap = talloc::Talloc::new();
///     let mut h = Handles::new();
///     Op::Alloc(None, what).apply(&mut heap, &mut h).unwrap();
///     prop_assert_eq!(h.issued.len(), 1);
///     prop_assert!(heap.contains(h.issued[0]));
/// });
/// ```
pub fn new_object() -> impl Strategy<Value = New> {
    prop_oneof![
        3 => any::<u64>().prop_map(New::Value),
        1 => any::<u64>().prop_map(New::Local),
        3 => (0..48usize, any::<u8>()).prop_map(|(len, fill)| New::Bytes(len, fill)),
        1 => (0..12usize).prop_map(New::Words),
        3 => "[a-z]{0,12}".prop_map(New::Str),
        3 => Just(New::Context),
        2 => (0..=256usize).prop_map(New::Pool),
        1 => (any::<u64>(), 0..4usize, 0..128usize).prop_map(|(v, n, b)| New::PooledObject(v, n, b)),
    ]
}

/// One random operation, every kind of [`Op`], allocations most often.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::deterministic();
/// let op = talloc::strategy::op().new_tree(&mut runner).unwrap().current();
/// let mut heap = talloc::Talloc::new();
/// let _ = op.apply(&mut heap, &mut talloc::strategy::Handles::new());
/// assert_eq!(heap.verify(), Ok(()));
/// ```
pub fn op() -> impl Strategy<Value = Op> {
    let (p, o) = (parent, operand);
    prop_oneof![
        12 => (p(), new_object()).prop_map(|(p, what)| Op::Alloc(p, what)),
        4 => o().prop_map(Op::Free),
        2 => o().prop_map(Op::FreeChildren),
        4 => (p(), o()).prop_map(|(to, x)| Op::Steal(to, x)),
        1 => (p(), p(), o()).prop_map(|(old, to, x)| Op::Reparent(old, to, x)),
        3 => (p(), o()).prop_map(|(owner, x)| Op::Reference(owner, x)),
        3 => (p(), o()).prop_map(|(ctx, x)| Op::Unlink(ctx, x)),
        3 => (o(), any::<bool>()).prop_map(|(x, refuse)| Op::SetDestructor(x, refuse)),
        2 => (o(), any::<bool>()).prop_map(|(x, refuse)| Op::SetDestructorFn(x, refuse)),
        1 => o().prop_map(Op::ClearDestructor),
        2 => (o(), "[a-z]{0,8}").prop_map(|(x, name)| Op::SetName(x, name)),
        1 => o().prop_map(Op::SetNameConst),
        2 => (o(), 0..48usize).prop_map(|(x, len)| Op::Resize(x, len)),
        1 => (o(), prop_oneof![Just(0usize), 0..400usize]).prop_map(|(x, max)| Op::SetMemlimit(x, max)),
        2 => (o(), p()).prop_map(|(x, to)| Op::Transfer(x, to)),
        2 => o().prop_map(Op::Take),
    ]
}

/// Sequences of random operations, of a length in `len`.
///
/// ```
/// use proptest::prelude::*;
/// use talloc::strategy::{ops, Handles};
/// proptest!(ProptestConfig::with_cases(8), |(steps in ops(1..20))| {
///     let mut heap = talloc::Talloc::new();
///     let mut handles = Handles::new();
///     for op in &steps {
///         let _ = op.apply(&mut heap, &mut handles);
///     }
///     prop_assert_eq!(heap.verify(), Ok(()));
/// });
/// ```
pub fn ops(len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<Op>> {
    vec(op(), len)
}

/// The shape of a random tree (a forest, at times): node `i` is a byte
/// buffer of `sizes[i]` bytes whose parent is `parents[i]`, an earlier node,
/// or `None` for a top-level node (node 0 always is).
///
/// ```
/// use talloc::strategy::TreeShape;
/// // Two trees: 0 with its child 1, and 2 on its own.
/// let shape = TreeShape { parents: vec![None, Some(0), None], sizes: vec![8, 4, 2] };
/// let mut heap = talloc::Talloc::new();
/// let nodes = shape.build(&mut heap);
/// assert_eq!(heap.top_level().count(), 2);
/// assert_eq!(heap.total_size(nodes[0])?, 12);
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeShape {
    /// The parent of each node: an earlier node, or `None`.
    pub parents: Vec<Option<usize>>,
    /// The size in bytes of each node.
    pub sizes: Vec<usize>,
}

impl TreeShape {
    /// The operations that build the tree on an empty [`Handles`]: node `i`
    /// becomes `issued[i]`.
    ///
    /// ```
    /// use talloc::strategy::{Handles, New, Op, TreeShape};
    /// let shape = TreeShape { parents: vec![None, Some(0)], sizes: vec![3, 5] };
    /// let ops = shape.ops();
    /// assert_eq!(ops, [Op::Alloc(None, New::Bytes(3, 0)), Op::Alloc(Some(0), New::Bytes(5, 1))]);
    /// let mut heap = talloc::Talloc::new();
    /// let mut h = Handles::new();
    /// for op in &ops {
    ///     op.apply(&mut heap, &mut h)?;
    /// }
    /// assert_eq!(heap.parent(h.issued[1])?, Some(h.issued[0]));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn ops(&self) -> Vec<Op> {
        let nodes = self.parents.iter().zip(&self.sizes).enumerate();
        nodes
            .map(|(i, (p, len))| Op::Alloc(*p, New::Bytes(*len, i as u8)))
            .collect()
    }

    /// Builds the tree in `heap` and returns the handles of its nodes, in
    /// node order (node 0 first).
    ///
    /// ```
    /// use talloc::strategy::TreeShape;
    /// let shape = TreeShape { parents: vec![None, Some(0), Some(0), Some(1)], sizes: vec![1, 2, 3, 4] };
    /// let mut heap = talloc::Talloc::new();
    /// let nodes = shape.build(&mut heap);
    /// assert_eq!(heap.total_blocks(nodes[0])?, 4);
    /// assert_eq!(heap.total_size(nodes[0])?, 10);
    /// assert_eq!(heap.parent(nodes[3])?, Some(nodes[1]));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn build(&self, heap: &mut Talloc) -> Vec<AnyPtr> {
        let mut handles = Handles::new();
        for op in self.ops() {
            op.apply(heap, &mut handles)
                .expect("building a tree never fails");
        }
        handles.issued
    }
}

/// Random tree shapes of 1 to `max_nodes` nodes (at least 1), mostly one
/// tree, sometimes a forest.
///
/// ```
/// use proptest::prelude::*;
/// use talloc::strategy::tree;
/// proptest!(ProptestConfig::with_cases(16), |(shape in tree(10))| {
///     let mut heap = talloc::Talloc::new();
///     let nodes = shape.build(&mut heap);
///     let roots = shape.parents.iter().filter(|p| p.is_none()).count();
///     prop_assert_eq!(heap.top_level().count(), roots);
///     prop_assert_eq!(heap.live_objects(), nodes.len());
///     heap.free(nodes[0]).unwrap();
///     prop_assert_eq!(heap.verify(), Ok(()));
/// });
/// ```
pub fn tree(max_nodes: usize) -> impl Strategy<Value = TreeShape> {
    (1..=max_nodes.max(1)).prop_flat_map(|n| {
        let parents = vec(prop::option::weighted(0.9, any::<prop::sample::Index>()), n);
        (parents, vec(0..64usize, n)).prop_map(|(parents, sizes)| TreeShape {
            parents: parents
                .iter()
                .enumerate()
                .map(|(i, p)| p.filter(|_| i > 0).map(|ix| ix.index(i)))
                .collect(),
            sizes,
        })
    })
}
