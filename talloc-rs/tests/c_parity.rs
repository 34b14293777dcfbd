//! Cases where talloc-rs once disagreed with C talloc 2.4, found by running
//! random operation traces on both. Each test is named after the finding it
//! pins (`pNN`), with the trace it came from in the notation
//! `NEW id parent size`, `REF owner target`, `UNLINK ctx target`
//! (`-` is none: the top level or no owner).

use std::cell::Cell;
use std::rc::Rc;

use talloc::{Error, Refused, Talloc};

/// `NEW 1 0 0; NEW 2 1 0; REF - 2; FREE 1`: the survivor held only by an
/// owner-less reference goes to the freed object's parent, as in C, and the
/// reference is used up.
#[test]
fn p01_survivor_of_an_owner_less_reference_moves_to_the_freed_objects_parent() {
    let mut heap = Talloc::new();
    let o0 = heap.new_context(None).unwrap();
    let o1 = heap.new_context(o0).unwrap();
    let o2 = heap.new_context(o1).unwrap();
    heap.reference(None, o2).unwrap();
    heap.free(o1).unwrap();
    assert_eq!(heap.parent(o2), Ok(Some(o0.erase())));
    assert_eq!(heap.reference_count(o2), Ok(0));
    assert_eq!(heap.verify(), Ok(()));
}

/// `NEW 1 0 0; NEW 2 - 0; REF 2 1; REF 1 1; FREE_CHILDREN 0`: the newest
/// reference is the child's own, so C's new home for it is itself, which
/// changes nothing, and the child is tried again: both references go and
/// the child is freed.
#[test]
fn p02_a_child_whose_newest_reference_is_its_own_is_tried_again() {
    let mut heap = Talloc::new();
    let o0 = heap.new_context(None).unwrap();
    let o1 = heap.new_context(o0).unwrap();
    let o2 = heap.new_context(None).unwrap();
    heap.reference(o2, o1).unwrap();
    heap.reference(o1, o1).unwrap();
    heap.free_children(o0).unwrap();
    assert!(!heap.contains(o1));
    assert_eq!(heap.children(o2).unwrap().count(), 0);
    assert_eq!(heap.live_objects(), 2);
    assert_eq!(heap.verify(), Ok(()));
}

/// `NEW 1 0 0; REF 1 1; DTOR_REFUSE 1; FREE_CHILDREN 0`: as above, the
/// first try drops the self-reference and meets the refusing destructor;
/// the second try calls it again, as C does, and the child then moves up
/// (rule T4: here to the top level).
#[test]
fn p02_a_refusing_child_with_a_self_reference_is_asked_twice() {
    let mut heap = Talloc::new();
    let o0 = heap.new_context(None).unwrap();
    let o1 = heap.new_context(o0).unwrap();
    heap.reference(o1, o1).unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    heap.set_destructor(o1, move |_, _| {
        c.set(c.get() + 1);
        Err(Refused)
    })
    .unwrap();
    heap.free_children(o0).unwrap();
    assert_eq!(calls.get(), 2);
    assert_eq!(heap.parent(o1), Ok(None));
    assert_eq!(heap.reference_count(o1), Ok(0));
    assert_eq!(heap.verify(), Ok(()));
}

/// `NEW 1 0 0; REF 1 1; UNLINK 0 1`: the newest reference is the object's
/// own; C drops it and keeps the object where it is.
#[test]
fn p03_unlink_drops_a_newest_self_reference_and_keeps_the_object() {
    let mut heap = Talloc::new();
    let o0 = heap.new_context(None).unwrap();
    let o1 = heap.new_context(o0).unwrap();
    heap.reference(o1, o1).unwrap();
    heap.unlink(o0, o1).unwrap();
    assert_eq!(heap.parent(o1), Ok(Some(o0.erase())));
    assert_eq!(heap.reference_count(o1), Ok(0));
    assert_eq!(heap.verify(), Ok(()));
}

/// `NEW 1 0 0; NEW 2 - 0; REF 2 1; REF 1 1; UNLINK 0 1`: the same with an
/// older reference from 2, which stays.
#[test]
fn p03_unlink_with_an_older_reference_keeps_it() {
    let mut heap = Talloc::new();
    let o0 = heap.new_context(None).unwrap();
    let o1 = heap.new_context(o0).unwrap();
    let o2 = heap.new_context(None).unwrap();
    heap.reference(o2, o1).unwrap();
    heap.reference(o1, o1).unwrap();
    heap.unlink(o0, o1).unwrap();
    assert_eq!(heap.parent(o1), Ok(Some(o0.erase())));
    assert_eq!(heap.reference_count(o1), Ok(1));
    // The reference from 2 is the one left: unlinking it leaves 1 alone.
    heap.unlink(o2, o1).unwrap();
    assert_eq!(heap.reference_count(o1), Ok(0));
    assert!(heap.contains(o1));
    assert_eq!(heap.verify(), Ok(()));
}

/// Not a C behaviour we copy: C's `talloc_free` of a top-level object whose
/// only reference is its own returns 0, drops the reference and keeps the
/// object. talloc-rs frees it (a reference from inside an object's own
/// subtree never keeps it alive); pinned here, listed in the porting chapter.
#[test]
fn p05_free_of_a_top_level_object_with_only_a_self_reference_frees_it() {
    let mut heap = Talloc::new();
    let o1 = heap.new_context(None).unwrap();
    heap.reference(o1, o1).unwrap();
    heap.free(o1).unwrap();
    assert!(!heap.contains(o1));
    assert_eq!(heap.live_objects(), 0);
    // A stale handle afterwards is an error, not a second free.
    assert_eq!(heap.free(o1), Err(Error::Stale));
}

/// `pool(None,1024); a = alloc_zeroed(pool,16); realloc(a,32)`: the pool's last
/// member grows in place, as in C, instead of leaving the pool.
#[test]
fn p04_growing_the_last_pool_member_keeps_it_in_place() {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024).unwrap();
    let a = heap.alloc_zeroed(pool, 16).unwrap();
    let at = heap[a].as_ptr();
    heap.realloc(a, 32).unwrap();
    assert!(heap.is_pooled(a).unwrap());
    assert_eq!(heap[a].as_ptr(), at);
    assert_eq!(heap[a], [0u8; 32]);
    assert_eq!(heap.verify(), Ok(()));
}

/// `pool(None,10240); set_memlimit(pool,10240); a = alloc_zeroed(pool,1024);
/// realloc(a,2048)`: growing inside the pool charges nothing, so the limit
/// (which the pool itself fills) does not refuse it.
#[test]
fn p04_growing_inside_a_limited_pool_is_not_charged() {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 10240).unwrap();
    heap.set_memlimit(pool, 10240).unwrap();
    let a = heap.alloc_zeroed(pool, 1024).unwrap();
    heap.realloc(a, 2048).unwrap();
    assert!(heap.is_pooled(a).unwrap());
    assert_eq!(heap.verify(), Ok(()));
}

/// Samba's `test_pool`, with addresses compared as C compares pointers:
/// growth within a chunk's granule, at the pool's end, by sliding the only
/// member to the start, and reuse of the pool once a member left it.
#[test]
fn p04_samba_test_pool_reuses_pool_memory_as_c_does() {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024).unwrap();
    let p1 = heap.alloc_zeroed(pool, 80).unwrap();
    let p2 = heap.alloc_zeroed(pool, 20).unwrap();
    let p3 = heap.alloc_zeroed(p1, 50).unwrap();
    let p4 = heap.alloc_zeroed(p3, 1000).unwrap();
    assert!(!heap.is_pooled(p4).unwrap(), "too big for what is left");
    let at = |heap: &Talloc, p: talloc::Ptr<[u8]>| heap[p].as_ptr() as usize;

    let p2_at = at(&heap, p2);
    for size in [21, 19, 19] {
        heap.realloc(p2, size).unwrap();
        assert_eq!(at(&heap, p2), p2_at, "realloc to {size} moved it");
    }
    // p3 and p4 go: p2 is the pool's last member and grows in place.
    heap.free(p3).unwrap();
    heap.realloc(p2, 400).unwrap();
    assert_eq!(at(&heap, p2), p2_at);
    // p1 goes: p2 is the only member and slides to the pool's start.
    let p1_at = at(&heap, p1);
    heap.free(p1).unwrap();
    heap.realloc(p2, 800).unwrap();
    assert_eq!(at(&heap, p2), p1_at);
    assert!(heap.is_pooled(p2).unwrap());
    // Too big for the pool: it leaves it...
    heap.realloc(p2, 1800).unwrap();
    assert!(!heap.is_pooled(p2).unwrap());
    // ...and the empty pool starts over.
    let p3 = heap.alloc_zeroed(pool, 80).unwrap();
    assert_eq!(at(&heap, p3), p1_at);
    heap.free(p2).unwrap();
    heap.free(p3).unwrap();

    let p1 = heap.alloc_zeroed(pool, 80).unwrap();
    let p2 = heap.alloc_zeroed(pool, 20).unwrap();
    heap.free(p1).unwrap();
    let p2_at = at(&heap, p2);
    for size in [19, 19] {
        heap.realloc(p2, size).unwrap();
        assert_eq!(at(&heap, p2), p2_at);
    }
    heap.realloc(p2, 1800).unwrap();
    assert!(!heap.is_pooled(p2).unwrap());
    let p3 = heap.alloc_zeroed(pool, 800).unwrap();
    assert_eq!(at(&heap, p3), p1_at);
    assert_eq!(heap.verify(), Ok(()));
    heap.free(pool).unwrap(); // p2 left the pool's memory, not its subtree
    assert!(!heap.contains(p2));
    assert_eq!(heap.live_objects(), 0);
}

/// A member that outgrows its place and is not the pool's last moves to a
/// new range of the same pool, keeping its contents.
#[test]
fn p04_a_member_in_the_middle_moves_within_its_pool() {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024).unwrap();
    let a = heap.alloc_slice(pool, &[7u32; 4]).unwrap();
    let b = heap.alloc_zeroed(pool, 16).unwrap();
    let a_at = heap[a].as_ptr() as usize;
    heap.realloc(a, 32).unwrap();
    assert!(heap.is_pooled(a).unwrap());
    assert!(heap[a].as_ptr() as usize > heap[b].as_ptr() as usize);
    assert_ne!(heap[a].as_ptr() as usize, a_at);
    assert_eq!(&heap[a][..4], &[7; 4]);
    assert_eq!(heap.verify(), Ok(()));
}

/// Samba's `test_pool_steal`: members stolen out of a pool that is then
/// freed keep using its memory, move within it and slide back to its
/// start. (The last step uses 1025 bytes where C uses 1024: C's chunk
/// headers make 1024 not fit in a 1024-byte pool, ours take no room.)
#[test]
fn p04_samba_test_pool_steal_reuses_a_freed_pools_memory() {
    let mut heap = Talloc::new();
    let at = |heap: &Talloc, p: talloc::Ptr<[u8]>| heap[p].as_ptr() as usize;
    let root = heap.new_context(None).unwrap();
    let pool = heap.pool(root, 1024).unwrap();
    let p1 = heap.alloc_zeroed(pool, 4 * 16).unwrap();
    let p2 = heap.alloc_zeroed(pool, 4 * 16).unwrap();
    assert!(at(&heap, p2) > at(&heap, p1));
    let hdr = at(&heap, p2) - at(&heap, p1) - 4 * 16;
    let p1_at = at(&heap, p1);
    heap.steal(root, p1).unwrap();
    heap.steal(root, p2).unwrap();
    heap.free(pool).unwrap();

    // p1 is not the last member: it moves to a new range after p2.
    heap.realloc(p1, 5 * 16).unwrap();
    assert_eq!(at(&heap, p1), at(&heap, p2) + 4 * 16 + hdr);
    let p2_at = at(&heap, p2);
    heap.realloc(p2, 3 * 16).unwrap();
    assert_eq!(at(&heap, p2), p2_at);
    // p1 goes; p2, the only member left, slides to the start.
    heap.free(p1).unwrap();
    heap.realloc(p2, 8 * 16).unwrap();
    assert_eq!(at(&heap, p2), p1_at);
    assert!(heap.is_pooled(p2).unwrap());
    heap.realloc(p2, 1025).unwrap();
    assert!(!heap.is_pooled(p2).unwrap());
    assert_eq!(heap.pool_regions(), 0, "the freed pool's memory is gone");
    heap.free(root).unwrap();
    assert_eq!(heap.verify(), Ok(()));
    assert_eq!(heap.live_objects(), 0);
}
