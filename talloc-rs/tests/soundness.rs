//! Regression tests for soundness holes found from safe code, and the
//! checks that Miri runs over the parcel paths: values of every alignment
//! and size, detached, attached across heaps and dropped in every position.
//! Each `Drop` checks its own address alignment and counts itself, so a
//! misaligned or doubled drop fails the test even without Miri.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use talloc::{AnyPtr, Error, Object, Parcel, Talloc};

static PROBE_DROPS: AtomicUsize = AtomicUsize::new(0);

/// The shape of the original report: a `u64` and a reference, 24 bytes,
/// inline in its node, with a `Drop` that looks at its own address.
struct Probe {
    a: u64,
    s: &'static str,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let addr = self as *const Probe as usize;
        assert_eq!(addr % std::mem::align_of::<Probe>(), 0, "misaligned drop");
        assert_eq!((self.a, self.s), (7, "probe"));
        PROBE_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropping_a_detached_inline_value_is_aligned() {
    let before = PROBE_DROPS.load(Ordering::SeqCst);
    let mut heap = Talloc::new();
    let p = heap.alloc(None, Probe { a: 7, s: "probe" }).unwrap();
    let parcel = heap.detach(p).unwrap();
    // Move the parcel around: each move may put its bytes elsewhere.
    let moved = vec![parcel];
    drop(moved);
    assert_eq!(PROBE_DROPS.load(Ordering::SeqCst), before + 1);
}

#[test]
fn attaching_a_detached_inline_value_keeps_it_aligned() {
    let before = PROBE_DROPS.load(Ordering::SeqCst);
    let mut a = Talloc::new();
    let mut b = Talloc::new();
    let p = a.alloc(None, Probe { a: 7, s: "probe" }).unwrap();
    let parcel = a.detach(p).unwrap();
    let q = b.attach(None, parcel).map_err(|e| e.error).unwrap();
    assert_eq!(b[q].a, 7);
    b.free(q).unwrap();
    assert_eq!(PROBE_DROPS.load(Ordering::SeqCst), before + 1);
}

#[test]
fn a_handle_is_refused_by_every_other_heap() {
    let a = Talloc::new();
    let mut a = a;
    let p = a.alloc(None, 1u64).unwrap();
    for _ in 0..1000 {
        let b = Talloc::new();
        assert_eq!(b.get(p), Err(Error::ForeignHeap));
    }
    assert_eq!(a.get(p), Ok(&1));
}

/// Creates more heaps than a 32-bit id space holds, keeping the first one
/// alive, and checks that none of them accepts its handle. About ten
/// minutes in release; run with `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn heap_ids_never_repeat_past_two_to_the_32() {
    let mut first = Talloc::new();
    let p = first.alloc(None, 0xfeed_u64).unwrap();
    for i in 0..(u32::MAX as u64 + 16) {
        let other = Talloc::new();
        if i % (1 << 28) == 0 || i > u32::MAX as u64 {
            assert_eq!(other.get(p), Err(Error::ForeignHeap), "heap {i}");
        }
    }
    assert_eq!(first.get(p), Ok(&0xfeed));
}

// ----- values of every alignment, counted and checked as they drop -----

thread_local! {
    /// How often each value id was dropped (this thread's test only).
    static DROPS: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
    static NEXT_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn fresh_id() -> u32 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

fn dropped(id: u32, addr: usize, align: usize) {
    assert_eq!(
        addr % align,
        0,
        "value {id} dropped at a misaligned address"
    );
    DROPS.with(|d| {
        let mut d = d.borrow_mut();
        let n = d.entry(id).or_insert(0);
        *n += 1;
        assert_eq!(*n, 1, "value {id} dropped twice");
    });
}

/// Zero-sized types that give [`Elem`] their alignment.
macro_rules! aligns {
    ($($name:ident = $n:literal),*) => {$(
        #[derive(Debug)]
        #[repr(align($n))]
        struct $name;
    )*};
}
aligns!(A1 = 1, A2 = 2, A4 = 4, A8 = 8, A16 = 16, A64 = 64);

/// A value aligned as `A`, whose `Drop` checks its address and counts
/// itself. Its size is its id (4 bytes) rounded up to the alignment.
#[derive(Debug)]
struct Elem<A> {
    id: [u8; 4],
    _align: [A; 0],
}

impl<A> Elem<A> {
    fn new() -> Elem<A> {
        Elem {
            id: fresh_id().to_le_bytes(),
            _align: [],
        }
    }
}

impl<A> Drop for Elem<A> {
    fn drop(&mut self) {
        dropped(
            u32::from_le_bytes(self.id),
            self as *const Self as usize,
            std::mem::align_of::<Self>(),
        );
    }
}

/// A zero-sized value with alignment `A`: counted by its id, kept outside.
#[derive(Debug)]
struct Zst<A> {
    _align: [A; 0],
}

thread_local! {
    static ZSTS: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

impl<A> Zst<A> {
    fn new() -> Zst<A> {
        ZSTS.with(|z| z.set((z.get().0 + 1, z.get().1)));
        Zst { _align: [] }
    }
}

impl<A> Drop for Zst<A> {
    fn drop(&mut self) {
        let addr = self as *const Self as usize;
        assert_eq!(
            addr % std::mem::align_of::<Self>(),
            0,
            "misaligned ZST drop"
        );
        ZSTS.with(|z| z.set((z.get().0, z.get().1 + 1)));
    }
}

trait Shape: Send {
    fn id(&self) -> u32;
}
impl Shape for Elem<A16> {
    fn id(&self) -> u32 {
        u32::from_le_bytes(self.id)
    }
}

/// A string that counts its drop and checks its text is intact.
struct Named(String, #[allow(dead_code)] Elem<A1>);

impl Drop for Named {
    fn drop(&mut self) {
        assert!(self.0.bytes().all(|b| b == b'x'), "text changed in transit");
    }
}

/// A trait object that checks, as it drops, that its vtable still works.
struct DynBox(Box<dyn Shape>, u32);

impl Drop for DynBox {
    fn drop(&mut self) {
        assert_eq!(self.0.id(), self.1, "trait object changed in transit");
    }
}

/// What an allocation makes.
#[derive(Debug, Clone, Copy)]
enum Make {
    One(u8),
    Slice(u8, u8),
    Zst1,
    Zst64,
    Text,
    VecOf8(u8),
    BoxDyn,
}

fn make_strategy() -> impl Strategy<Value = Make> {
    prop_oneof![
        (0u8..6).prop_map(Make::One),
        (0u8..6, 0u8..64).prop_map(|(a, n)| Make::Slice(a, n)),
        Just(Make::Zst1),
        Just(Make::Zst64),
        Just(Make::Text),
        (0u8..40).prop_map(Make::VecOf8),
        Just(Make::BoxDyn),
    ]
}

fn alloc(heap: &mut Talloc, parent: Option<AnyPtr>, make: Make) -> Result<AnyPtr, Error> {
    fn slice<A: Send + 'static>(
        heap: &mut Talloc,
        parent: Option<AnyPtr>,
        n: u8,
    ) -> Result<AnyPtr, Error> {
        Ok(heap
            .alloc_array_with(parent, n as usize, |_| Elem::<A>::new())?
            .erase())
    }
    Ok(match make {
        Make::One(0) => heap.alloc(parent, Elem::<A1>::new())?.erase(),
        Make::One(1) => heap.alloc(parent, Elem::<A2>::new())?.erase(),
        Make::One(2) => heap.alloc(parent, Elem::<A4>::new())?.erase(),
        Make::One(3) => heap.alloc(parent, Elem::<A8>::new())?.erase(),
        Make::One(4) => heap.alloc(parent, Elem::<A16>::new())?.erase(),
        Make::One(_) => heap.alloc(parent, Elem::<A64>::new())?.erase(),
        Make::Slice(0, n) => slice::<A1>(heap, parent, n)?,
        Make::Slice(1, n) => slice::<A2>(heap, parent, n)?,
        Make::Slice(2, n) => slice::<A4>(heap, parent, n)?,
        Make::Slice(3, n) => slice::<A8>(heap, parent, n)?,
        Make::Slice(4, n) => slice::<A16>(heap, parent, n)?,
        Make::Slice(_, n) => slice::<A64>(heap, parent, n)?,
        Make::Zst1 => heap.alloc(parent, Zst::<A1>::new())?.erase(),
        Make::Zst64 => heap.alloc(parent, Zst::<A64>::new())?.erase(),
        Make::Text => {
            let text = "x".repeat(NEXT_ID.with(|n| n.get()) as usize % 50);
            heap.alloc(parent, Named(text, Elem::new()))?.erase()
        }
        Make::VecOf8(n) => {
            let v: Vec<Elem<A8>> = (0..n).map(|_| Elem::new()).collect();
            heap.alloc(parent, v)?.erase()
        }
        Make::BoxDyn => {
            let e = Elem::<A16>::new();
            let id = e.id();
            heap.alloc(parent, DynBox(Box::new(e), id))?.erase()
        }
    })
}

/// A detached subtree of any root type, on its way somewhere.
trait Moving: Send {
    fn attach(
        self: Box<Self>,
        heap: &mut Talloc,
        parent: Option<AnyPtr>,
    ) -> Result<AnyPtr, Box<dyn Moving>>;
}

impl<T: Object + ?Sized> Moving for Parcel<T> {
    fn attach(
        self: Box<Self>,
        heap: &mut Talloc,
        parent: Option<AnyPtr>,
    ) -> Result<AnyPtr, Box<dyn Moving>> {
        match heap.attach(parent, *self) {
            Ok(p) => Ok(p.erase()),
            Err(e) => Err(Box::new(e.parcel)),
        }
    }
}

/// Detaches whatever `p` is (trying each type the test makes).
fn detach(heap: &mut Talloc, p: AnyPtr) -> Option<Box<dyn Moving>> {
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Ok(typed) = heap.downcast::<$t>(p) {
                return heap.detach(typed).ok().map(|x| Box::new(x) as Box<dyn Moving>);
            }
        )*};
    }
    try_types!(
        Elem<A1>,
        Elem<A2>,
        Elem<A4>,
        Elem<A8>,
        Elem<A16>,
        Elem<A64>,
        [Elem<A1>],
        [Elem<A2>],
        [Elem<A4>],
        [Elem<A8>],
        [Elem<A16>],
        [Elem<A64>],
        Zst<A1>,
        Zst<A64>,
        Named,
        Vec<Elem<A8>>,
        DynBox,
        (),
        talloc::Pool
    );
    None
}

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        heap: usize,
        parent: Option<usize>,
        make: Make,
    },
    Context {
        heap: usize,
        parent: Option<usize>,
    },
    Pool {
        heap: usize,
        size: usize,
    },
    /// Detach and attach at once, under a random parent of another heap.
    Move {
        what: usize,
        heap: usize,
        parent: Option<usize>,
    },
    /// Detach and keep the parcel for later.
    Park {
        what: usize,
    },
    /// Attach a parked parcel.
    Unpark {
        which: usize,
        heap: usize,
    },
    /// Drop a parked parcel.
    DropParcel {
        which: usize,
    },
    Free {
        what: usize,
    },
    DropHeap {
        heap: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = any::<usize>;
    let heap = 0usize..3;
    prop_oneof![
        6 => (heap.clone(), prop::option::of(idx()), make_strategy())
            .prop_map(|(heap, parent, make)| Op::Alloc { heap, parent, make }),
        1 => (heap.clone(), prop::option::of(idx()))
            .prop_map(|(heap, parent)| Op::Context { heap, parent }),
        1 => (heap.clone(), 0usize..8192).prop_map(|(heap, size)| Op::Pool { heap, size }),
        3 => (idx(), heap.clone(), prop::option::of(idx()))
            .prop_map(|(what, heap, parent)| Op::Move { what, heap, parent }),
        2 => idx().prop_map(|what| Op::Park { what }),
        2 => (idx(), heap.clone()).prop_map(|(which, heap)| Op::Unpark { which, heap }),
        1 => idx().prop_map(|which| Op::DropParcel { which }),
        2 => idx().prop_map(|what| Op::Free { what }),
        1 => heap.prop_map(|heap| Op::DropHeap { heap }),
    ]
}

/// Runs the ops; returns nothing, but every drop checked its alignment
/// and that it ran once. At the end every value made was dropped once.
fn run(ops: Vec<Op>) {
    DROPS.with(|d| d.borrow_mut().clear());
    NEXT_ID.with(|n| n.set(0));
    ZSTS.with(|z| z.set((0, 0)));
    {
        let mut heaps = [Talloc::new(), Talloc::new(), Talloc::new()];
        // Every handle ever made, with its heap; many go stale.
        let mut handles: Vec<(usize, AnyPtr)> = Vec::new();
        let mut parked: Vec<Box<dyn Moving>> = Vec::new();
        let pick = |handles: &[(usize, AnyPtr)], heap: usize, i: &Option<usize>| {
            let i = i.as_ref()?;
            let mine: Vec<AnyPtr> = handles
                .iter()
                .filter(|h| h.0 == heap)
                .map(|h| h.1)
                .collect();
            (!mine.is_empty()).then(|| mine[*i % mine.len()])
        };
        for op in ops {
            match op {
                Op::Alloc { heap, parent, make } => {
                    let parent = pick(&handles, heap, &parent).filter(|&p| heaps[heap].contains(p));
                    if let Ok(p) = alloc(&mut heaps[heap], parent, make) {
                        handles.push((heap, p));
                    }
                }
                Op::Context { heap, parent } => {
                    let parent = pick(&handles, heap, &parent).filter(|&p| heaps[heap].contains(p));
                    if let Ok(p) = heaps[heap].new_context(parent) {
                        handles.push((heap, p.erase()));
                    }
                }
                Op::Pool { heap, size } => {
                    let p = heaps[heap].pool(None, size).unwrap();
                    handles.push((heap, p.erase()));
                }
                Op::Move { what, heap, parent } if !handles.is_empty() => {
                    let (from, p) = handles[what % handles.len()];
                    let parent = pick(&handles, heap, &parent).filter(|&p| heaps[heap].contains(p));
                    if let Some(parcel) = detach(&mut heaps[from], p) {
                        match parcel.attach(&mut heaps[heap], parent) {
                            Ok(p) => handles.push((heap, p)),
                            Err(back) => parked.push(back),
                        }
                    }
                }
                Op::Park { what } if !handles.is_empty() => {
                    let (from, p) = handles[what % handles.len()];
                    parked.extend(detach(&mut heaps[from], p));
                }
                Op::Unpark { which, heap } if !parked.is_empty() => {
                    let i = which % parked.len();
                    let parcel = parked.swap_remove(i);
                    match parcel.attach(&mut heaps[heap], None) {
                        Ok(p) => handles.push((heap, p)),
                        Err(back) => parked.push(back),
                    }
                }
                Op::DropParcel { which } if !parked.is_empty() => {
                    let i = which % parked.len();
                    drop(parked.remove(i));
                }
                Op::Free { what } if !handles.is_empty() => {
                    let (from, p) = handles[what % handles.len()];
                    let _ = heaps[from].free(p);
                }
                Op::DropHeap { heap } => {
                    heaps[heap] = Talloc::new();
                    handles.retain(|h| h.0 != heap);
                }
                _ => {}
            }
            for h in &heaps {
                assert_eq!(h.verify(), Ok(()));
            }
        }
        // Parcels and heaps go in both orders across cases.
        if parked.len() % 2 == 0 {
            drop(parked);
            drop(heaps);
        } else {
            drop(heaps);
            drop(parked);
        }
    }
    let made = NEXT_ID.with(|n| n.get());
    DROPS.with(|d| {
        let d = d.borrow();
        let missing: Vec<u32> = (0..made).filter(|id| !d.contains_key(id)).collect();
        assert!(missing.is_empty(), "never dropped: {missing:?}");
    });
    let (zst_made, zst_dropped) = ZSTS.with(|z| z.get());
    assert_eq!(zst_made, zst_dropped, "every zero-sized value dropped once");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Values of alignments 1 to 64 and sizes 0 to 4 KiB, inline, out of
    /// line and pooled, moved between heaps and dropped in every position:
    /// each drop is aligned and happens exactly once.
    #[test]
    fn detached_values_drop_once_and_aligned(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(ops);
    }
}

#[test]
fn parcels_of_every_shape_survive_a_round_trip() {
    // One of each, deterministic: the quick Miri path over the same code.
    let makes = [
        Make::One(0),
        Make::One(3),
        Make::One(4),
        Make::One(5),
        Make::Slice(0, 0),
        Make::Slice(3, 3),
        Make::Slice(5, 7),
        Make::Zst1,
        Make::Zst64,
        Make::Text,
        Make::VecOf8(3),
        Make::BoxDyn,
    ];
    let mut ops = Vec::new();
    for (i, make) in makes.into_iter().enumerate() {
        ops.push(Op::Alloc {
            heap: 0,
            parent: None,
            make,
        });
        // Park the value just made: handles[i] is the i-th allocation.
        ops.push(Op::Park { what: i });
    }
    run(ops);
}
