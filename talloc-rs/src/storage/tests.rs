//! Unit tests of the storage layer.

use std::any::TypeId;
use std::mem;

use super::detached::DetachedStore;
use super::*;
use crate::{AnyPtr, Error, Talloc};

fn fresh() -> Slots {
    Slots::new(HEAP_IDS.take().unwrap())
}

#[test]
fn node_is_compact() {
    // Generation, links, length, rare index (28 bytes), type index and
    // flags (4) and 32 bytes of inline value: one cache line's worth.
    assert_eq!(mem::size_of::<Node>(), 64);
}

#[test]
fn a_full_type_table_is_an_error_that_changes_nothing() {
    let mut heap = Talloc::new();
    let root = heap.alloc(None, 1u8).unwrap();
    heap.slots.types.set_capacity(0);
    // Types already stored go on being stored, by any path, and bytes and
    // strings always can be.
    heap.alloc(root, 2u8).unwrap();
    heap.alloc(None, 3u8).unwrap();
    heap.alloc_str(root, "x").unwrap();
    heap.alloc_zeroed(root, 8).unwrap();
    // A type the table cannot take is refused, the value handed back.
    let e = heap.alloc(root, 4u16).unwrap_err();
    assert_eq!((e.error, e.value), (Error::HeapFull, 4u16));
    assert_eq!(
        heap.alloc_array_with(root, 2, |i| i as u32).map(|_| ()),
        Err(Error::HeapFull)
    );
    assert_eq!(heap.live_objects(), 5);
    assert_eq!(heap.verify(), Ok(()));

    // A parcel of a new type is handed back whole.
    let mut other = Talloc::new();
    other.alloc(None, String::from("a")).unwrap();
    attach_is_refused_whole(&mut heap, Some(root.erase()), &mut other);
}

/// Detaches `other`'s newest top-level object (a `String` "a") and checks
/// that attaching it under `parent` (the top level for `None`) is `HeapFull`, changes nothing, and
/// hands the parcel back whole (it attaches to `other` again).
fn attach_is_refused_whole(heap: &mut Talloc, parent: Option<AnyPtr>, other: &mut Talloc) {
    let a = other
        .downcast::<String>(other.top_level().next().unwrap())
        .unwrap();
    let parcel = other.detach(a).unwrap();
    let live = heap.live_objects();
    let back = heap.attach(parent, parcel).unwrap_err();
    assert_eq!(back.error, Error::HeapFull);
    assert_eq!(heap.live_objects(), live);
    let a = other
        .attach(None, back.parcel)
        .map_err(|e| e.error)
        .unwrap();
    assert_eq!(other[a], "a");
    assert_eq!(heap.verify(), Ok(()));
}

#[test]
fn a_node_knows_from_its_flags_whether_its_value_needs_a_drop() {
    let mut s = fresh();
    let plain = s.insert(1u64, 0, None).unwrap();
    let owned = s.insert(String::from("x"), 0, None).unwrap();
    assert!(!s.node(plain).has(flag::NEEDS_DROP));
    assert!(s.node(owned).has(flag::NEEDS_DROP));
    assert_eq!((s.desc(owned).type_id)(), TypeId::of::<String>());
    // A slot keeps no flag of its last life.
    let _ = s.release(owned);
    let again = s.insert(2u64, 0, None).unwrap();
    assert_eq!(again, owned);
    assert!(!s.node(again).has(flag::NEEDS_DROP));
}

#[test]
fn region_is_released_when_last_object_goes() {
    let mut s = fresh();
    let region = s.new_region(1024).unwrap();
    let pool = s.insert_marker(marker_desc::<()>(), 0, None).unwrap();
    s.mark_pool(pool, region);
    let a = s.insert([1u8; 100], 0, Some(region)).unwrap();
    assert_eq!(s.region_usage(region).unwrap().2, 2);
    let _ = s.release(pool);
    assert_eq!(s.live_regions(), 1, "a member keeps the region");
    let _ = s.release(a);
    assert_eq!(s.live_regions(), 0);
}

#[test]
fn inline_bytes_keep_their_alignment_when_moved() {
    assert!(mem::align_of::<InlineBytes>() >= 8);
    assert!(mem::align_of::<DetachedStore>() >= 8);
    let mut s = fresh();
    let slot = s.insert((1u64, 2u64), 0, None).unwrap();
    let mut d = vec![s.detach_value(slot)];
    d.push(Detached::empty());
    for d in &mut d {
        assert_eq!(d.data() as usize % 8, 0);
    }
}

#[test]
fn heap_ids_are_never_handed_out_twice() {
    let ids = IdSource::starting_at(NonZeroU64::new(u64::MAX - 3).unwrap());
    let taken: Vec<u64> = std::iter::from_fn(|| ids.take().map(HeapId::get)).collect();
    assert_eq!(taken, [u64::MAX - 3, u64::MAX - 2, u64::MAX - 1]);
    // Exhausted for good: the counter neither wraps nor panics.
    assert!(ids.take().is_none());
    assert!(ids.take().is_none());
}

#[test]
fn a_full_heap_is_an_error_that_changes_nothing() {
    let mut heap = Talloc::new();
    let root = heap.new_context(None).unwrap();
    let pool = heap.pool(root, 1024).unwrap();
    heap.slots.set_capacity(2);
    assert_eq!(heap.alloc(root, 1u8).unwrap_err(), Error::HeapFull);
    assert_eq!(heap.alloc_zeroed(pool, 8), Err(Error::HeapFull));
    assert_eq!(heap.alloc_str(None, "x"), Err(Error::HeapFull));
    assert_eq!(heap.new_context(None), Err(Error::HeapFull));
    assert_eq!(heap.pool(None, 64).map(|_| ()), Err(Error::HeapFull));
    assert_eq!(heap.reference(root, pool).map(|_| ()), Err(Error::HeapFull));
    assert_eq!(heap.live_objects(), 2);
    assert_eq!(heap.verify(), Ok(()));

    // A parcel that does not fit is handed back whole.
    let mut other = Talloc::new();
    let a = other.alloc(None, String::from("a")).unwrap();
    other.alloc(a, 2u32).unwrap();
    heap.free(pool).unwrap();
    assert_eq!(heap.live_objects(), 1);
    attach_is_refused_whole(&mut heap, None, &mut other);
}

#[test]
fn a_slot_whose_generation_runs_out_is_retired() {
    let mut s = fresh();
    let slot = s.insert(1u8, 0, None).unwrap();
    // The last live generation a slot may have.
    s.node_mut(slot).gen = u32::MAX - 2;
    let key = s.key(slot);
    let _ = s.release(slot);
    assert_eq!(s.retired, 1);
    assert_eq!(s.lookup(key), Err(Error::Stale));
    s.set_capacity(1);
    assert_eq!(s.vacancies(), 0);
    assert_eq!(s.insert(2u8, 0, None), Err((StoreError::Full, 2u8)));
    assert_eq!(s.lookup(key), Err(Error::Stale));
}

#[test]
fn a_plain_leaf_freed_on_the_fast_path_retires_a_spent_slot_too() {
    let mut heap = Talloc::new();
    let root = heap.new_context(None).unwrap();
    let old = heap.alloc_zeroed(root, 8).unwrap().erase();
    let slot = old.key.slot;
    heap.slots.node_mut(slot).gen = u32::MAX - 2;
    let spent = AnyPtr {
        key: heap.slots.key(slot),
    };
    heap.free(spent).unwrap();
    assert_eq!(heap.slots.retired, 1);
    assert_eq!(heap.free(spent), Err(Error::Stale));
    // The slot is never handed out again: the next child takes a fresh one.
    let next = heap.alloc_zeroed(root, 8).unwrap().erase();
    assert_ne!(next.key.slot, slot);
    assert_eq!(heap.verify(), Ok(()));
}
