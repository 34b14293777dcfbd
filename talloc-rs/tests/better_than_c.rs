//! Where the port promises more than C: bad handles are typed errors (C
//! aborts or corrupts memory), a wrong type is an error or a clear panic,
//! steals that would make a loop are refused with the tree untouched, deep
//! trees free without recursion, and a panicking destructor leaves the heap
//! consistent and usable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use talloc::{AnyPtr, DetachError, Error, Ptr, Talloc};

type R = Result<(), Error>;

#[track_caller]
fn ok(heap: &Talloc) {
    assert_eq!(heap.verify(), Ok(()));
}

/// Runs `f` on its own thread (it builds its own heap there, since a heap is
/// not `Send`) and fails if it takes longer than `secs`.
fn within<T: Send + 'static>(what: &str, secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Calls every handle-taking operation of the heap with the bad handles
/// `v`, `b`, `s` (a value, a byte slice and a string) and checks that each
/// one returns `want` and changes nothing.
fn every_call_fails(heap: &mut Talloc, v: Ptr<u32>, b: Ptr<[u8]>, s: Ptr<str>, want: Error) {
    let live = heap.live_objects();
    let good = heap.new_context(None).unwrap();
    let any = v.erase();
    let w = Err(want.clone());
    macro_rules! fails {
        ($e:expr) => {
            assert_eq!(
                ($e).map(|_| ()).map_err(Error::from),
                w,
                "{}",
                stringify!($e)
            );
        };
    }
    // Access.
    fails!(heap.get(v));
    fails!(heap.get_mut(v));
    fails!(heap.get(b));
    fails!(heap.get(s));
    fails!(heap.downcast::<u32>(any));
    fails!(heap.type_name(v));
    fails!(heap.is_send(v));
    fails!(heap.is_pooled(v));
    fails!(heap.pool_usage(v));
    assert!(!heap.contains(v));
    // Freeing and destructors.
    fails!(heap.free(v));
    fails!(heap.free_children(v));
    fails!(heap.set_destructor(v, |_, _| Ok(())));
    fails!(heap.clear_destructor(v));
    fails!(heap.has_destructor(v));
    // Tree changes, as the object and as the parent.
    fails!(heap.steal(None, v));
    fails!(heap.steal(good, v));
    fails!(heap.steal(v, good));
    fails!(heap.steal_any(None, any));
    let mut h = Some(v);
    fails!(heap.move_to_parent(None, &mut h));
    assert_eq!(h, Some(v), "a failed move keeps the handle");
    fails!(heap.reparent(None, good, v));
    fails!(heap.reparent(v, good, good));
    fails!(heap.reference(good, v));
    fails!(heap.reference(v, good));
    fails!(heap.increase_ref_count(v));
    fails!(heap.reference_count(v));
    fails!(heap.unlink(good, v));
    fails!(heap.unlink(v, good));
    // Names and queries.
    fails!(heap.name(v));
    fails!(heap.set_name(v, format_args!("x{}", 1)));
    fails!(heap.set_name_const(v, "x"));
    fails!(heap.check_name(v, "x"));
    fails!(heap.find_parent_by_name(v, "x"));
    fails!(heap.find_parent_by_type::<u32>(v));
    fails!(heap.parent(v));
    fails!(heap.parent_name(v));
    fails!(heap.children(v));
    fails!(heap.is_ancestor(v, good));
    fails!(heap.is_ancestor(good, v));
    fails!(heap.size(v));
    fails!(heap.len(v));
    fails!(heap.total_size(v));
    fails!(heap.total_blocks(v));
    fails!(heap.report(v));
    fails!(heap.report_full(v));
    fails!(heap.report_depth(v, Some(2)));
    fails!(heap.report_depth_cb(v, None, |_, _| {}));
    fails!(heap.dot(v));
    fails!(heap.set_memlimit(v, 100));
    fails!(heap.memlimit(v));
    fails!(heap.check_transfer(v));
    // Resizing.
    fails!(heap.realloc(b, 10));
    fails!(heap.realloc_with(b, 10, |_| 1));
    fails!(heap.str_append(s, "x"));
    fails!(heap.str_append_fmt(s, format_args!("{}", 1)));
    // Creation under a bad parent.
    fails!(heap.alloc(v, 1u8));
    fails!(heap.alloc_local(v, std::rc::Rc::new(1u8)));
    fails!(heap.new_context(v));
    fails!(heap.alloc_zeroed(v, 10));
    fails!(heap.alloc_array::<u16>(v, 10));
    fails!(heap.alloc_array_with(v, 3, |i| i));
    fails!(heap.alloc_slice(v, b"abc"));
    fails!(heap.alloc_str(v, "abc"));
    fails!(heap.alloc_str_prefix(v, "abc", 2));
    fails!(heap.alloc_fmt(v, format_args!("{}", 1)));
    fails!(heap.pool(v, 1024));
    fails!(heap.pooled_object(v, 1u64, 1, 16));
    // Moving between heaps.
    match heap.detach(v) {
        Err(DetachError::Handle(e)) => assert_eq!(e, want),
        other => panic!("detach: {other:?}"),
    }
    let mut third = Talloc::new();
    let x = third.alloc_str(None, "parcel").unwrap();
    let parcel = third.detach(x).unwrap();
    match heap.attach(v, parcel) {
        Err(e) => {
            assert_eq!(e.error, want);
            assert_eq!(e.parcel.len(), 1, "the parcel comes back");
        }
        Ok(_) => panic!("attach under a bad parent"),
    }
    heap.free(good).unwrap();
    assert_eq!(heap.live_objects(), live);
    ok(heap);
}

// ---------------------------------------------------------------------------
// Use after free, double free, foreign handles.
// ---------------------------------------------------------------------------

#[test]
fn use_after_free_is_a_stale_error_everywhere() -> R {
    let mut heap = Talloc::new();
    let keep = heap.alloc_str(None, "keep")?;
    let p = heap.new_context(None)?;
    let v = heap.alloc(p, 7u32)?;
    let b = heap.alloc_zeroed(p, 10)?;
    let s = heap.alloc_str(None, "s")?;
    heap.free(p)?;
    heap.free(s)?;
    ok(&heap);
    every_call_fails(&mut heap, v, b, s, Error::Stale);
    // The slots are reused; the old handles still do not reach the new objects.
    let v2 = heap.alloc(None, 8u32)?;
    let b2 = heap.alloc_zeroed(None, 10)?;
    let s2 = heap.alloc_str(None, "s2")?;
    every_call_fails(&mut heap, v, b, s, Error::Stale);
    assert_eq!((heap[v2], heap[b2].len(), &heap[s2]), (8, 10, "s2"));
    assert_eq!(&heap[keep], "keep");
    Ok(())
}

#[test]
fn double_free_is_a_stale_error() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let kid = heap.alloc_str(p, "kid")?;
    heap.free(p)?;
    assert_eq!(heap.free(p), Err(Error::Stale));
    assert_eq!(heap.free(kid), Err(Error::Stale));
    ok(&heap);
    // Many times, with slot reuse in between.
    for _ in 0..10 {
        let q = heap.alloc(None, 1u8)?;
        heap.free(q)?;
        assert_eq!(heap.free(q), Err(Error::Stale));
        assert_eq!(heap.free(p), Err(Error::Stale));
    }
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn handle_from_another_heap_is_a_foreign_heap_error_everywhere() -> R {
    let mut mine = Talloc::new();
    let mut theirs = Talloc::new();
    mine.alloc_str(None, "mine")?;
    let v = theirs.alloc(None, 7u32)?;
    let b = theirs.alloc_zeroed(None, 10)?;
    let s = theirs.alloc_str(None, "s")?;
    every_call_fails(&mut mine, v, b, s, Error::ForeignHeap);
    // Their heap is untouched.
    ok(&theirs);
    assert_eq!((theirs[v], theirs.len(b)?, &theirs[s]), (7, 10, "s"));
    Ok(())
}

#[test]
fn handles_of_a_detached_subtree_are_stale_at_home_and_foreign_abroad() -> R {
    let mut a = Talloc::new();
    let mut b = Talloc::new();
    let msg = a.alloc_str(None, "msg")?;
    let kid = a.alloc(msg, 5u32)?;
    let parcel = a.detach(msg).expect("plain values move");
    assert_eq!(a.get(msg), Err(Error::Stale));
    assert_eq!(a.get(kid), Err(Error::Stale));
    let msg2 = b.attach(None, parcel).expect("top level of b");
    assert_eq!(b.get(msg), Err(Error::ForeignHeap));
    assert_eq!(&b[msg2], "msg");
    ok(&a);
    ok(&b);
    Ok(())
}

#[test]
#[should_panic(expected = "bad handle")]
fn indexing_with_a_stale_handle_panics_with_a_message() {
    // Index is the one documented panicking access; `get` is the checked one.
    let mut heap = Talloc::new();
    let p = heap.alloc(None, 1u32).unwrap();
    heap.free(p).unwrap();
    let _ = heap[p];
}

// ---------------------------------------------------------------------------
// Types.
// ---------------------------------------------------------------------------

#[test]
fn wrong_type_downcast_is_a_typed_error() -> R {
    let mut heap = Talloc::new();
    let n = heap.alloc(None, 3u16)?.erase();
    assert_eq!(
        heap.downcast::<u32>(n),
        Err(Error::WrongType {
            expected: "u32",
            actual: "u16"
        })
    );
    let s = heap.alloc_str(None, "s")?.erase();
    assert_eq!(
        heap.downcast::<[u8]>(s),
        Err(Error::WrongType {
            expected: "[u8]",
            actual: "str"
        })
    );
    let b = heap.alloc_zeroed(None, 3)?.erase();
    assert!(matches!(
        heap.downcast::<str>(b),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        heap.downcast::<[u16]>(b),
        Err(Error::WrongType { .. })
    ));
    let ctx = heap.new_context(None)?.erase();
    assert!(matches!(
        heap.downcast::<u8>(ctx),
        Err(Error::WrongType { .. })
    ));
    // The right type works, by type and not by name.
    heap.set_name_const(n, "u32")?;
    assert!(matches!(
        heap.downcast::<u32>(n),
        Err(Error::WrongType { .. })
    ));
    let typed = heap.downcast::<u16>(n)?;
    assert_eq!(heap[typed], 3);
    assert_eq!(heap.get_type_abort::<u16>(n), typed);
    let e = heap.downcast::<u32>(typed.erase()).unwrap_err();
    assert_eq!(e.to_string(), "type mismatch: expected u32, found u16");
    ok(&heap);
    Ok(())
}

#[test]
#[should_panic(expected = "expected u32, found u16")]
fn get_type_abort_panics_naming_both_types() {
    let mut heap = Talloc::new();
    let any = heap.alloc(None, 3u16).unwrap().erase();
    heap.get_type_abort::<u32>(any);
}

// ---------------------------------------------------------------------------
// Steal loops.
// ---------------------------------------------------------------------------

/// Every object's parent and children, to compare before and after.
fn shape(heap: &Talloc, objects: &[AnyPtr]) -> Vec<(Option<AnyPtr>, Vec<AnyPtr>)> {
    objects
        .iter()
        .map(|&p| (heap.parent(p).unwrap(), heap.children(p).unwrap().collect()))
        .collect()
}

#[test]
fn steal_loops_are_refused_and_the_tree_is_unchanged() -> R {
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let a = heap.new_context(root)?;
    let sibling = heap.alloc_str(root, "sibling")?;
    let child = heap.new_context(a)?;
    let other_child = heap.alloc_str(a, "other")?;
    let mut chain = vec![child.erase()];
    for _ in 0..30 {
        let next = heap.new_context(*chain.last().unwrap())?;
        chain.push(next.erase());
    }
    let deep = *chain.last().unwrap();
    let mut all = vec![
        root.erase(),
        a.erase(),
        sibling.erase(),
        other_child.erase(),
    ];
    all.extend(&chain);
    let before = shape(&heap, &all);
    let blocks = heap.total_blocks(root)?;

    for target in [a.erase(), child.erase(), chain[15], deep] {
        assert_eq!(
            heap.steal(target, a),
            Err(Error::Loop),
            "steal under {target:?}"
        );
        assert_eq!(heap.steal_any(target, a.erase()), Err(Error::Loop));
        let mut h = Some(a);
        assert_eq!(heap.move_to_parent(target, &mut h), Err(Error::Loop));
        assert_eq!(h, Some(a));
        assert_eq!(heap.reparent(root, target, a), Err(Error::Loop));
        ok(&heap);
        assert_eq!(shape(&heap, &all), before);
    }
    // Inside the chain too: a middle link under its own descendant.
    let mid = heap.downcast::<()>(chain[10])?;
    assert_eq!(heap.steal(deep, mid), Err(Error::Loop));
    assert_eq!(heap.steal(mid, mid), Err(Error::Loop));
    ok(&heap);
    assert_eq!(shape(&heap, &all), before);
    assert_eq!(heap.total_blocks(root)?, blocks);
    // The legal steals still work: a leaf up to the root, a subtree sideways.
    let deep = heap.downcast::<()>(deep)?;
    heap.steal(root, deep)?;
    heap.steal(sibling, mid)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, blocks);
    heap.free(root)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// Deep trees.
// ---------------------------------------------------------------------------

/// The depth of the deep chains: a million by default; `TALLOC_DEEP` sets
/// it (`.ci/valgrind` uses a smaller chain: under valgrind a million-node
/// test takes minutes, and the stack depth is what matters).
fn deep() -> usize {
    std::env::var("TALLOC_DEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A chain of `deep()` one-byte values; returns the root and the deepest.
fn chain(heap: &mut Talloc) -> (Ptr<u8>, Ptr<u8>) {
    let root = heap.alloc(None, 0u8).unwrap();
    let mut p = root;
    for i in 1..deep() {
        p = heap.alloc(p, i as u8).unwrap();
    }
    (root, p)
}

#[test]
fn million_deep_chain_frees_without_stack_overflow() {
    within("the million-deep chain", 600, || {
        let mut heap = Talloc::new();
        let (root, deepest) = chain(&mut heap);
        assert_eq!(heap.live_objects(), deep());
        assert_eq!(heap.total_size(root).unwrap(), deep());
        assert_eq!(heap.total_blocks(root).unwrap(), deep());
        assert!(heap.is_ancestor(root, deepest).unwrap());
        assert_eq!(heap.steal(deepest, root), Err(Error::Loop));
        assert_eq!(heap.find_parent_by_name(deepest, "nobody"), Ok(None));
        heap.free(root).unwrap();
        assert_eq!(heap.live_objects(), 0);
        assert_eq!(heap.get(deepest), Err(Error::Stale));
        let fresh = heap.new_context(None).unwrap();
        assert_eq!(heap.total_blocks(fresh), Ok(1));
    });
}

#[test]
fn million_deep_chain_with_destructors_frees_in_order() {
    within("the million-deep chain with destructors", 600, || {
        let mut heap = Talloc::new();
        let (root, _) = chain(&mut heap);
        let count = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let mut p = root.erase();
        let mut depth = 0usize;
        loop {
            let c = count.clone();
            let at = depth;
            let typed = heap.downcast::<u8>(p).unwrap();
            heap.set_destructor(typed, move |_, _| {
                assert_eq!(c.get(), at, "parents first, top down");
                c.set(at + 1);
                Ok(())
            })
            .unwrap();
            match heap.children(p).unwrap().next() {
                Some(k) => p = k,
                None => break,
            }
            depth += 1;
        }
        heap.free(root).unwrap();
        assert_eq!(count.get(), deep());
        assert_eq!(heap.live_objects(), 0);
    });
}

#[test]
fn million_deep_chain_drops_with_the_heap() {
    within("dropping the million-deep chain", 600, || {
        let mut heap = Talloc::new();
        chain(&mut heap);
        drop(heap);
    });
}

#[test]
fn million_deep_chain_verifies() {
    // verify() is meant for property tests after every step: it must stay
    // linear on deep trees.
    within("verify() on the million-deep chain", 120, || {
        let mut heap = Talloc::new();
        let (root, _) = chain(&mut heap);
        assert_eq!(heap.verify(), Ok(()));
        assert_eq!(heap.total_blocks(root).unwrap(), deep());
        heap.free(root).unwrap();
        assert_eq!(heap.verify(), Ok(()));
    });
}

// ---------------------------------------------------------------------------
// Panics in destructors and drops.
// ---------------------------------------------------------------------------

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn panicking_destructor_reaches_the_caller_and_leaves_the_heap_usable() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let p = heap.alloc_str(top, "p")?;
    let kid = heap.alloc_str(p, "kid")?;
    heap.set_destructor(p, |_, _| panic!("boom in destructor"))?;
    let r = catch_unwind(AssertUnwindSafe(|| heap.free(p)));
    let panic = r.expect_err("the panic reaches the caller of free");
    assert_eq!(message(&*panic), "boom in destructor");
    ok(&heap);
    // The object was kept, as if its destructor had refused.
    assert_eq!(heap.parent(p)?, Some(top.erase()));
    assert_eq!(heap.parent(kid)?, Some(p.erase()));
    // The heap is usable: allocate, steal, free.
    let more = heap.alloc_zeroed(top, 64)?;
    heap.steal(more, kid)?;
    ok(&heap);
    heap.clear_destructor(p)?;
    heap.free(p)?;
    ok(&heap);
    heap.free(top)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn panicking_child_destructor_reaches_the_caller_after_the_free_finished() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let older = heap.alloc_str(p, "older")?;
    let bomb = heap.alloc_str(p, "bomb")?;
    let bomb_kid = heap.alloc_str(bomb, "bomb kid")?;
    let newer = heap.alloc_str(p, "newer")?;
    heap.set_destructor(bomb, |_, _| panic!("boom in child"))?;
    let r = catch_unwind(AssertUnwindSafe(|| heap.free(p)));
    assert_eq!(
        message(&*r.expect_err("the panic reaches the caller")),
        "boom in child"
    );
    ok(&heap);
    // The free went on around the panicking child, which was kept (moved up
    // as a refusing child is).
    assert!(!heap.contains(p) && !heap.contains(older) && !heap.contains(newer));
    assert_eq!(heap.parent(bomb)?, Some(top.erase()));
    assert_eq!(heap.parent(bomb_kid)?, Some(bomb.erase()));
    heap.clear_destructor(bomb)?;
    heap.free(top)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("boom in drop");
    }
}

#[test]
fn panicking_drop_reaches_the_caller_and_everything_is_freed() -> R {
    let mut heap = Talloc::new();
    let keep = heap.alloc_str(None, "keep")?;
    let p = heap.new_context(None)?;
    heap.alloc_str(p, "before")?;
    heap.alloc(p, Bomb)?;
    heap.alloc_str(p, "after")?;
    let r = catch_unwind(AssertUnwindSafe(|| heap.free(p)));
    assert_eq!(
        message(&*r.expect_err("the panic reaches the caller")),
        "boom in drop"
    );
    ok(&heap);
    assert!(!heap.contains(p));
    assert_eq!(heap.live_objects(), 1);
    let again = heap.alloc_str(keep, "usable")?;
    assert_eq!(&heap[again], "usable");
    ok(&heap);
    Ok(())
}

// ---------------------------------------------------------------------------
// Destructors that free their relatives.
// ---------------------------------------------------------------------------

#[test]
fn destructor_freeing_its_own_parent_is_safe() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let sibling = heap.alloc_str(p, "sibling")?;
    let c = heap.alloc_str(p, "c")?;
    heap.set_destructor(c, move |heap, _| {
        heap.free(p).unwrap();
        Ok(())
    })?;
    heap.free(c)?;
    ok(&heap);
    assert!(!heap.contains(c) && !heap.contains(p) && !heap.contains(sibling));
    assert_eq!(heap.total_blocks(top)?, 1);
    Ok(())
}

#[test]
fn destructors_freeing_their_siblings_are_safe() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let a = heap.alloc_str(p, "a")?;
    let b = heap.alloc_str(p, "b")?;
    let c = heap.alloc_str(p, "c")?;
    // c goes first and frees a (not yet reached); b frees c (being freed).
    heap.set_destructor(c, move |heap, _| {
        heap.free(a).unwrap();
        Ok(())
    })?;
    heap.set_destructor(b, move |heap, _| {
        assert_eq!(heap.free(c), Err(Error::Stale));
        Ok(())
    })?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    assert!(!heap.contains(b));
    Ok(())
}

// ---------------------------------------------------------------------------
// Name chunks: reachable as children, so they must not break their owner.
// ---------------------------------------------------------------------------

#[test]
fn freeing_a_name_chunk_directly_does_not_break_the_owners_name() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    heap.set_name(p, format_args!("hello {}", 1))?;
    let chunk = heap.children(p)?.next().unwrap();
    let _ = heap.free(chunk); // refused, or the name goes back to a default
    ok(&heap);
    let name = heap.name(p)?.to_string();
    assert!(name == "hello 1" || name == "talloc_new", "{name}");
    // The chunk's slot is reused by another string: the name must not
    // become that string.
    let s = heap.alloc_str(None, "someone else's string")?;
    assert_ne!(heap.name(p)?, "someone else's string");
    assert_eq!(&heap[s], "someone else's string");
    ok(&heap);
    Ok(())
}

#[test]
fn name_chunk_stolen_away_does_not_break_detach() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let other = heap.new_context(None)?;
    heap.set_name(p, format_args!("hello {}", 1))?;
    let chunk = heap.children(p)?.next().unwrap();
    let _ = heap.steal_any(other, chunk); // refused, or allowed
    ok(&heap);
    let r = catch_unwind(AssertUnwindSafe(|| {
        heap.detach(p).map(|parcel| parcel.len())
    }));
    let detached = r.expect("detach must not panic");
    ok(&heap);
    assert!(detached.is_ok(), "{detached:?}");
    Ok(())
}
