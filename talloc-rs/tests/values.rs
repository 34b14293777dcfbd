//! Values in and out of the heap: `take`, `replace`, `get_disjoint_mut`,
//! and a failed `alloc` giving its value back. Miri runs these too: `take`
//! and `get_disjoint_mut` read values through the storage layer's unsafe
//! code, inline, out of line and in pools.

use std::cell::Cell;
use std::rc::Rc;

use talloc::{Error, Refused, Talloc};

/// Counts its drops, so that a test sees a value dropped once or never.
#[derive(Debug)]
struct Counted(Rc<Cell<u32>>, u64);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn take_moves_the_value_out_without_dropping_it() {
    let drops = Rc::new(Cell::new(0));
    let mut heap = Talloc::new();
    let small = heap.alloc_local(None, Counted(drops.clone(), 1)).unwrap();
    let big = heap.alloc_local(None, [7u64; 32]).unwrap();
    let boxed = heap.alloc(None, String::from("out of line text")).unwrap();
    let v = heap.take(small).unwrap();
    assert_eq!((v.1, drops.get()), (1, 0));
    drop(v);
    assert_eq!(drops.get(), 1);
    assert_eq!(heap.take(big).unwrap(), [7u64; 32]);
    assert_eq!(heap.take(boxed).unwrap(), "out of line text");
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(heap.take(small).unwrap_err(), Error::Stale);
    heap.verify().unwrap();
}

#[test]
fn take_hands_the_children_to_the_parent_in_their_order() {
    let mut heap = Talloc::new();
    let top = heap.new_context(None).unwrap();
    let older = heap.alloc_str(top, "older sibling").unwrap();
    let x = heap.alloc(top, 5u32).unwrap();
    heap.set_name(x, "x's own name").unwrap();
    let a = heap.alloc_str(x, "a").unwrap();
    let b = heap.alloc_str(x, "b").unwrap();
    let grandchild = heap.alloc_str(b, "b's child").unwrap();
    assert_eq!(heap.take(x).unwrap(), 5);
    // b and a (newest first) now come before top's older child; x's name
    // chunk went with it.
    let kids: Vec<_> = heap.children(top).unwrap().collect();
    assert_eq!(kids, [b.erase(), a.erase(), older.erase()]);
    assert_eq!(heap.parent(grandchild).unwrap(), Some(b.erase()));
    assert_eq!(heap.live_objects(), 5);
    heap.verify().unwrap();

    // A top-level object's children become top-level.
    let root = heap.alloc(None, 1u8).unwrap();
    let kid = heap.alloc(root, 2u8).unwrap();
    heap.take(root).unwrap();
    assert_eq!(heap.parent(kid).unwrap(), None);
    heap.verify().unwrap();
}

#[test]
fn take_runs_the_destructor_which_may_refuse() {
    let mut heap = Talloc::new();
    let calls = Rc::new(Cell::new(0));
    let p = heap.alloc(None, 9u64).unwrap();
    let kid = heap.alloc(p, 1u8).unwrap();
    let c = calls.clone();
    heap.set_destructor(p, move |_, _| {
        c.set(c.get() + 1);
        Err(Refused)
    })
    .unwrap();
    assert_eq!(heap.take(p).unwrap_err(), Error::Refused);
    assert_eq!((calls.get(), heap[p]), (1, 9));
    assert_eq!(heap.parent(kid).unwrap(), Some(p.erase()));
    let c = calls.clone();
    heap.set_destructor(p, move |heap, me| {
        c.set(c.get() + 1);
        heap[me] += 1; // the destructor sees the value before it moves out
        Ok(())
    })
    .unwrap();
    assert_eq!(heap.take(p).unwrap(), 10);
    assert_eq!(calls.get(), 2);
    heap.verify().unwrap();
}

#[test]
fn take_refuses_a_referenced_object_and_changes_nothing() {
    let mut heap = Talloc::new();
    let owner = heap.new_context(None).unwrap();
    let p = heap.alloc(None, 3u16).unwrap();
    let inner = heap.new_context(p).unwrap();
    heap.reference(owner, p).unwrap();
    heap.reference(inner, p).unwrap();
    let before = heap.live_objects();
    assert_eq!(heap.take(p).unwrap_err(), Error::HasReferences { count: 2 });
    assert_eq!((heap.live_objects(), heap[p]), (before, 3));
    heap.unlink(owner, p).unwrap();
    heap.unlink(inner, p).unwrap();
    assert_eq!(heap.take(p).unwrap(), 3);
    heap.verify().unwrap();
}

#[test]
fn take_out_of_a_pool_and_of_a_pooled_object() {
    let drops = Rc::new(Cell::new(0));
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 4096).unwrap();
    let carved = heap.alloc_local(pool, [Counted(drops.clone(), 4), Counted(drops.clone(), 5)]);
    let carved = carved.unwrap();
    assert!(heap.is_pooled(carved).unwrap());
    let [a, b] = heap.take(carved).unwrap();
    assert_eq!((a.1, b.1, drops.get()), (4, 5, 0));
    drop((a, b));
    assert_eq!(drops.get(), 2);
    assert_eq!(heap.pool_usage(pool).unwrap().objects, 1); // the pool itself

    // A pooled object's sub-objects outlive it, in its region.
    let req = heap.pooled_object(None, 77u64, 2, 64).unwrap();
    let part = heap.alloc_str(req, "carved from req").unwrap();
    assert_eq!(heap.take(req).unwrap(), 77);
    assert_eq!(&heap[part], "carved from req");
    assert_eq!(heap.parent(part).unwrap(), None);
    heap.free(part).unwrap();
    heap.free(pool).unwrap();
    assert_eq!(heap.pool_regions(), 0);
    heap.verify().unwrap();
}

#[test]
fn take_keeps_memory_limits_right() {
    let mut heap = Talloc::new();
    let limited = heap.new_context(None).unwrap();
    heap.set_memlimit(limited, 100).unwrap();
    let x = heap.alloc(limited, [0u8; 40]).unwrap();
    heap.alloc(x, [0u8; 40]).unwrap();
    assert_eq!(heap.memlimit(limited).unwrap().unwrap().used, 80);
    heap.take(x).unwrap();
    assert_eq!(heap.memlimit(limited).unwrap().unwrap().used, 40);
    heap.verify().unwrap();
}

#[test]
fn a_failed_alloc_gives_the_value_back() {
    let drops = Rc::new(Cell::new(0));
    let mut heap = Talloc::new();
    let gone = heap.new_context(None).unwrap();
    heap.free(gone).unwrap();
    let err = heap
        .alloc_local(gone, Counted(drops.clone(), 1))
        .unwrap_err();
    assert_eq!(err.error, Error::Stale);
    assert_eq!((err.value.1, drops.get()), (1, 0));

    // Past a memory limit: the node was made, then given back.
    let limited = heap.new_context(None).unwrap();
    heap.set_memlimit(limited, 16).unwrap();
    let err = heap.alloc(limited, [1u64; 8]).unwrap_err();
    assert!(matches!(err.error, Error::MemoryLimit { .. }));
    assert_eq!(err.into_value(), [1u64; 8]);
    let err = heap
        .pooled_object(limited, String::from("body"), 1, 64)
        .unwrap_err();
    assert_eq!(err.value, "body");
    assert_eq!(heap.live_objects(), 1);
    heap.verify().unwrap();

    // `?` turns it into the plain error; `source()` gives the cause.
    let e: Box<dyn std::error::Error> = Box::new(heap.alloc(gone, 1u8).unwrap_err());
    assert_eq!(e.source().unwrap().to_string(), Error::Stale.to_string());
    fn through_question_mark(heap: &mut Talloc, at: talloc::AnyPtr) -> Result<(), Error> {
        heap.alloc(at, 1u8)?;
        Ok(())
    }
    assert_eq!(
        through_question_mark(&mut heap, gone.erase()),
        Err(Error::Stale)
    );
    drop(err_value_is_dropped_with_the_error(&drops));
    assert_eq!(drops.get(), 1);
}

/// An `AllocError` owns its value: dropping the error drops it.
fn err_value_is_dropped_with_the_error(drops: &Rc<Cell<u32>>) -> talloc::AllocError<Counted> {
    let mut heap = Talloc::new();
    let gone = heap.new_context(None).unwrap();
    heap.free(gone).unwrap();
    heap.alloc_local(gone, Counted(drops.clone(), 2))
        .unwrap_err()
}

#[test]
fn replace_swaps_the_value_in_place() {
    let mut heap = Talloc::new();
    let p = heap.alloc(None, vec![1, 2]).unwrap();
    let kid = heap.alloc(p, 0u8).unwrap();
    assert_eq!(heap.replace(p, vec![3]).unwrap(), [1, 2]);
    assert_eq!(
        (heap[p].as_slice(), heap.parent(kid).unwrap()),
        (&[3][..], Some(p.erase()))
    );
    heap.free(p).unwrap();
    assert_eq!(heap.replace(p, vec![]).unwrap_err(), Error::Stale);
}

#[test]
fn get_disjoint_mut_gives_distinct_objects_at_once() {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024).unwrap();
    let inline = heap.alloc(None, [1u32; 2]).unwrap();
    let out = heap.alloc(None, [2u32; 2]).unwrap();
    let pooled = heap.alloc(pool, [3u32; 2]).unwrap();
    let [a, b, c] = heap.get_disjoint_mut([inline, out, pooled]).unwrap();
    a[0] = 10;
    b[0] = 20;
    c[0] = 30;
    std::mem::swap(a, c);
    assert_eq!(
        (heap[inline][0], heap[out][0], heap[pooled][0]),
        (30, 20, 10)
    );

    let s1 = heap.alloc_str(None, "left").unwrap();
    let s2 = heap.alloc_str(None, "right").unwrap();
    let [l, r] = heap.get_disjoint_mut([s1, s2]).unwrap();
    l.make_ascii_uppercase();
    assert_eq!((l as &str, r as &str), ("LEFT", "right"));

    assert_eq!(
        heap.get_disjoint_mut([out, inline, out]).unwrap_err(),
        Error::Aliased
    );
    heap.free(out).unwrap();
    assert_eq!(
        heap.get_disjoint_mut([inline, out]).unwrap_err(),
        Error::Stale
    );
    let other = Talloc::new().alloc(None, [0u32; 2]);
    let foreign = other.unwrap();
    assert_eq!(
        heap.get_disjoint_mut([foreign]).unwrap_err(),
        Error::ForeignHeap
    );
    heap.verify().unwrap();
}

#[test]
fn a_parcel_made_from_a_value_attaches_anywhere() {
    // Counted is not Send: a Send value that counts through an Arc.
    #[derive(Debug)]
    struct SendCounted(std::sync::Arc<std::sync::atomic::AtomicU32>, [u64; 3]);
    impl Drop for SendCounted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut heap = Talloc::new();
    let ctx = heap.new_context(None).unwrap();
    // Inline, out of line, zero-sized.
    let small = heap
        .attach(ctx, talloc::Parcel::new(7u16).unwrap())
        .map_err(|e| e.error)
        .unwrap();
    let big = heap
        .attach(ctx, talloc::Parcel::new([9u64; 64]).unwrap())
        .map_err(|e| e.error)
        .unwrap();
    let unit = heap
        .attach(None, talloc::Parcel::new(()).unwrap())
        .map_err(|e| e.error)
        .unwrap();
    assert_eq!((heap[small], heap[big][63], heap[unit]), (7, 9, ()));
    assert_eq!(heap.name(big).unwrap(), std::any::type_name::<[u64; 64]>());
    let counted = talloc::Parcel::new(SendCounted(n.clone(), [1, 2, 3])).unwrap();
    let moved = std::thread::spawn(move || {
        let mut other = Talloc::new();
        let p = other.attach(None, counted).map_err(|e| e.error).unwrap();
        assert_eq!(other[p].1, [1, 2, 3]);
        other.free(p).unwrap();
    });
    moved.join().unwrap();
    assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(talloc::Parcel::new(SendCounted(n.clone(), [0; 3])).unwrap()); // never attached
    assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 2);
    heap.free(ctx).unwrap();
    heap.verify().unwrap();
}
