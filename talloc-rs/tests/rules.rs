//! The talloc rules T1-T21 (stated in the book chapter `docs/src/rules.md`,
//! which also lists these tests), one or a few tests per rule, named
//! after it. Most cases come from the C test suite (`lib/talloc/testsuite.c`,
//! its ownership and lifetime tests). Where this port deliberately differs
//! from C, the test checks the port's documented behaviour and says in a
//! one-line comment how C differs.
//!
//! After every mutating step, `ok(&heap)` checks the heap's invariants.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;

use talloc::{
    AnyPtr, DetachError, Error, LeakReport, Ptr, Refused, Talloc, TransferRule, NAME_CHUNK_NAME,
    REFERENCE_NAME,
};

type R = Result<(), Error>;
type Log = Rc<RefCell<Vec<&'static str>>>;

/// Every invariant holds.
#[track_caller]
fn ok(heap: &Talloc) {
    assert_eq!(heap.verify(), Ok(()));
}

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// A destructor that records `label` and lets the free go on.
fn logged<T: ?Sized + 'static>(heap: &mut Talloc, p: Ptr<T>, label: &'static str, log: &Log) {
    let log = log.clone();
    heap.set_destructor(p, move |_, _| {
        log.borrow_mut().push(label);
        Ok(())
    })
    .unwrap();
}

/// A destructor that records `label` and refuses.
fn refusing<T: ?Sized + 'static>(heap: &mut Talloc, p: Ptr<T>, label: &'static str, log: &Log) {
    let log = log.clone();
    heap.set_destructor(p, move |_, _| {
        log.borrow_mut().push(label);
        Err(Refused)
    })
    .unwrap();
}

fn kids(heap: &Talloc, p: impl Into<AnyPtr>) -> Vec<AnyPtr> {
    heap.children(p).unwrap().collect()
}

fn parent_of(heap: &Talloc, p: impl Into<AnyPtr>) -> Option<AnyPtr> {
    heap.parent(p).unwrap()
}

/// A context with a constant name, as C's `talloc_named_const(ctx, 0, name)`.
fn named(heap: &mut Talloc, parent: Option<AnyPtr>, name: &'static str) -> Ptr<()> {
    let p = heap.new_context(parent).unwrap();
    heap.set_name_const(p, name).unwrap();
    p
}

/// A buffer with a constant name, as C's `talloc_named_const(ctx, size, name)`.
fn named_buf(
    heap: &mut Talloc,
    parent: impl Into<AnyPtr>,
    size: usize,
    name: &'static str,
) -> Ptr<[u8]> {
    let p = heap.alloc_zeroed(parent.into(), size).unwrap();
    heap.set_name_const(p, name).unwrap();
    p
}

// ---------------------------------------------------------------------------
// T1. Child-list order: newest first.
// ---------------------------------------------------------------------------

#[test]
fn t01_children_newest_first() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let a = heap.alloc_str(p, "a")?;
    let b = heap.alloc_zeroed(p, 4)?;
    let c = heap.alloc(p, 7u32)?;
    ok(&heap);
    assert_eq!(kids(&heap, p), [c.erase(), b.erase(), a.erase()]);
    // Every sibling knows its parent (C walks to the head; here it is O(1)).
    for k in kids(&heap, p) {
        assert_eq!(parent_of(&heap, k), Some(p.erase()));
    }
    assert_eq!(heap.parent_name(a)?, Some("talloc_new"));
    Ok(())
}

#[test]
fn t01_steal_inserts_at_head() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let other = heap.new_context(None)?;
    let a = heap.alloc_str(p, "a")?;
    let b = heap.alloc_str(p, "b")?;
    let x = heap.alloc_str(other, "x")?;
    heap.steal(p, x)?;
    ok(&heap);
    assert_eq!(kids(&heap, p), [x.erase(), b.erase(), a.erase()]);
    assert!(kids(&heap, other).is_empty());
    Ok(())
}

#[test]
fn t01_steal_to_current_parent_moves_to_head() -> R {
    // C does the same: it is not a no-op (docs/src/rules.md, T1).
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let a = heap.alloc_str(p, "a")?;
    let b = heap.alloc_str(p, "b")?;
    let c = heap.alloc_str(p, "c")?;
    heap.steal(p, a)?;
    ok(&heap);
    assert_eq!(kids(&heap, p), [a.erase(), c.erase(), b.erase()]);
    heap.steal(p, a)?; // already the head: nothing changes
    ok(&heap);
    assert_eq!(kids(&heap, p), [a.erase(), c.erase(), b.erase()]);
    Ok(())
}

// ---------------------------------------------------------------------------
// T2. Order of destructor calls when freeing a subtree.
// ---------------------------------------------------------------------------

#[test]
fn t02_destructor_order_parent_then_newest_child_first() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.alloc_str(None, "P")?;
    let c1 = heap.alloc_str(p, "C1")?;
    let c2 = heap.alloc_str(p, "C2")?;
    let g1 = heap.alloc_str(c1, "G1")?;
    logged(&mut heap, p, "P", &log);
    logged(&mut heap, c1, "C1", &log);
    logged(&mut heap, c2, "C2", &log);
    logged(&mut heap, g1, "G1", &log);
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["P", "C2", "C1", "G1"]);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t02_destructor_order_is_depth_first_preorder_newest_first() -> R {
    // R -> A(a1, a2), B(b1(b1x)), C, allocated in that order.
    let mut heap = Talloc::new();
    let log = new_log();
    let r = heap.new_context(None)?;
    let a = heap.new_context(r)?;
    let a1 = heap.new_context(a)?;
    let a2 = heap.new_context(a)?;
    let b = heap.new_context(r)?;
    let b1 = heap.new_context(b)?;
    let b1x = heap.new_context(b1)?;
    let c = heap.new_context(r)?;
    for (p, l) in [
        (r, "R"),
        (a, "A"),
        (a1, "a1"),
        (a2, "a2"),
        (b, "B"),
        (b1, "b1"),
        (b1x, "b1x"),
        (c, "C"),
    ] {
        logged(&mut heap, p, l, &log);
    }
    heap.free(r)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["R", "C", "B", "b1", "b1x", "A", "a2", "a1"]);
    Ok(())
}

#[test]
fn t02_destructor_runs_before_any_child_is_touched() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    heap.alloc_str(p, "one")?;
    heap.alloc_str(p, "two")?;
    let seen = Rc::new(Cell::new(usize::MAX));
    let s = seen.clone();
    heap.set_destructor(p, move |heap, me| {
        s.set(heap.children(me).unwrap().count());
        Ok(())
    })?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(seen.get(), 2);
    Ok(())
}

/// A value whose drop is recorded.
struct Noisy(&'static str, Log);
impl Drop for Noisy {
    fn drop(&mut self) {
        self.1.borrow_mut().push(self.0);
    }
}

#[test]
fn t02_values_are_dropped_after_their_children() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.alloc_local(None, Noisy("P", log.clone()))?;
    let c = heap.alloc_local(p, Noisy("C", log.clone()))?;
    heap.alloc_local(c, Noisy("G", log.clone()))?;
    heap.alloc_local(p, Noisy("D", log.clone()))?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["D", "G", "C", "P"]);
    Ok(())
}

#[test]
fn t02_freeing_an_object_that_is_being_freed_does_nothing_more() -> R {
    // The LOOP flag: a child's destructor frees the parent being freed.
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.new_context(None)?;
    let c = heap.new_context(p)?;
    logged(&mut heap, p, "P", &log);
    let result = Rc::new(RefCell::new(None));
    let res = result.clone();
    heap.set_destructor(c, move |heap, _| {
        *res.borrow_mut() = Some(heap.free(p));
        Ok(())
    })?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*result.borrow(), Some(Ok(())));
    assert_eq!(*log.borrow(), ["P"]); // P's destructor ran once
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// T3. A destructor that refuses.
// ---------------------------------------------------------------------------

#[test]
fn t03_refusing_destructor_keeps_object_children_and_parent_link() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let older = heap.new_context(top)?;
    let p = heap.alloc_str(top, "p")?;
    let newer = heap.new_context(top)?;
    let c1 = heap.alloc_str(p, "c1")?;
    let c2 = heap.alloc_zeroed(c1, 10)?;
    refusing(&mut heap, p, "p", &log);
    let blocks = heap.total_blocks(top)?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    assert_eq!(*log.borrow(), ["p"]);
    assert_eq!(heap.total_blocks(top)?, blocks);
    assert_eq!(kids(&heap, top), [newer.erase(), p.erase(), older.erase()]);
    assert_eq!(parent_of(&heap, c2), Some(c1.erase()));
    // The destructor is restored: it runs again on the next free.
    assert!(heap.has_destructor(p)?);
    assert_eq!(heap.free(p), Err(Error::Refused));
    assert_eq!(*log.borrow(), ["p", "p"]);
    // Removing it lets the free go through.
    heap.clear_destructor(p)?;
    heap.free(p)?;
    ok(&heap);
    assert!(!heap.contains(c2));
    Ok(())
}

#[test]
fn t03_destructor_replaced_by_itself_is_not_restored() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.alloc_str(None, "p")?;
    let l = log.clone();
    heap.set_destructor(p, move |heap, me| {
        l.borrow_mut().push("first");
        let l2 = l.clone();
        heap.set_destructor(me, move |_, _| {
            l2.borrow_mut().push("second");
            Ok(())
        })
        .unwrap();
        Err(Refused)
    })?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["first", "second"]);
    Ok(())
}

#[test]
fn t03_destructor_cleared_by_itself_stays_cleared() -> R {
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor(p, |heap, me| {
        heap.clear_destructor(me).unwrap();
        Err(Refused)
    })?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    assert!(!heap.has_destructor(p)?);
    heap.free(p)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t03_free_of_own_object_inside_its_destructor_is_refused() -> R {
    // C returns -1 (the destructor slot holds the sentinel).
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    let inner = Rc::new(RefCell::new(None));
    let i = inner.clone();
    heap.set_destructor(p, move |heap, me| {
        *i.borrow_mut() = Some(heap.free(me));
        Ok(())
    })?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*inner.borrow(), Some(Err(Error::DestructorRunning)));
    assert!(!heap.contains(p));
    Ok(())
}

#[test]
fn t03_destructor_may_free_and_steal_other_memory() -> R {
    let mut heap = Talloc::new();
    let elsewhere = heap.new_context(None)?;
    let victim = heap.alloc_str(None, "victim")?;
    let p = heap.new_context(None)?;
    let keep = heap.alloc_str(p, "keep")?;
    let lose = heap.alloc_str(p, "lose")?;
    heap.set_destructor(p, move |heap, _| {
        heap.free(victim).unwrap();
        heap.steal(elsewhere, keep).unwrap();
        Ok(())
    })?;
    heap.free(p)?;
    ok(&heap);
    assert!(!heap.contains(victim));
    assert!(!heap.contains(lose));
    assert_eq!(&heap[keep], "keep");
    assert_eq!(parent_of(&heap, keep), Some(elsewhere.erase()));
    Ok(())
}

/// test_free_parent_reparent_child's destructor: move myself to `new_parent`
/// and refuse.
fn reparenting<T: ?Sized + 'static>(heap: &mut Talloc, p: Ptr<T>, new_parent: AnyPtr) {
    heap.set_destructor(p, move |heap, me| {
        heap.clear_destructor(me).unwrap();
        let mut me = Some(me);
        heap.move_to_parent(new_parent, &mut me).unwrap();
        assert!(me.is_none());
        Err(Refused)
    })
    .unwrap();
}

#[test]
fn t03_destructor_may_move_its_own_object_elsewhere() -> R {
    // test_free_parent_reparent_child
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let level1 = heap.alloc_str(top, "level1")?;
    let alternate = heap.alloc_str(top, "alternate_level1")?;
    let level2 = heap.alloc_str(level1, "level2")?;
    let level3 = heap.alloc(level2, [b'x'; 20])?;
    reparenting(&mut heap, level3, alternate.erase());
    heap.free(level1)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, level3), Some(alternate.erase()));
    assert_eq!(heap[level3], [b'x'; 20]);
    heap.free(top)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t03_destructor_may_move_its_own_object_out_of_a_pool() -> R {
    // test_free_parent_reparent_child_in_pool
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let pool = heap.pool(top, 1024)?;
    let level1 = heap.alloc_str(pool, "level1")?;
    let alternate = heap.alloc_str(top, "alternate_level1")?;
    let level2 = heap.alloc_str(level1, "level2")?;
    let level3 = heap.alloc(level2, [b'x'; 20])?;
    assert!(heap.is_pooled(level3)?);
    reparenting(&mut heap, level3, alternate.erase());
    heap.free(level1)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, level3), Some(alternate.erase()));
    // Even freeing alternate_level1 leaves the pool alone.
    heap.free(alternate)?;
    ok(&heap);
    assert!(heap.contains(pool));
    assert_eq!(heap.pool_usage(pool)?.objects, 1);
    heap.free(top)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    Ok(())
}

#[test]
fn t03_only_one_destructor_a_new_one_replaces_the_old() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.new_context(None)?;
    logged(&mut heap, p, "old", &log);
    logged(&mut heap, p, "new", &log);
    heap.free(p)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["new"]);
    Ok(())
}

// Destructors given as plain functions (`set_destructor_fn`, C's function
// pointer) follow the same rules; they capture nothing, so they log here.
thread_local! {
    static FN_LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn fn_log() -> Vec<String> {
    FN_LOG.with(|l| l.take())
}

fn note(what: String) {
    FN_LOG.with(|l| l.borrow_mut().push(what));
}

/// Logs the string it guards; refuses while it is "keep".
fn guard_str(heap: &mut Talloc, me: Ptr<str>) -> talloc::DestructorResult {
    note(heap[me].to_owned());
    if &heap[me] == "keep" {
        Err(Refused)
    } else {
        Ok(())
    }
}

/// Logs the value it guards, for any type that can show it.
fn show<T: std::fmt::Debug + 'static>(heap: &mut Talloc, me: Ptr<T>) -> talloc::DestructorResult {
    note(format!("{:?}", heap[me]));
    Ok(())
}

#[test]
fn t03_function_destructors_run_and_refuse_like_closures() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let a = heap.alloc_str(top, "a")?;
    let keep = heap.alloc_str(top, "keep")?;
    let b = heap.alloc_str(top, "b")?;
    for p in [a, keep, b] {
        heap.set_destructor_fn(p, guard_str)?;
    }
    heap.free(top)?;
    ok(&heap);
    // Newest child first; the refusing one survives, its destructor kept.
    assert_eq!(fn_log(), ["b", "keep", "a"]);
    assert!(heap.has_destructor(keep)?);
    assert_eq!(heap.free(keep), Err(Error::Refused));
    assert_eq!(fn_log(), ["keep"]);
    heap.clear_destructor(keep)?;
    heap.free(keep)?;
    assert_eq!(fn_log(), Vec::<String>::new());
    Ok(())
}

#[test]
fn t03_a_function_destructor_is_typed_per_object() -> R {
    // One generic function, two instances: each object gets its own type.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let n = heap.alloc(top, 7u32)?;
    let s = heap.alloc(top, String::from("seven"))?;
    heap.set_destructor_fn(n, show::<u32>)?;
    heap.set_destructor_fn(s, show::<String>)?;
    heap.free(top)?;
    ok(&heap);
    assert_eq!(fn_log(), ["\"seven\"", "7"]);
    Ok(())
}

#[test]
fn t03_a_function_destructor_keeps_through_names_references_and_limits() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    // Function first, then what needs a side entry; and the other way.
    let a = heap.alloc_str(top, "a")?;
    heap.set_destructor_fn(a, guard_str)?;
    heap.set_name(a, "named a")?;
    let b = heap.alloc_str(top, "b")?;
    heap.set_memlimit(b, 1 << 20)?;
    heap.set_destructor_fn(b, guard_str)?;
    let owner = heap.new_context(None)?;
    let c = heap.alloc_str(top, "c")?;
    heap.set_destructor_fn(c, guard_str)?;
    heap.reference(owner, c)?;
    ok(&heap);
    heap.free(top)?;
    ok(&heap);
    // c moved to its reference's owner; a and b went.
    assert_eq!(fn_log(), ["b", "a"]);
    assert_eq!(heap.parent(c)?, Some(owner.erase()));
    heap.free(owner)?;
    assert_eq!(fn_log(), ["c"]);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

fn second(_: &mut Talloc, _: Ptr<str>) -> talloc::DestructorResult {
    note("second".into());
    Ok(())
}

fn first_sets_second(heap: &mut Talloc, me: Ptr<str>) -> talloc::DestructorResult {
    note("first".into());
    heap.set_destructor_fn(me, second).unwrap();
    Err(Refused)
}

fn sets_second_and_agrees(heap: &mut Talloc, me: Ptr<str>) -> talloc::DestructorResult {
    note("agrees".into());
    heap.set_destructor_fn(me, second).unwrap();
    Ok(())
}

fn clears_itself(heap: &mut Talloc, me: Ptr<str>) -> talloc::DestructorResult {
    note("clears".into());
    heap.clear_destructor(me).unwrap();
    Err(Refused)
}

fn sets_a_closure(heap: &mut Talloc, me: Ptr<str>) -> talloc::DestructorResult {
    note("function".into());
    heap.set_destructor(me, |_, _| {
        note("closure".into());
        Ok(())
    })
    .unwrap();
    Err(Refused)
}

#[test]
fn t03_a_function_destructor_replaced_or_cleared_by_itself_is_not_restored() -> R {
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor_fn(p, first_sets_second)?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    heap.free(p)?;
    assert_eq!(fn_log(), ["first", "second"]);

    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor_fn(p, clears_itself)?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    assert!(!heap.has_destructor(p)?);
    heap.free(p)?;
    assert_eq!(fn_log(), ["clears"]);

    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor_fn(p, sets_a_closure)?;
    assert_eq!(heap.free(p), Err(Error::Refused));
    ok(&heap);
    heap.free(p)?;
    assert_eq!(fn_log(), ["function", "closure"]);
    ok(&heap);

    // One that sets another and agrees goes: the other never runs.
    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor_fn(p, sets_second_and_agrees)?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(fn_log(), ["agrees"]);
    Ok(())
}

/// An object that frees its partner when it goes.
struct Partner(Option<Ptr<Partner>>);

fn free_partner(heap: &mut Talloc, me: Ptr<Partner>) -> talloc::DestructorResult {
    note("partner".into());
    if let Some(other) = heap[me].0.take() {
        // The same function runs again, nested, for the partner.
        heap.free(other).unwrap();
    }
    Ok(())
}

#[test]
fn t03_a_function_destructor_may_free_an_object_with_the_same_function() -> R {
    let mut heap = Talloc::new();
    let a = heap.alloc(None, Partner(None))?;
    let b = heap.alloc(None, Partner(None))?;
    heap[a].0 = Some(b);
    heap.set_destructor_fn(a, free_partner)?;
    heap.set_destructor_fn(b, free_partner)?;
    heap.free(a)?;
    ok(&heap);
    assert_eq!(fn_log(), ["partner", "partner"]);
    assert_eq!(
        (heap.get(a).err(), heap.get(b).err()),
        (Some(Error::Stale), Some(Error::Stale))
    );
    Ok(())
}

#[test]
fn t03_set_destructor_fn_keeps_pointers_and_copy_state_per_object() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    // A function pointer, and closures whose one type holds different
    // values: none may stand in for another.
    let pointer: fn(&mut Talloc, Ptr<str>) -> talloc::DestructorResult = guard_str;
    let p = heap.alloc_str(top, "pointer")?;
    heap.set_destructor_fn(p, pointer)?;
    for k in [1u32, 2, 3] {
        let c = heap.alloc_str(top, "c")?;
        heap.set_destructor_fn(c, move |_, _| {
            note(format!("closure {k}"));
            Ok(())
        })?;
    }
    // A closure that captures nothing is shared, like a function.
    let s = heap.alloc_str(top, "s")?;
    heap.set_destructor_fn(s, |_, _| {
        note("shared".into());
        Ok(())
    })?;
    ok(&heap);
    heap.free(top)?;
    ok(&heap);
    assert_eq!(
        fn_log(),
        ["shared", "closure 3", "closure 2", "closure 1", "pointer"]
    );
    Ok(())
}

#[test]
fn t03_functions_and_closures_replace_each_other() -> R {
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    heap.set_destructor_fn(p, second)?;
    heap.set_destructor(p, |_, _| {
        note("closure".into());
        Ok(())
    })?;
    heap.set_destructor_fn(p, guard_str)?;
    ok(&heap);
    heap.clear_destructor(p)?;
    assert!(!heap.has_destructor(p)?);
    heap.set_destructor_fn(p, guard_str)?;
    ok(&heap);
    heap.free(p)?;
    assert_eq!(fn_log(), ["p"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// T4. A child that refuses to die during a parent's free.
// ---------------------------------------------------------------------------

#[test]
fn t04_refusing_child_moves_to_grandparent_and_free_succeeds() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let a = heap.alloc_str(p, "a")?;
    let keep = heap.alloc_str(p, "keep")?;
    let kept_kid = heap.alloc_str(keep, "kept kid")?;
    let b = heap.alloc_str(p, "b")?;
    refusing(&mut heap, keep, "keep", &log);
    heap.free(p)?;
    ok(&heap);
    assert!(!heap.contains(p) && !heap.contains(a) && !heap.contains(b));
    assert_eq!(parent_of(&heap, keep), Some(top.erase()));
    // Nothing of the refusing child's subtree was touched.
    assert_eq!(parent_of(&heap, kept_kid), Some(keep.erase()));
    assert_eq!(*log.borrow(), ["keep"]);
    Ok(())
}

#[test]
fn t04_refusing_grandchild_bubbles_up_to_grandparent() -> R {
    // test_free_parent_deny_child: the destructor runs at every level.
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let level1 = heap.alloc_str(top, "level1")?;
    let level2 = heap.alloc_str(level1, "level2")?;
    let level3 = heap.alloc_str(level2, "level3")?;
    refusing(&mut heap, level3, "level3", &log);
    heap.free(level1)?;
    ok(&heap);
    heap.clear_destructor(level3)?;
    assert_eq!(parent_of(&heap, level3), Some(top.erase()));
    assert_eq!(*log.borrow(), ["level3", "level3"]);
    assert!(!heap.contains(level1) && !heap.contains(level2));
    heap.free(top)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t04_refusing_great_grandchild_is_asked_once_per_level() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let l1 = heap.new_context(top)?;
    let l2 = heap.new_context(l1)?;
    let l3 = heap.new_context(l2)?;
    let l4 = heap.new_context(l3)?;
    refusing(&mut heap, l4, "l4", &log);
    heap.free(l1)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, l4), Some(top.erase()));
    assert_eq!(log.borrow().len(), 3);
    Ok(())
}

#[test]
fn t04_grandparent_rule_even_when_freed_object_is_not_the_newest_child() -> R {
    // C sends the survivor to the top level here (docs/src/rules.md, T4).
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let older = heap.new_context(top)?;
    let keep = heap.alloc_str(older, "keep")?;
    let deep = heap.new_context(older)?;
    let deep_keep = heap.alloc_str(deep, "deep keep")?;
    let newest = heap.new_context(top)?;
    refusing(&mut heap, keep, "keep", &log);
    refusing(&mut heap, deep_keep, "deep keep", &log);
    heap.free(older)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, keep), Some(top.erase()));
    assert_eq!(parent_of(&heap, deep_keep), Some(top.erase()));
    assert_eq!(parent_of(&heap, newest), Some(top.erase()));
    assert_eq!(heap.top_level().collect::<Vec<_>>(), [top.erase()]);
    Ok(())
}

#[test]
fn t04_refusing_child_of_a_top_level_object_becomes_top_level() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.new_context(None)?;
    let keep = heap.alloc_str(p, "keep")?;
    refusing(&mut heap, keep, "keep", &log);
    heap.free(p)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, keep), None);
    assert_eq!(heap.top_level().collect::<Vec<_>>(), [keep.erase()]);
    Ok(())
}

#[test]
fn t04_child_rehomed_by_its_destructor_is_not_moved_again() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let shelter = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let mid = heap.new_context(p)?;
    let c = heap.alloc_str(mid, "c")?;
    reparenting(&mut heap, c, shelter.erase());
    heap.free(p)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, c), Some(shelter.erase()));
    Ok(())
}

#[test]
fn t04_referenced_child_goes_to_its_reference_owner_first() -> R {
    // Priority 1 of the three choices: the owner of the child's head reference.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let owner = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let c = heap.alloc_str(p, "c")?;
    heap.reference(owner, c)?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, c), Some(owner.erase()));
    assert_eq!(heap.reference_count(c)?, 0);
    Ok(())
}

#[test]
fn t04_free_children_survivors_go_to_the_objects_parent() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let top = heap.new_context(None)?;
    let p = heap.new_context(top)?;
    let keep = heap.alloc_str(p, "keep")?;
    let mid = heap.new_context(p)?;
    let deep_keep = heap.alloc_str(mid, "deep keep")?;
    let lose = heap.alloc_str(p, "lose")?;
    refusing(&mut heap, keep, "keep", &log);
    refusing(&mut heap, deep_keep, "deep keep", &log);
    heap.free_children(p)?;
    ok(&heap);
    assert!(heap.contains(p));
    assert!(kids(&heap, p).is_empty());
    assert!(!heap.contains(lose) && !heap.contains(mid));
    assert_eq!(parent_of(&heap, keep), Some(top.erase()));
    assert_eq!(parent_of(&heap, deep_keep), Some(top.erase()));
    Ok(())
}

// ---------------------------------------------------------------------------
// T5. References.
// ---------------------------------------------------------------------------

#[test]
fn t05_ref1_unlink_removes_only_the_reference() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "p1");
    let p2 = named_buf(&mut heap, p1, 1, "p2");
    named_buf(&mut heap, p1, 1, "x1");
    named_buf(&mut heap, p1, 2, "x2");
    named_buf(&mut heap, p1, 3, "x3");
    let r1 = named_buf(&mut heap, root, 1, "r1");
    heap.reference(r1, p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 5);
    assert_eq!(heap.total_blocks(p2)?, 1);
    assert_eq!(heap.total_blocks(r1)?, 2);
    assert_eq!(heap.reference_count(p2)?, 1);

    heap.unlink(r1, p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 5);
    assert_eq!(heap.total_blocks(p2)?, 1);
    assert_eq!(heap.total_blocks(r1)?, 1);

    heap.free(p1)?;
    ok(&heap);
    assert!(!heap.contains(p2));
    assert_eq!(heap.total_blocks(r1)?, 1);
    heap.free(r1)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, 1);
    assert_eq!(heap.total_size(root)?, 0);
    heap.free(root)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t05_ref2_free_after_removing_the_reference() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "p1");
    named_buf(&mut heap, p1, 1, "x1");
    named_buf(&mut heap, p1, 1, "x2");
    named_buf(&mut heap, p1, 1, "x3");
    let p2 = named_buf(&mut heap, p1, 1, "p2");
    let r1 = named_buf(&mut heap, root, 1, "r1");
    let reference = heap.reference(r1, p2)?;
    assert_eq!(reference, p2); // as C, the call returns the referenced object
    assert_eq!(heap.total_blocks(r1)?, 2);
    heap.unlink(r1, reference)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 5);
    assert_eq!(heap.total_blocks(r1)?, 1);
    heap.free(p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 4);
    heap.free(p1)?;
    heap.free(r1)?;
    ok(&heap);
    assert_eq!(heap.total_size(root)?, 0);
    Ok(())
}

#[test]
fn t05_ref3_freeing_the_parent_hands_the_child_to_the_reference_owner() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "p1");
    let p2 = named_buf(&mut heap, root, 1, "p2");
    let r1 = named_buf(&mut heap, p1, 1, "r1");
    heap.reference(p2, r1)?;
    assert_eq!(heap.total_blocks(p1)?, 2);
    assert_eq!(heap.total_blocks(p2)?, 2);
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, r1), Some(p2.erase()));
    assert_eq!(heap.total_blocks(p2)?, 2); // the handle became the parent link
    assert_eq!(heap.reference_count(r1)?, 0);
    heap.free(p2)?;
    ok(&heap);
    assert!(!heap.contains(r1));
    assert_eq!(heap.total_size(root)?, 0);
    Ok(())
}

#[test]
fn t05_ref4_freeing_the_referrer_frees_only_the_handle() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "p1");
    named_buf(&mut heap, p1, 1, "x1");
    named_buf(&mut heap, p1, 1, "x2");
    named_buf(&mut heap, p1, 1, "x3");
    let p2 = named_buf(&mut heap, p1, 1, "p2");
    let r1 = named_buf(&mut heap, root, 1, "r1");
    heap.reference(r1, p2)?;
    heap.free(r1)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 5);
    assert_eq!(heap.total_blocks(p2)?, 1);
    assert_eq!(heap.reference_count(p2)?, 0);
    heap.free(p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 4);
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(heap.total_size(root)?, 0);
    Ok(())
}

#[test]
fn t05_unlink1_reference_owned_inside_the_same_subtree() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "p1");
    named_buf(&mut heap, p1, 1, "x1");
    named_buf(&mut heap, p1, 1, "x2");
    named_buf(&mut heap, p1, 1, "x3");
    let p2 = named_buf(&mut heap, p1, 1, "p2");
    let r1 = named_buf(&mut heap, p1, 1, "r1");
    heap.reference(r1, p2)?;
    assert_eq!(heap.total_blocks(p1)?, 7);
    assert_eq!(heap.total_blocks(r1)?, 2);
    heap.unlink(r1, p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 6);
    assert_eq!(heap.total_blocks(r1)?, 1);
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(heap.total_size(root)?, 0);
    assert_eq!(heap.total_blocks(root)?, 1);
    Ok(())
}

#[test]
fn t05_unlink_from_a_non_parent_fails_and_from_the_parent_frees() -> R {
    // test_misc
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_str(root, "foo")?;
    let p2 = heap.alloc_str(p1, "foo")?;
    assert_eq!(heap.unlink(root, p2), Err(Error::NotAParent));
    ok(&heap);
    assert!(heap.contains(p2));
    heap.unlink(p1, p2)?;
    ok(&heap);
    assert!(!heap.contains(p2));
    Ok(())
}

#[test]
fn t05_ownerless_references_count_and_unlink_one_at_a_time() -> R {
    // test_misc: talloc_increase_ref_count three times, unlink(NULL, p1).
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_str(root, "foo")?;
    for _ in 0..3 {
        heap.increase_ref_count(p1)?;
    }
    ok(&heap);
    assert_eq!(heap.reference_count(p1)?, 3);
    assert_eq!(heap.total_blocks(p1)?, 1);
    assert_eq!(heap.total_blocks(root)?, 2);
    for left in [2, 1, 0] {
        heap.unlink(None, p1)?;
        ok(&heap);
        assert_eq!(heap.reference_count(p1)?, left);
        assert_eq!(heap.total_blocks(root)?, 2);
        assert!(heap.contains(p1));
    }
    Ok(())
}

#[test]
fn t05_unlink_by_the_parent_hands_over_to_the_reference_owner() -> R {
    // test_misc: reference(p1, p2); unlink(root, p2).
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = named_buf(&mut heap, root, 10, "p1");
    let p2 = named_buf(&mut heap, root, 20, "p2");
    heap.reference(p1, p2)?;
    heap.unlink(root, p2)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, p2), Some(p1.erase()));
    assert_eq!(heap.total_blocks(p2)?, 1);
    assert_eq!(heap.total_blocks(p1)?, 2);
    assert_eq!(heap.total_blocks(root)?, 3);
    heap.unlink(p1, p2)?;
    heap.unlink(root, p1)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, 1);

    // The same with an ownerless reference: p2 goes to the top level.
    let p1 = named_buf(&mut heap, root, 10, "p1");
    let p2 = named_buf(&mut heap, root, 20, "p2");
    heap.reference(None, p2)?;
    heap.unlink(root, p2)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, p2), None);
    assert_eq!(heap.total_blocks(p2)?, 1);
    assert_eq!(heap.total_blocks(root)?, 2);
    heap.unlink(None, p2)?;
    heap.unlink(root, p1)?;
    ok(&heap);
    assert!(!heap.contains(p2));
    assert_eq!(heap.total_size(root)?, 0);
    Ok(())
}

#[test]
fn t05_free_of_a_referenced_object_is_refused() -> R {
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let (a, b) = (heap.new_context(None)?, heap.new_context(None)?);
    let x = heap.alloc_str(root, "x")?;
    heap.reference(a, x)?;
    heap.reference(b, x)?;
    assert_eq!(heap.free(x), Err(Error::HasReferences { count: 2 }));
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(root.erase()));
    assert_eq!(heap.reference_count(x)?, 2);
    Ok(())
}

#[test]
fn t05_free_of_a_top_level_object_with_one_reference_hands_it_over() -> R {
    // test_free_ref_null_context
    let mut heap = Talloc::new();
    let p1 = heap.new_context(None)?;
    let p2 = heap.new_context(None)?;
    assert_eq!(heap.reference(p2, p1)?, p1);
    heap.free(p1)?;
    ok(&heap);
    assert!(heap.contains(p1));
    assert_eq!(parent_of(&heap, p1), Some(p2.erase()));
    assert_eq!(heap.reference_count(p1)?, 0);
    heap.free(p2)?;
    ok(&heap);
    assert!(!heap.contains(p1));
    Ok(())
}

#[test]
fn t05_free_of_a_top_level_object_with_one_ownerless_reference_drops_it() -> R {
    // C behaves the same (docs/src/rules.md, T5): only the reference goes.
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    heap.increase_ref_count(p)?;
    heap.free(p)?;
    ok(&heap);
    assert!(heap.contains(p));
    assert_eq!(parent_of(&heap, p), None);
    assert_eq!(heap.reference_count(p)?, 0);
    heap.free(p)?;
    ok(&heap);
    assert!(!heap.contains(p));
    Ok(())
}

#[test]
fn t05_unref_reparent_the_reference_becomes_the_parent_link() -> R {
    let mut heap = Talloc::new();
    let root = named(&mut heap, None, "root");
    let p1 = named_buf(&mut heap, root, 1, "orig parent");
    let p2 = named_buf(&mut heap, root, 1, "parent by reference");
    let c1 = named_buf(&mut heap, p1, 1, "child");
    heap.reference(p2, c1)?;
    assert_eq!(parent_of(&heap, c1), Some(p1.erase()));
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, c1), Some(p2.erase()));
    heap.unlink(p2, c1)?;
    ok(&heap);
    assert_eq!(heap.total_size(root)?, 1);
    heap.free(p2)?;
    heap.free(root)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t05_newest_reference_wins() -> R {
    let mut heap = Talloc::new();
    let (old, new) = (heap.new_context(None)?, heap.new_context(None)?);
    let p = heap.new_context(None)?;
    let c = heap.alloc_str(p, "c")?;
    heap.reference(old, c)?;
    heap.reference(new, c)?;
    heap.free(p)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, c), Some(new.erase()));
    assert_eq!(heap.reference_count(c)?, 1); // the older reference stays
    heap.free(new)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, c), Some(old.erase()));
    Ok(())
}

#[test]
fn t05_reference_handles_are_children_of_the_owner() -> R {
    let mut heap = Talloc::new();
    let owner = heap.new_context(None)?;
    let x = heap.alloc_zeroed(None, 5)?;
    heap.reference(owner, x)?;
    let handle = kids(&heap, owner)[0];
    assert_eq!(heap.name(handle)?, REFERENCE_NAME);
    assert_eq!(heap.size(handle)?, 0);
    // A handle is not a parent for new objects.
    assert_eq!(
        heap.alloc_str(handle, "no").map(|_| ()),
        Err(Error::IsReference)
    );
    ok(&heap);
    Ok(())
}

#[test]
fn t05_loop_reference_owned_by_a_descendant_is_dropped() -> R {
    // test_loop: the descendant's destructor fires exactly once.
    let mut heap = Talloc::new();
    let count = Rc::new(Cell::new(0));
    let top = heap.new_context(None)?;
    let parent = heap.alloc_str(top, "parent")?;
    let req1 = heap.alloc(parent, 0u64)?;
    let req2 = heap.alloc_str(req1, "req2")?;
    let c = count.clone();
    heap.set_destructor(req2, move |_, _| {
        c.set(c.get() + 1);
        Ok(())
    })?;
    let req3 = heap.alloc_str(req1, "req3")?;
    heap.reference(req3, req1)?;
    heap.free(parent)?;
    ok(&heap);
    assert!(!heap.contains(req1) && !heap.contains(req3));
    assert_eq!(heap.total_blocks(top)?, 1);
    heap.free(top)?;
    ok(&heap);
    assert_eq!(count.get(), 1);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t05_lifeless_reference_cycle_unlinks_without_making_a_loop() -> R {
    // test_lifeless: C only checks that nothing crashes; C's unlink steals
    // `parent` under its own child and leaks both. Here no step may leave a
    // parent cycle, and nothing may leak.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let child_owner = heap.new_context(None)?;
    let parent = heap.alloc_str(top, "parent")?;
    let child = heap.alloc_str(parent, "child")?;
    heap.reference(child, parent)?;
    heap.reference(child_owner, child)?;
    let _ = heap.unlink(top, parent);
    ok(&heap);
    let _ = heap.unlink(top, child);
    ok(&heap);
    heap.free(top)?;
    ok(&heap);
    heap.free(child_owner)?;
    ok(&heap);
    let _ = heap.free(child);
    let _ = heap.free(parent);
    ok(&heap);
    assert_eq!(
        heap.live_objects(),
        0,
        "{}",
        heap.leak_report_text(LeakReport::Full)
    );
    Ok(())
}

#[test]
fn t05_free_in_destructor_with_self_and_inner_references() -> R {
    // test_talloc_free_in_destructor
    let mut heap = Talloc::new();
    let level0 = heap.new_context(None)?;
    let level1 = heap.new_context(level0)?;
    let level2 = heap.new_context(level1)?;
    let level3 = heap.new_context(level2)?;
    let level4 = heap.new_context(level3)?;
    let level5 = heap.alloc(level4, level3.erase())?;
    heap.reference(level0, level3)?;
    heap.reference(level3, level3)?;
    heap.reference(level5, level3)?;
    heap.set_destructor(level5, |heap, me| {
        let target = heap[me];
        let _ = heap.free(target); // refused or ignored: no crash either way
        Ok(())
    })?;
    heap.free(level1)?;
    ok(&heap);
    heap.free(level0)?;
    ok(&heap);
    let _ = heap.free(level3);
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t05_rusty_ownerless_reference_keeps_the_child_at_top_level() -> R {
    // test_rusty: C leaves the child under the null context.
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_str(root, "foo")?;
    heap.increase_ref_count(p1)?;
    heap.free(root)?;
    ok(&heap);
    assert!(heap.contains(p1));
    assert_eq!(heap.top_level().collect::<Vec<_>>(), [p1.erase()]);
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// T6. steal.
// ---------------------------------------------------------------------------

#[test]
fn t06_steal_moves_subtrees_and_accounting() -> R {
    // test_steal
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_zeroed(root, 10)?;
    let p2 = heap.alloc_zeroed(root, 20)?;
    assert_eq!(heap.total_size(root)?, 30);
    heap.steal(None, p1)?;
    heap.steal(None, p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, 1);
    assert_eq!(heap.total_size(root)?, 0);
    assert_eq!(parent_of(&heap, p1), None);
    heap.free(p1)?;
    heap.steal(root, p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, 2);
    assert_eq!(heap.total_size(root)?, 20);
    heap.free(p2)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(root)?, 1);
    assert_eq!(heap.total_size(root)?, 0);
    Ok(())
}

#[test]
fn t06_steal_to_itself_is_refused() -> R {
    // C: stealing to ourselves is a no-op that returns the pointer.
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_zeroed(root, 10)?;
    assert_eq!(heap.steal(p1, p1), Err(Error::Loop));
    ok(&heap);
    assert_eq!(parent_of(&heap, p1), Some(root.erase()));
    assert_eq!(heap.total_blocks(root)?, 2);
    assert_eq!(heap.total_size(root)?, 10);
    Ok(())
}

#[test]
fn t06_steal_with_references_replaces_only_the_primary_parent() -> R {
    let mut heap = Talloc::new();
    let (a, b, owner) = (
        heap.new_context(None)?,
        heap.new_context(None)?,
        heap.new_context(None)?,
    );
    let x = heap.alloc_str(a, "x")?;
    heap.reference(owner, x)?;
    heap.steal(b, x)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(b.erase()));
    assert_eq!(heap.reference_count(x)?, 1);
    assert_eq!(heap.total_blocks(owner)?, 2);
    heap.free(b)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(owner.erase()));
    Ok(())
}

#[test]
fn t06_steal_of_a_whole_subtree_is_one_relink() -> R {
    let mut heap = Talloc::new();
    let (a, b) = (heap.new_context(None)?, heap.new_context(None)?);
    let sub = heap.new_context(a)?;
    for i in 0..100 {
        let k = heap.alloc_zeroed(sub, i)?;
        heap.alloc_str(k, "leaf")?;
    }
    let blocks = heap.total_blocks(sub)?;
    let size = heap.total_size(sub)?;
    heap.steal(b, sub)?;
    ok(&heap);
    assert_eq!(heap.total_blocks(b)?, blocks + 1);
    assert_eq!(heap.total_size(b)?, size);
    assert_eq!(heap.total_blocks(a)?, 1);
    Ok(())
}

// ---------------------------------------------------------------------------
// T7. Loops.
// ---------------------------------------------------------------------------

#[test]
fn t07_steal_under_own_child_is_refused() -> R {
    // C makes a detached 2-cycle that leaks.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let a = heap.new_context(top)?;
    let b = heap.new_context(a)?;
    assert_eq!(heap.steal(b, a), Err(Error::Loop));
    ok(&heap);
    assert_eq!(parent_of(&heap, a), Some(top.erase()));
    assert_eq!(parent_of(&heap, b), Some(a.erase()));
    assert_eq!(heap.total_blocks(top)?, 3);
    Ok(())
}

#[test]
fn t07_steal_under_deep_descendant_is_refused() -> R {
    let mut heap = Talloc::new();
    let a = heap.new_context(None)?;
    let mut deepest = a.erase();
    for _ in 0..50 {
        deepest = heap.new_context(deepest)?.erase();
    }
    assert_eq!(heap.steal(deepest, a), Err(Error::Loop));
    assert_eq!(heap.steal_any(deepest, a.erase()), Err(Error::Loop));
    ok(&heap);
    assert_eq!(parent_of(&heap, a), None);
    assert_eq!(heap.total_blocks(a)?, 51);
    Ok(())
}

// ---------------------------------------------------------------------------
// T8. move.
// ---------------------------------------------------------------------------

#[test]
fn t08_move_transfers_and_clears_the_handle() -> R {
    // test_move
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let t1 = heap.new_context(root)?;
    let t2 = heap.new_context(root)?;
    let mut p = Some(heap.alloc_str(t1, "foo")?);
    let mut x = Some(heap.alloc(t1, 42i32)?);
    let p2 = heap.move_to_parent(t2, &mut p)?;
    let x2 = heap.move_to_parent(t2, &mut x)?;
    ok(&heap);
    assert!(p.is_none() && x.is_none());
    assert_eq!(&heap[p2], "foo");
    assert_eq!(heap[x2], 42);
    assert_eq!(parent_of(&heap, p2), Some(t2.erase()));
    assert_eq!(heap.total_blocks(t1)?, 1);
    heap.free(root)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t08_failed_move_keeps_the_handle() -> R {
    let mut heap = Talloc::new();
    let a = heap.new_context(None)?;
    let b = heap.new_context(a)?;
    let mut h = Some(a);
    assert_eq!(heap.move_to_parent(b, &mut h), Err(Error::Loop));
    ok(&heap);
    assert_eq!(h, Some(a));
    Ok(())
}

// ---------------------------------------------------------------------------
// T9. reparent.
// ---------------------------------------------------------------------------

#[test]
fn t09_reparent_from_the_parent_is_a_steal() -> R {
    let mut heap = Talloc::new();
    let (a, b) = (heap.new_context(None)?, heap.new_context(None)?);
    let x = heap.alloc_str(a, "x")?;
    assert_eq!(heap.reparent(a, b, x)?, x);
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(b.erase()));
    Ok(())
}

#[test]
fn t09_reparent_from_a_reference_owner_moves_the_reference() -> R {
    let mut heap = Talloc::new();
    let (a, b, c) = (
        heap.new_context(None)?,
        heap.new_context(None)?,
        heap.new_context(None)?,
    );
    let x = heap.alloc_str(a, "x")?;
    heap.reference(b, x)?;
    heap.reparent(b, c, x)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(a.erase()));
    assert_eq!(heap.total_blocks(b)?, 1);
    assert_eq!(heap.total_blocks(c)?, 2);
    heap.free(a)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(c.erase()));
    Ok(())
}

#[test]
fn t09_reparent_from_a_stranger_fails() -> R {
    let mut heap = Talloc::new();
    let (a, b, c) = (
        heap.new_context(None)?,
        heap.new_context(None)?,
        heap.new_context(None)?,
    );
    let x = heap.alloc_str(a, "x")?;
    assert_eq!(heap.reparent(b, c, x), Err(Error::NotAParent));
    ok(&heap);
    assert_eq!(parent_of(&heap, x), Some(a.erase()));
    Ok(())
}

// ---------------------------------------------------------------------------
// T10. Pools.
// ---------------------------------------------------------------------------

#[test]
fn t10_pool_members_are_carved_and_counted() -> R {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024)?;
    assert_eq!(heap.size(pool)?, 0);
    assert_eq!(
        heap.pool_usage(pool)?,
        talloc::PoolUsage {
            size: 1024,
            used: 0,
            objects: 1
        }
    );
    let p1 = heap.alloc_zeroed(pool, 80)?;
    let p2 = heap.alloc_zeroed(pool, 20)?;
    let p3 = heap.alloc_zeroed(p1, 50)?; // a descendant of a member is carved too
    ok(&heap);
    for p in [p1, p2, p3] {
        assert!(heap.is_pooled(p)?);
    }
    assert_eq!(heap.pool_usage(pool)?.objects, 4);
    assert_eq!(heap.total_size(pool)?, 150);
    // Too big for what is left: allocated normally, the pool intact.
    let p4 = heap.alloc_zeroed(p3, 1000)?;
    ok(&heap);
    assert!(!heap.is_pooled(p4)?);
    assert_eq!(heap.pool_usage(pool)?.objects, 4);
    heap.free(pool)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    Ok(())
}

#[test]
fn t10_freeing_the_last_member_rewinds_and_the_only_member_resets() -> R {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024)?;
    let a = heap.alloc_zeroed(pool, 64)?;
    let b = heap.alloc_zeroed(pool, 64)?;
    let used = heap.pool_usage(pool)?.used;
    assert!(used >= 128);
    heap.free(b)?;
    ok(&heap);
    assert!(heap.pool_usage(pool)?.used < used);
    assert_eq!(heap.pool_usage(pool)?.objects, 2);
    heap.free(a)?;
    ok(&heap);
    assert_eq!(
        heap.pool_usage(pool)?,
        talloc::PoolUsage {
            size: 1024,
            used: 0,
            objects: 1
        }
    );
    Ok(())
}

#[test]
fn t10_pool_steal_member_outlives_the_pool() -> R {
    // test_pool_steal
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let pool = heap.pool(root, 1024)?;
    let p1 = heap.alloc(pool, [0x11u8; 64])?;
    let p2 = heap.alloc(pool, [0x22u8; 64])?;
    heap.steal(root, p1)?;
    heap.steal(root, p2)?;
    heap.free(pool)?;
    ok(&heap);
    assert!(!heap.contains(pool));
    assert_eq!(heap.pool_regions(), 1, "the members keep the region");
    assert_eq!(heap[p1], [0x11; 64]);
    assert_eq!(heap[p2], [0x22; 64]);
    heap.free(p1)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 1);
    heap.free(p2)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    heap.free(root)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t10_member_outliving_its_pool_is_never_overwritten() -> R {
    // C resets a pool's bump pointer only while the pool itself is alive.
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024)?;
    let a = heap.alloc(pool, [1u64; 8])?;
    heap.alloc(pool, [3u64; 8])?;
    heap.steal(None, a)?;
    heap.free(pool)?;
    ok(&heap);
    // New children of the survivor may still come from the region, but
    // never on top of the survivor itself.
    let c = heap.alloc(a, [2u64; 8])?;
    ok(&heap);
    assert_eq!(heap[a], [1u64; 8]);
    assert_eq!(heap[c], [2u64; 8]);
    Ok(())
}

#[test]
fn t10_pool_nest_member_of_inner_pool_survives_both_pools() -> R {
    // test_pool_nest
    let mut heap = Talloc::new();
    let e = heap.new_context(None)?;
    let p1 = heap.pool(None, 1024)?;
    let p2 = heap.pool(p1, 500)?;
    let p3 = heap.alloc(p2, [7u8; 10])?;
    assert!(heap.is_pooled(p3)?);
    heap.steal(e, p3)?;
    heap.free(p2)?;
    ok(&heap);
    assert_eq!(heap[p3], [7u8; 10]);
    heap.free(p3)?;
    heap.free(p1)?;
    heap.free(e)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    assert_eq!(heap.live_objects(), 0);

    // The other order: outer pool first.
    let p1 = heap.pool(None, 1024)?;
    let p2 = heap.pool(p1, 500)?;
    let p3 = heap.alloc(p2, [7u8; 10])?;
    heap.steal(None, p3)?;
    heap.free(p1)?;
    ok(&heap);
    assert!(!heap.contains(p2));
    assert_eq!(heap[p3], [7u8; 10]);
    heap.free(p3)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    Ok(())
}

#[test]
fn t10_realloc_of_a_member_shrinks_in_place_and_grows_out_of_the_pool() -> R {
    // C grows a member in place when it is the last one; here growth moves it.
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024)?;
    let p = heap.alloc_slice(pool, &[9u8; 40])?;
    heap.realloc(p, 19)?;
    ok(&heap);
    assert!(heap.is_pooled(p)?);
    assert_eq!(&heap[p], &[9u8; 19]);
    heap.realloc(p, 1800)?;
    ok(&heap);
    assert!(!heap.is_pooled(p)?);
    assert_eq!(&heap[p][..19], &[9u8; 19]);
    assert_eq!(heap.pool_usage(pool)?.objects, 1);
    assert_eq!(parent_of(&heap, p), Some(pool.erase()));
    Ok(())
}

#[repr(align(64))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Aligned64(u8);

#[test]
fn t10_pool_carving_respects_alignment() {
    // A misaligned value is undefined behaviour, which a debug build may turn
    // into an abort: run the check in a child process. Miri, which cannot
    // spawn one, reports a misaligned access itself.
    const CHILD: &str = "TALLOC_RULES_ALIGN_CHILD";
    if cfg!(miri) || std::env::var_os(CHILD).is_some() {
        let mut heap = Talloc::new();
        let mut pad = Vec::new();
        for i in 0..16usize {
            pad.push(vec![0u8; 16 + 8 * i]); // vary where regions start
            let pool = heap.pool(None, 200 + 16 * i).unwrap();
            heap.alloc(pool, [0u8; 40]).unwrap();
            let p = heap.alloc(pool, Aligned64(i as u8)).unwrap();
            let addr = std::hint::black_box(std::ptr::addr_of!(heap[p]) as usize);
            assert_eq!(addr % 64, 0, "pool member of align 64 at {addr:#x}");
            assert_eq!(heap[p], Aligned64(i as u8));
        }
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "t10_pool_carving_respects_alignment",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// T11. pooled_object.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Pooled {
    s1: Option<Ptr<str>>,
    s2: Option<Ptr<str>>,
    s3: Option<Ptr<str>>,
}

#[test]
fn t11_pooled_object_carves_its_sub_objects() -> R {
    // test_pooled_object
    let mut heap = Talloc::new();
    let (s1, s2, s3) = ("hello", "world", "");
    let p = heap.pooled_object(
        None,
        Pooled::default(),
        3,
        s1.len() + s2.len() + s3.len() + 3,
    )?;
    assert_eq!(heap.size(p)?, std::mem::size_of::<Pooled>());
    assert!(heap.name(p)?.ends_with("Pooled"));
    for _ in 0..2 {
        let s = heap.alloc_str(p, s1)?;
        assert!(heap.is_pooled(s)?);
        heap.free(s)?;
        ok(&heap);
    }
    let a = heap.alloc_str(p, s1)?;
    let b = heap.alloc_str(p, s2)?;
    let c = heap.alloc_str(p, s3)?;
    heap[p] = Pooled {
        s1: Some(a),
        s2: Some(b),
        s3: Some(c),
    };
    ok(&heap);
    for s in [a, b, c] {
        assert!(heap.is_pooled(s)?, "all three fit in the pooled object");
    }
    assert_eq!(&heap[heap[p].s2.unwrap()], "world");
    assert!(heap[p].s1.is_some() && heap[p].s3.is_some());
    heap.free(p)?;
    ok(&heap);
    assert_eq!(heap.pool_regions(), 0);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// T12. free_children.
// ---------------------------------------------------------------------------

#[test]
fn t12_free_children_keeps_the_name_chunk() -> R {
    // test_free_children
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_str(root, "foo1")?;
    let p2 = heap.alloc_str(p1, "foo2")?;
    heap.set_name(p1, format_args!("{}", "testname"))?;
    heap.free_children(p1)?;
    ok(&heap);
    assert!(!heap.contains(p2));
    assert_eq!(heap.name(p1)?, "testname");
    assert_eq!(heap.total_blocks(p1)?, 2);
    let chunk = kids(&heap, p1)[0];
    assert_eq!(heap.name(chunk)?, NAME_CHUNK_NAME);
    // A second time, same result.
    heap.free_children(p1)?;
    ok(&heap);
    assert_eq!(heap.name(p1)?, "testname");
    assert_eq!(heap.total_blocks(p1)?, 2);
    Ok(())
}

#[test]
fn t12_set_name_const_frees_the_old_name_chunk_at_once() -> R {
    // C keeps the old name chunk until free_children (or the owner) frees it.
    let mut heap = Talloc::new();
    let p1 = heap.alloc_str(None, "foo1")?;
    heap.set_name(p1, format_args!("{}", "testname"))?;
    assert_eq!(heap.total_blocks(p1)?, 2);
    heap.set_name_const(p1, "testname2")?;
    ok(&heap);
    assert_eq!(heap.total_blocks(p1)?, 1);
    heap.free_children(p1)?;
    ok(&heap);
    assert_eq!(heap.name(p1)?, "testname2");
    assert_eq!(heap.total_blocks(p1)?, 1);
    Ok(())
}

#[test]
fn t12_free_children_runs_destructors_in_free_order() -> R {
    let mut heap = Talloc::new();
    let log = new_log();
    let p = heap.new_context(None)?;
    logged(&mut heap, p, "P", &log);
    let a = heap.new_context(p)?;
    let b = heap.new_context(p)?;
    let a1 = heap.new_context(a)?;
    logged(&mut heap, a, "A", &log);
    logged(&mut heap, b, "B", &log);
    logged(&mut heap, a1, "a1", &log);
    heap.free_children(p)?;
    ok(&heap);
    assert_eq!(*log.borrow(), ["B", "A", "a1"]);
    assert!(heap.contains(p));
    assert_eq!(heap.total_blocks(p)?, 1);
    Ok(())
}

// ---------------------------------------------------------------------------
// T13. Magic, double free, use after free: typed errors here.
// ---------------------------------------------------------------------------

#[test]
fn t13_double_free_is_a_stale_error() -> R {
    // C aborts ("Bad talloc magic value - access after free").
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    heap.free(p)?;
    assert_eq!(heap.free(p), Err(Error::Stale));
    ok(&heap);
    Ok(())
}

#[test]
fn t13_use_after_free_is_a_stale_error() -> R {
    let mut heap = Talloc::new();
    let p = heap.new_context(None)?;
    let kid = heap.alloc(p, 5u32)?;
    heap.free(p)?;
    assert_eq!(heap.get(kid), Err(Error::Stale));
    assert_eq!(heap.get_mut(kid).map(|_| ()), Err(Error::Stale));
    assert_eq!(heap.name(kid), Err(Error::Stale));
    assert_eq!(heap.parent(kid), Err(Error::Stale));
    assert_eq!(heap.steal(None, kid), Err(Error::Stale));
    assert_eq!(
        heap.alloc(kid, 1u8).map(|_| ()).map_err(Error::from),
        Err(Error::Stale)
    );
    assert!(!heap.contains(kid));
    ok(&heap);
    Ok(())
}

#[test]
fn t13_reused_slot_does_not_revive_an_old_handle() -> R {
    let mut heap = Talloc::new();
    let old = heap.alloc(None, 1u32)?;
    heap.free(old)?;
    let new = heap.alloc(None, 2u32)?; // very likely the same slot
    assert_ne!(old, new);
    assert_eq!(heap.get(old), Err(Error::Stale));
    assert_eq!(heap.free(old), Err(Error::Stale));
    assert_eq!(heap[new], 2);
    // Even with another type in the slot, the old handle is just stale.
    heap.free(new)?;
    let s = heap.alloc_str(None, "str")?;
    assert_eq!(heap.get(new), Err(Error::Stale));
    assert_eq!(&heap[s], "str");
    ok(&heap);
    Ok(())
}

#[test]
fn t13_handle_from_another_heap_is_detected() -> R {
    let mut a = Talloc::new();
    let mut b = Talloc::new();
    let pa = a.alloc(None, 1u32)?;
    let pb = b.alloc(None, 2u32)?;
    assert_eq!(b.get(pa), Err(Error::ForeignHeap));
    assert_eq!(b.free(pa), Err(Error::ForeignHeap));
    assert_eq!(b.steal(pb, pa), Err(Error::ForeignHeap));
    assert_eq!(b.steal(pa, pb), Err(Error::ForeignHeap));
    assert_eq!(
        b.alloc(pa, 0u8).map(|_| ()).map_err(Error::from),
        Err(Error::ForeignHeap)
    );
    ok(&a);
    ok(&b);
    assert_eq!(a[pa], 1);
    assert_eq!(b[pb], 2);
    Ok(())
}

#[test]
fn t13_realloc_keeps_the_handle_valid() -> R {
    // C: the old pointer after a moving realloc aborts on use.
    let mut heap = Talloc::new();
    let p = heap.alloc_slice(None, &[1u8, 2, 3])?;
    let before = p;
    heap.realloc(p, 10_000)?;
    ok(&heap);
    assert_eq!(&heap[before][..3], &[1, 2, 3]);
    Ok(())
}

// ---------------------------------------------------------------------------
// T14. total_size / total_blocks.
// ---------------------------------------------------------------------------

#[test]
fn t14_named_chunk_counts_in_both_totals() -> R {
    let mut heap = Talloc::new();
    let s = heap.alloc_zeroed(None, 10)?;
    heap.set_name(s, format_args!("named {}", 1))?;
    assert_eq!(heap.total_size(s)?, 18);
    assert_eq!(heap.total_blocks(s)?, 2);
    heap.set_name_const(s, "const")?;
    assert_eq!(heap.total_size(s)?, 10);
    assert_eq!(heap.total_blocks(s)?, 1);
    ok(&heap);
    Ok(())
}

#[test]
fn t14_reference_handles_count_as_blocks_not_bytes() -> R {
    let mut heap = Talloc::new();
    let p = heap.alloc_zeroed(None, 5)?;
    let other = heap.alloc_zeroed(None, 100)?;
    heap.reference(p, other)?;
    assert_eq!(heap.total_size(p)?, 5);
    assert_eq!(heap.total_blocks(p)?, 2);
    // The referenced object counts only under its own parent.
    assert_eq!(heap.total_size(other)?, 100);
    ok(&heap);
    Ok(())
}

#[test]
fn t14_sizes_of_each_kind() -> R {
    let mut heap = Talloc::new();
    let ctx = heap.new_context(None)?;
    assert_eq!(heap.size(ctx)?, 0);
    let s = heap.alloc_str(ctx, "hello")?;
    assert_eq!(heap.size(s)?, 6); // the NUL counts, as in C
    assert_eq!(heap.len(s)?, 5);
    let a = heap.alloc_array::<u32>(ctx, 5)?;
    assert_eq!(heap.size(a)?, 20);
    assert_eq!(heap.len(a)?, 5);
    let v = heap.alloc(ctx, 0u64)?;
    assert_eq!(heap.size(v)?, 8);
    assert_eq!(heap.len(v)?, 1);
    let pool = heap.pool(ctx, 4096)?;
    assert_eq!(heap.size(pool)?, 0);
    heap.alloc_zeroed(pool, 100)?;
    assert_eq!(heap.total_size(pool)?, 100);
    assert_eq!(heap.total_size(ctx)?, 6 + 20 + 8 + 100);
    assert_eq!(heap.total_blocks(ctx)?, 6);
    ok(&heap);
    Ok(())
}

// ---------------------------------------------------------------------------
// T15. realloc.
// ---------------------------------------------------------------------------

#[test]
fn t15_realloc_sizes_and_accounting() -> R {
    // test_realloc
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p1 = heap.alloc_zeroed(root, 10)?;
    assert_eq!(heap.size(p1)?, 10);
    heap.realloc(p1, 20)?;
    ok(&heap);
    assert_eq!(heap.size(p1)?, 20);
    heap.new_context(p1)?;
    let p2 = heap.alloc_zeroed(p1, 30)?;
    heap.new_context(p1)?;
    heap.realloc(p2, 40)?;
    ok(&heap);
    assert_eq!(heap.size(p2)?, 40);
    assert_eq!(heap.total_size(root)?, 60);
    assert_eq!(heap.total_blocks(p1)?, 4);
    Ok(())
}

#[test]
fn t15_realloc_to_zero_keeps_an_empty_array() -> R {
    // C: size 0 means talloc_unlink and returns NULL.
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p = heap.alloc_slice(root, &[1u16, 2, 3])?;
    heap.realloc(p, 0)?;
    ok(&heap);
    assert!(heap.contains(p));
    assert_eq!(heap.size(p)?, 0);
    assert_eq!(heap.len(p)?, 0);
    assert_eq!(heap.total_blocks(root)?, 2);
    heap.realloc(p, 2)?;
    assert_eq!(&heap[p], &[0, 0]);
    ok(&heap);
    Ok(())
}

#[test]
fn t15_realloc_of_a_referenced_array_is_allowed() -> R {
    // C: realloc of a referenced pointer fails (returns NULL).
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let p = heap.alloc_zeroed(root, 8)?;
    heap.increase_ref_count(p)?;
    heap.realloc(p, 5)?;
    ok(&heap);
    assert_eq!(heap.size(p)?, 5);
    assert_eq!(heap.reference_count(p)?, 1);
    Ok(())
}

#[test]
fn t15_oversize_requests_fail_cleanly() -> R {
    // C's limit is 256 MiB; here a single object may reach 4 GiB.
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    assert_eq!(
        heap.alloc_array::<f64>(root, 0x2000_0000).map(|_| ()),
        Err(Error::TooLarge)
    );
    assert_eq!(
        heap.alloc_zeroed(root, usize::MAX).map(|_| ()),
        Err(Error::TooLarge)
    );
    let d = heap.alloc_array::<f64>(root, 4)?;
    assert_eq!(heap.realloc(d, 0x2000_0000), Err(Error::TooLarge));
    assert_eq!(heap.realloc(d, usize::MAX), Err(Error::TooLarge));
    ok(&heap);
    assert_eq!(heap.len(d)?, 4);
    assert_eq!(heap.total_blocks(root)?, 2);
    Ok(())
}

#[test]
fn t15_realloc_child_links_survive_a_moving_realloc() -> R {
    // test_realloc_child
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let el1 = heap.alloc(root, 0i32)?;
    let list = heap.alloc_array::<u64>(el1, 1)?;
    let list2 = heap.alloc_array::<u64>(el1, 1)?;
    let inner = heap.alloc(list, 0u32)?;
    let name = heap.alloc_str(inner, "testing")?;
    let el2 = heap.alloc(list, 0u32)?;
    let el2_2 = heap.alloc(list2, 0u32)?;
    heap.realloc(list, 100)?;
    heap.realloc(list2, 200)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, list), Some(el1.erase()));
    assert_eq!(parent_of(&heap, list2), Some(el1.erase()));
    assert_eq!(parent_of(&heap, el2), Some(list.erase()));
    assert_eq!(parent_of(&heap, inner), Some(list.erase()));
    assert_eq!(parent_of(&heap, el2_2), Some(list2.erase()));
    assert_eq!(&heap[name], "testing");
    assert_eq!(kids(&heap, list), [el2.erase(), inner.erase()]);
    heap.free(root)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t15_realloc_keeps_the_name() -> R {
    // C renames the object to a source location (docs/src/rules.md, T15).
    let mut heap = Talloc::new();
    let p = heap.alloc_zeroed(None, 10)?;
    heap.set_name_const(p, "buffer")?;
    heap.realloc(p, 1000)?;
    assert_eq!(heap.name(p)?, "buffer");
    ok(&heap);
    Ok(())
}

#[test]
fn t15_strings_grow_in_place() -> R {
    let mut heap = Talloc::new();
    let p1 = heap.new_context(None)?;
    let p2 = heap.alloc_str_prefix(p1, "foo", 2)?;
    assert_eq!(&heap[p2], "fo");
    heap.str_append_fmt(p2, format_args!("o{}", 'd'))?;
    assert_eq!(&heap[p2], "food");
    assert_eq!(heap.size(p2)?, 5);
    assert_eq!(heap.total_blocks(p1)?, 2);
    let p3 = talloc::alloc_format!(heap, p1, "my test '{}'", "string")?;
    assert_eq!(&heap[p3], "my test 'string'");
    assert_eq!(heap.size(p3)?, 17);
    ok(&heap);
    Ok(())
}

// ---------------------------------------------------------------------------
// T16. NULL tracking: top_level() and the leak report.
// ---------------------------------------------------------------------------

#[test]
fn t16_top_level_lists_parentless_objects() -> R {
    let mut heap = Talloc::new();
    assert_eq!(heap.top_level().count(), 0);
    let a = heap.new_context(None)?;
    let b = heap.alloc_str(None, "b")?;
    let kid = heap.alloc_str(a, "kid")?;
    let mut top: Vec<_> = heap.top_level().collect();
    top.sort();
    let mut want = vec![a.erase(), b.erase()];
    want.sort();
    assert_eq!(top, want);
    heap.steal(None, kid)?;
    assert_eq!(heap.top_level().count(), 3);
    heap.free(a)?;
    heap.free(b)?;
    heap.free(kid)?;
    ok(&heap);
    assert_eq!(heap.top_level().count(), 0);
    Ok(())
}

#[test]
fn t16_leak_report_lists_what_is_still_alive() -> R {
    let mut heap = Talloc::new();
    assert_eq!(
        heap.leak_report_text(LeakReport::Summary),
        "talloc report on 'null_context' (total      0 bytes in   0 blocks)\n"
    );
    let s = heap.alloc_str(None, "forgotten")?; // 10 bytes
    heap.set_name_const(s, "forgotten string")?;
    let ctx = heap.new_context(None)?;
    heap.set_name_const(ctx, "session")?;
    let buf = heap.alloc_zeroed(ctx, 100)?;
    heap.set_name_const(buf, "inner buffer")?;

    let summary = heap.leak_report_text(LeakReport::Summary);
    assert!(
        summary.starts_with("talloc report on 'null_context' (total    110 bytes in   3 blocks)\n"),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 3, "{summary}");
    assert!(summary.contains("session"), "{summary}");
    assert!(summary.contains("forgotten string"), "{summary}");
    assert!(!summary.contains("inner buffer"), "{summary}");

    let full = heap.leak_report_text(LeakReport::Full);
    assert!(
        full.starts_with(
            "full talloc report on 'null_context' (total    110 bytes in   3 blocks)\n"
        ),
        "{full}"
    );
    assert_eq!(full.lines().count(), 4, "{full}");
    assert!(full.contains("inner buffer"), "{full}");

    heap.free(s)?;
    heap.free(ctx)?;
    ok(&heap);
    assert_eq!(heap.leak_report_text(LeakReport::Full).lines().count(), 1);
    // A heap dropped with the report on prints it (to stderr) and does not fail.
    heap.enable_leak_report(Some(LeakReport::Full));
    heap.alloc_str(None, "leaked on purpose")?;
    drop(heap);
    Ok(())
}

// ---------------------------------------------------------------------------
// T17. Names.
// ---------------------------------------------------------------------------

#[test]
fn t17_set_name_replaces_and_frees_the_old_chunk() -> R {
    // C: every set_name adds a name chunk until the owner is freed.
    let mut heap = Talloc::new();
    let p = heap.alloc_str(None, "p")?;
    for i in 0..5 {
        heap.set_name(p, format_args!("name {i}"))?;
        ok(&heap);
        assert_eq!(heap.total_blocks(p)?, 2);
        assert_eq!(heap.name(p)?, format!("name {i}"));
    }
    Ok(())
}

#[test]
fn t17_default_names() -> R {
    let mut heap = Talloc::new();
    let ctx = heap.new_context(None)?;
    assert_eq!(heap.name(ctx)?, "talloc_new");
    let v = heap.alloc(ctx, 1u64)?;
    assert_eq!(heap.name(v)?, "u64");
    assert_eq!(heap.type_name(v)?, "u64");
    let x = heap.alloc_str(ctx, "x")?;
    heap.reference(ctx, x)?;
    let handle = kids(&heap, ctx)[0];
    assert_eq!(heap.name(handle)?, REFERENCE_NAME);
    heap.set_name(v, format_args!("{}", "custom"))?;
    assert_eq!(heap.name(v)?, "custom");
    assert_eq!(heap.type_name(v)?, "u64"); // the type does not change
    let chunk = kids(&heap, v)[0];
    assert_eq!(heap.name(chunk)?, NAME_CHUNK_NAME);
    ok(&heap);
    Ok(())
}

#[test]
fn t17_check_name_and_find_parent() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    heap.set_name_const(top, "server")?;
    let mid = heap.alloc(top, 5u16)?;
    heap.set_name(mid, format_args!("conn {}", 7))?;
    let leaf = heap.alloc_zeroed(mid, 1)?;
    assert_eq!(heap.check_name(top, "server")?, Some(top.erase()));
    assert_eq!(heap.check_name(top, "client")?, None);
    assert_eq!(heap.find_parent_by_name(leaf, "conn 7")?, Some(mid.erase()));
    assert_eq!(heap.find_parent_by_name(leaf, "server")?, Some(top.erase()));
    assert_eq!(heap.find_parent_by_name(leaf, "nobody")?, None);
    assert_eq!(heap.find_parent_by_type::<u16>(leaf)?, Some(mid));
    assert_eq!(heap.find_parent_by_type::<u32>(leaf)?, None);
    Ok(())
}

#[test]
#[should_panic(expected = "type check failed")]
fn t17_get_type_abort_on_a_freed_object_panics() {
    // C: talloc_get_type_abort(NULL, T) aborts with "Type mismatch".
    let mut heap = Talloc::new();
    let p = heap.alloc(None, 1u32).unwrap();
    heap.free(p).unwrap();
    heap.get_type_abort::<u32>(p.erase());
}

// ---------------------------------------------------------------------------
// T18. is_parent's argument order.
// ---------------------------------------------------------------------------

#[test]
fn t18_is_ancestor_argument_order() -> R {
    // C's talloc_is_parent(grandchild, top) == 1, (top, grandchild) == 0.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let kid = heap.new_context(top)?;
    let grandchild = heap.new_context(kid)?;
    let other = heap.new_context(None)?;
    assert!(heap.is_ancestor(top, grandchild)?);
    assert!(!heap.is_ancestor(grandchild, top)?);
    assert!(heap.is_ancestor(grandchild, grandchild)?);
    assert!(!heap.is_ancestor(other, grandchild)?);
    Ok(())
}

#[test]
fn t18_is_ancestor_has_no_depth_limit() -> R {
    // C stops after TALLOC_MAX_DEPTH (10000) levels and answers 0.
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let mut p = top.erase();
    // One level past C's limit makes the point; Miri, which is about memory
    // and not depth, walks a short chain.
    let levels = if cfg!(miri) { 100 } else { 10_001 };
    for _ in 0..levels {
        p = heap.new_context(p)?.erase();
    }
    assert!(heap.is_ancestor(top, p)?);
    Ok(())
}

// ---------------------------------------------------------------------------
// T19. Memory limits.
// ---------------------------------------------------------------------------

fn is_limit(r: Result<impl Sized, Error>, ctx: impl Into<AnyPtr>) -> bool {
    let ctx = ctx.into();
    matches!(r, Err(Error::MemoryLimit { context }) if context == ctx)
}

#[test]
fn t19_memlimit_nested_limits_and_steals() -> R {
    // test_memlimit, first half.
    let mut heap = Talloc::new();
    let root = heap.new_context(None)?;
    let l1 = heap.alloc_zeroed(root, 2048)?;
    heap.free(l1)?;
    let l1 = heap.alloc_str(root, "level 1")?; // 8 bytes
    heap.set_memlimit(l1, 2048)?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(l1)?,
        Some(talloc::MemLimit { max: 2048, used: 8 })
    );
    assert!(is_limit(heap.alloc_zeroed(l1, 2048), l1));
    ok(&heap);
    let l2 = heap.alloc_str(l1, "level 2")?;
    heap.free(l2)?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(l1)?,
        Some(talloc::MemLimit { max: 2048, used: 8 })
    );

    // A steal into the limited tree never fails, even past the limit...
    let l2 = heap.alloc_zeroed(None, 2048)?;
    heap.steal(l1, l2)?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(l1)?,
        Some(talloc::MemLimit {
            max: 2048,
            used: 2056
        })
    );
    // ...but later allocations under it do.
    assert!(is_limit(heap.alloc_str(l2, "level 3"), l1));
    heap.free(l2)?;
    ok(&heap);

    let l2 = heap.alloc_str(None, "level 2")?;
    heap.steal(l1, l2)?;
    let l3 = heap.alloc_str(l2, "level 3")?;
    heap.set_memlimit(l3, 1024)?;
    let l4 = heap.alloc_str(l3, "level 4")?;
    heap.set_memlimit(l4, 512)?;
    let l5 = heap.alloc_zeroed(l4, 8)?;
    ok(&heap);
    // Growth past the innermost limit fails and changes nothing.
    assert!(is_limit(heap.realloc(l5, 600), l4));
    ok(&heap);
    assert_eq!(heap.size(l5)?, 8);
    heap.realloc(l5, 5)?;
    ok(&heap);
    // A limit further up is checked too.
    assert!(is_limit(heap.alloc_zeroed(l4, 1000), l4));
    heap.set_memlimit(l4, 0)?; // 0 removes the limit
    assert_eq!(heap.memlimit(l4)?, None);
    // Under l3 (limit 1024): l3, l4 and l5 hold 8 + 8 + 5 bytes.
    let fits = heap.alloc_zeroed(l4, 1003)?;
    heap.free(fits)?;
    ok(&heap);
    assert!(is_limit(heap.alloc_zeroed(l4, 1004), l3));
    assert!(is_limit(heap.alloc_zeroed(l4, 2040), l3));
    heap.set_memlimit(l3, 0)?;
    assert!(is_limit(heap.alloc_zeroed(l4, 2040), l1));
    ok(&heap);

    // Out of the limited tree, nothing is limited.
    let t = heap.new_context(root)?;
    heap.steal(t, l5)?;
    ok(&heap);
    heap.alloc_zeroed(t, 2048)?;
    ok(&heap);
    heap.free(root)?;
    ok(&heap);
    Ok(())
}

#[test]
fn t19_memlimit_with_pools_counts_the_region_once() -> R {
    // test_memlimit, second half. C's chunks carry headers, so there 9
    // blocks of 1024 fill a 10 KiB pool; here 10 do.
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 10 * 1024)?;
    heap.set_memlimit(pool, 10 * 1024)?;
    assert_eq!(
        heap.memlimit(pool)?,
        Some(talloc::MemLimit {
            max: 10 * 1024,
            used: 10 * 1024
        })
    );
    let mut members = Vec::new();
    for _ in 0..10 {
        let m = heap.alloc_zeroed(pool, 1024)?; // carved: exempt from the limit
        assert!(heap.is_pooled(m)?);
        members.push(m);
        ok(&heap);
    }
    // The pool is full: the next one would be a real allocation.
    assert!(is_limit(heap.alloc_zeroed(pool, 1024), pool));
    ok(&heap);
    // Moving a member out does not change the pool's usage.
    let root = heap.new_context(None)?;
    heap.steal(root, members[0])?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(pool)?,
        Some(talloc::MemLimit {
            max: 10 * 1024,
            used: 10 * 1024
        })
    );
    assert!(is_limit(heap.alloc_zeroed(pool, 1024), pool));
    heap.free(members[0])?;
    heap.free_children(pool)?;
    ok(&heap);
    assert_eq!(
        heap.pool_usage(pool)?,
        talloc::PoolUsage {
            size: 10 * 1024,
            used: 0,
            objects: 1
        }
    );

    // Growing a member keeps it in the pool while the pool has room (C's
    // test_memlimit: sizes 2 to 8 KiB), with nothing charged.
    let l1 = heap.alloc_zeroed(pool, 1024)?;
    for i in 2..=8 {
        heap.realloc(l1, i * 1024)?;
        assert!(heap.is_pooled(l1)?, "{i} KiB still fits in the pool");
        ok(&heap);
    }
    assert_eq!(
        heap.memlimit(pool)?,
        Some(talloc::MemLimit {
            max: 10 * 1024,
            used: 10 * 1024
        })
    );
    // Past the pool's size it moves out, onto the limit's books.
    assert!(is_limit(heap.realloc(l1, 11 * 1024), pool));
    assert!(heap.is_pooled(l1)?);
    ok(&heap);
    heap.set_memlimit(pool, 21 * 1024)?;
    heap.realloc(l1, 11 * 1024)?;
    ok(&heap);
    assert!(!heap.is_pooled(l1)?);
    assert_eq!(
        heap.memlimit(pool)?,
        Some(talloc::MemLimit {
            max: 21 * 1024,
            used: 21 * 1024
        })
    );
    // The pool is empty again: carving is still allowed.
    let big = heap.alloc_zeroed(pool, 9 * 1024)?;
    assert!(heap.is_pooled(big)?);
    ok(&heap);
    heap.realloc(big, 10 * 1024)?; // the pool's only member: still fits
    assert!(heap.is_pooled(big)?);
    assert!(is_limit(heap.realloc(big, 11 * 1024), pool));
    ok(&heap);

    // A limit below the pool's size still lets the pool be carved from.
    heap.free_children(pool)?;
    heap.set_memlimit(pool, 1024)?;
    let l1 = heap.alloc_zeroed(pool, 9 * 1024)?;
    assert!(heap.is_pooled(l1)?);
    assert!(is_limit(heap.alloc_zeroed(pool, 2 * 1024), pool));
    ok(&heap);
    heap.free(pool)?;
    heap.free(root)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    Ok(())
}

#[test]
fn t19_new_pool_under_a_limit_is_charged_its_size() -> R {
    let mut heap = Talloc::new();
    let ctx = heap.new_context(None)?;
    heap.set_memlimit(ctx, 4096)?;
    let pool = heap.pool(ctx, 3000)?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(ctx)?,
        Some(talloc::MemLimit {
            max: 4096,
            used: 3000
        })
    );
    assert!(is_limit(heap.pool(ctx, 3000), ctx));
    heap.free(pool)?;
    ok(&heap);
    assert_eq!(
        heap.memlimit(ctx)?,
        Some(talloc::MemLimit { max: 4096, used: 0 })
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// T20. Threads: one heap per thread, subtrees moved as parcels.
// ---------------------------------------------------------------------------

#[test]
fn t20_pthread_talloc_passing() {
    // test_pthread_talloc_passing: 100 threads each hand a 100-byte buffer to
    // the main thread (C: a mutex, a condvar and talloc_move through NULL).
    // Miri interprets every thread: a few make the same point there.
    const THREADS: usize = if cfg!(miri) { 4 } else { 100 };
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..THREADS {
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut heap = Talloc::new();
            let top = heap.new_context(None).unwrap();
            heap.set_name_const(top, "top").unwrap();
            let sub = heap.alloc_zeroed(top, 100).unwrap();
            heap[sub][0] = i as u8;
            let parcel = heap.detach(sub).unwrap();
            assert!(!heap.contains(sub));
            tx.send(parcel).unwrap();
            heap.free(top).unwrap();
            ok(&heap);
            assert_eq!(heap.live_objects(), 0);
        }));
    }
    drop(tx);
    let mut heap = Talloc::new();
    let mem_ctx = heap.new_context(None).unwrap();
    heap.set_name_const(mem_ctx, "toplevel").unwrap();
    let mut seen = [false; THREADS];
    for parcel in rx {
        let buf = heap.attach(mem_ctx, parcel).unwrap();
        ok(&heap);
        assert_eq!(heap.size(buf).unwrap(), 100);
        seen[heap[buf][0] as usize] = true;
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(heap.total_size(mem_ctx).unwrap(), THREADS * 100);
    assert_eq!(heap.total_blocks(mem_ctx).unwrap(), THREADS + 1);
    heap.free(mem_ctx).unwrap();
    ok(&heap);
}

#[test]
fn t20_subtree_keeps_its_shape_names_and_references_across_threads() -> R {
    let mut heap = Talloc::new();
    let msg = heap.alloc_str(None, "message")?;
    heap.set_name(msg, format_args!("msg {}", 1))?;
    let body = heap.alloc_slice(msg, &[1u32, 2, 3])?;
    let att = heap.alloc_str(msg, "attachment")?;
    heap.reference(att, body)?; // a reference inside the subtree is fine
    let blocks = heap.total_blocks(msg)?;
    let parcel = heap.detach(msg).map_err(|_| Error::Refused)?;
    ok(&heap);
    assert_eq!(heap.live_objects(), 0);
    let report = std::thread::spawn(move || {
        let mut other = Talloc::new();
        let home = other.new_context(None).unwrap();
        let msg = other.attach(home, parcel).unwrap();
        ok(&other);
        let kids: Vec<_> = other.children(msg).unwrap().collect();
        let att = other.downcast::<str>(kids[0]).unwrap();
        let body = other.downcast::<[u32]>(kids[1]).unwrap();
        (
            other.name(msg).unwrap().to_string(),
            other[att].to_string(),
            other[body].to_vec(),
            other.reference_count(body).unwrap(),
            other.total_blocks(msg).unwrap(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(
        report,
        (
            "msg 1".to_string(),
            "attachment".to_string(),
            vec![1, 2, 3],
            1,
            blocks
        )
    );
    Ok(())
}

#[test]
fn t20_refused_transfer_leaves_the_subtree_untouched() -> R {
    let mut heap = Talloc::new();
    let top = heap.new_context(None)?;
    let msg = heap.alloc_str(top, "m")?;
    let kid = heap.alloc_str(msg, "kid")?;
    let local = heap.alloc_local(kid, Rc::new(5))?;
    let blocks = heap.total_blocks(top)?;
    match heap.detach(msg) {
        Err(DetachError::Transfer(e)) => {
            assert_eq!((e.object, e.rule), (local.erase(), TransferRule::NotSend));
        }
        other => panic!("{other:?}"),
    }
    ok(&heap);
    assert_eq!(heap.total_blocks(top)?, blocks);
    assert_eq!(parent_of(&heap, msg), Some(top.erase()));
    heap.free(local)?;
    heap.set_destructor(kid, |_, _| Ok(()))?;
    match heap.detach(msg) {
        Err(DetachError::Transfer(e)) => assert_eq!(e.rule, TransferRule::Destructor),
        other => panic!("{other:?}"),
    }
    ok(&heap);
    heap.clear_destructor(kid)?;
    let outside = heap.new_context(None)?;
    heap.reference(outside, kid)?;
    match heap.detach(msg) {
        Err(DetachError::Transfer(e)) => assert_eq!(e.rule, TransferRule::OutsideReference),
        other => panic!("{other:?}"),
    }
    ok(&heap);
    let pool = heap.pool(None, 1024)?;
    let pooled = heap.alloc_str(pool, "pooled")?;
    match heap.detach(pooled) {
        Err(DetachError::Transfer(e)) => assert_eq!(e.rule, TransferRule::InPool),
        other => panic!("{other:?}"),
    }
    ok(&heap);
    assert_eq!(&heap[msg], "m");
    Ok(())
}

// ---------------------------------------------------------------------------
// T21. NULL arguments: None parents and stale handles.
// ---------------------------------------------------------------------------

#[test]
fn t21_none_parent_means_top_level() -> R {
    let mut heap = Talloc::new();
    let a = heap.alloc(None, 1u8)?;
    let c = heap.new_context(None)?;
    let s = heap.alloc_str(None, "s")?;
    let z = heap.alloc_zeroed(None, 3)?;
    let pool = heap.pool(None, 64)?;
    for p in [a.erase(), c.erase(), s.erase(), z.erase(), pool.erase()] {
        assert_eq!(parent_of(&heap, p), None);
        assert_eq!(heap.parent_name(p)?, None);
    }
    let x = heap.alloc_str(c, "x")?;
    heap.steal(None, x)?;
    ok(&heap);
    assert_eq!(parent_of(&heap, x), None);
    Ok(())
}

#[test]
fn t21_move_to_none() -> R {
    let mut heap = Talloc::new();
    let c = heap.new_context(None)?;
    let mut x = Some(heap.alloc_str(c, "x")?);
    let moved = heap.move_to_parent(None, &mut x)?;
    ok(&heap);
    assert!(x.is_none());
    assert_eq!(parent_of(&heap, moved), None);
    // Moving an empty handle is an error, not a panic (C returns NULL).
    assert_eq!(heap.move_to_parent(c, &mut x), Err(Error::Stale));
    Ok(())
}

#[test]
fn t21_stale_handles_where_c_takes_null() -> R {
    let mut heap = Talloc::new();
    let ctx = heap.new_context(None)?;
    let gone = heap.alloc_str(ctx, "gone")?;
    heap.free(gone)?;
    assert_eq!(heap.free(gone), Err(Error::Stale)); // C: talloc_free(NULL) == -1
    assert_eq!(heap.unlink(ctx, gone), Err(Error::Stale)); // C: -1
    assert_eq!(heap.steal(ctx, gone), Err(Error::Stale)); // C: NULL
    assert_eq!(heap.reference(ctx, gone), Err(Error::Stale)); // C: NULL
    assert_eq!(heap.free_children(gone), Err(Error::Stale)); // C: no-op
    assert_eq!(heap.size(gone), Err(Error::Stale)); // C: 0
    assert_eq!(heap.parent(gone), Err(Error::Stale)); // C: NULL
    ok(&heap);
    assert_eq!(heap.total_blocks(ctx)?, 1);
    Ok(())
}
