//! Regression tests for soundness holes found from safe code, and the
//! checks that Miri runs over the parcel paths: values of every alignment
//! and size, detached, attached across heaps and dropped in every position.
//! Each `Drop` checks its own address alignment and counts itself, so a
//! misaligned or doubled drop fails the test even without Miri.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use talloc::{Error, Talloc};

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

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}
