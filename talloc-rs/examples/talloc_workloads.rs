//! The talloc workloads of `bench/README.md`, run on talloc-rs.
//!
//! ```text
//! cargo run --release -p talloc-rs --example talloc_workloads [-- WORKLOAD|all [SIZE]]
//! cargo run --release -p talloc-rs --example talloc_workloads -- --list
//! ```
//!
//! The output has the C program's format (`bench/c/bench.c`), so the two
//! can be set side by side (`bench/compare.sh`): a data line
//! `name <TAB> ops <TAB> median_ns_per_op <TAB> min_ns_per_op` per workload,
//! comment lines starting with `#`.
//!
//! As in C, every workload runs 5 repetitions, each on fresh state: its
//! contexts, pools and handle arrays are made afresh outside the timed part
//! and freed afterwards. The timed part is the same as C's, and every library
//! result is checked inside the timed loops too (`?`), as the C program does.
//! A failed check prints a message and exits with status 1; a bad workload
//! name or size exits with 2.
//!
//! The 5 repetitions of a workload share one [`Talloc`] heap, the analogue of
//! C's process-wide allocator: glibc keeps the memory one repetition freed for
//! the next, and a heap keeps its freed slots. (A new heap per repetition
//! would pay the page faults of growing it again, which C does not pay.)
//! After each repetition the heap must be empty.
//!
//! C's `talloc_size(ctx, n)` (uninitialised memory) maps to
//! [`Talloc::alloc_zeroed`]: talloc-rs memory is always initialised, so the Rust
//! side also pays for zeroing the bytes.

use std::error::Error;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::time::Instant;

use talloc::{AnyPtr, DestructorResult, Ptr, Talloc};

const REPS: usize = 5;

/// What a workload's function returns: the result of one repetition, or the
/// check that failed.
type Res<T> = Result<T, Box<dyn Error>>;

/// One repetition: nanoseconds in the timed part and the operations it did.
struct Timed {
    ns: u64,
    ops: u64,
}

/// A failed check (C's `CHECK(cond, what)`).
fn check(cond: bool, what: &str) -> Res<()> {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

/// Runs `f` between two clock readings (`CLOCK_MONOTONIC`, like C's).
fn timed<T>(f: impl FnOnce() -> Res<T>) -> Res<(T, u64)> {
    let t0 = Instant::now();
    let v = f()?;
    let ns = t0.elapsed().as_nanos();
    Ok((v, u64::try_from(ns)?))
}

// ---------------------------------------------------------------------------
// The workloads (one function each; names and sizes as in bench/README.md)
// ---------------------------------------------------------------------------

/// N children of 32 bytes under one context, then free the context.
fn talloc_alloc_free_flat(heap: &mut Talloc, n: u64) -> Res<Timed> {
    let parent = heap.new_context(None)?;
    let ((), ns) = timed(|| {
        for _ in 0..n {
            heap.alloc_zeroed(parent, 32)?;
        }
        heap.free(parent)?;
        Ok(())
    })?;
    Ok(Timed { ns, ops: n })
}

/// The same shape with the global allocator (glibc malloc behind Rust's
/// `System` allocator): N boxes of 32 bytes, then freed newest first.
fn malloc_free_flat(_heap: &mut Talloc, n: u64) -> Res<Timed> {
    // An uninitialised payload, so the box is `malloc(32)` and nothing else,
    // as in C. `Box::new` aborts if the allocator fails (Rust's OOM check).
    type Block = Box<[MaybeUninit<u8>; 32]>;
    // The pointer array, written once so its pages are mapped (C's memset):
    // collected from an iterator, so every element is stored.
    let mut ptrs: Vec<Option<Block>> = (0..n).map(|_| None).collect();
    black_box(&mut ptrs);
    let ((), ns) = timed(|| {
        for p in ptrs.iter_mut() {
            *p = Some(Box::new([MaybeUninit::uninit(); 32]));
        }
        for p in ptrs.iter_mut().rev() {
            *p = None;
        }
        Ok(())
    })?;
    Ok(Timed { ns, ops: n })
}

const TREE_FANOUT: usize = 10;

/// Depth-first pre-order: the node, then its `TREE_FANOUT` subtrees.
fn tree_build(
    heap: &mut Talloc,
    parent: Option<AnyPtr>,
    depth_left: u64,
    count: &mut u64,
) -> Res<Ptr<[u8]>> {
    let node = heap.alloc_zeroed(parent, 32)?;
    *count += 1;
    if depth_left > 0 {
        for _ in 0..TREE_FANOUT {
            tree_build(heap, Some(node.erase()), depth_left - 1, count)?;
        }
    }
    Ok(node)
}

/// A complete tree of the given depth (root = depth 0), then free the root.
fn talloc_tree_build_free(heap: &mut Talloc, depth: u64) -> Res<Timed> {
    let expect: u64 = (0..=depth)
        .map(|d| (TREE_FANOUT as u64).pow(d as u32))
        .sum();
    let mut count = 0;
    let ((), ns) = timed(|| {
        let root = tree_build(heap, None, depth, &mut count)?;
        heap.free(root)?;
        Ok(())
    })?;
    check(count == expect, "tree node count")?;
    Ok(Timed { ns, ops: count })
}

const CHURN_WINDOW: usize = 1024;

/// A ring of 1024 live children; N times: free the oldest, allocate a new one.
fn talloc_churn(heap: &mut Talloc, n: u64) -> Res<Timed> {
    let parent = heap.new_context(None)?;
    let mut ring = Vec::with_capacity(CHURN_WINDOW);
    for _ in 0..CHURN_WINDOW {
        ring.push(heap.alloc_zeroed(parent, 32)?);
    }
    let ((), ns) = timed(|| {
        for i in 0..n {
            let j = (i % CHURN_WINDOW as u64) as usize;
            heap.free(ring[j])?;
            ring[j] = heap.alloc_zeroed(parent, 32)?;
        }
        Ok(())
    })?;
    heap.free(parent)?;
    Ok(Timed { ns, ops: n })
}

const STEAL_CHILDREN: u64 = 100_000;

/// Steal i moves kid[i % 100,000] to B on even passes, back to A on odd ones.
fn talloc_steal(heap: &mut Talloc, n: u64) -> Res<Timed> {
    let a = heap.new_context(None)?;
    let b = heap.new_context(None)?;
    let mut kids = Vec::with_capacity(STEAL_CHILDREN as usize);
    for _ in 0..STEAL_CHILDREN {
        kids.push(heap.alloc_zeroed(a, 32)?);
    }
    let ((), ns) = timed(|| {
        for i in 0..n {
            let kid = kids[(i % STEAL_CHILDREN) as usize];
            let dst = if (i / STEAL_CHILDREN) & 1 == 1 { a } else { b };
            check(heap.steal(dst, kid)? == kid, "talloc_steal")?;
        }
        Ok(())
    })?;
    // The last stolen child must sit under the last pass's target.
    let last_pass = (n - 1) / STEAL_CHILDREN;
    let target = if last_pass & 1 == 1 { a } else { b };
    let last = kids[((n - 1) % STEAL_CHILDREN) as usize];
    check(
        heap.parent(last)? == Some(target.erase()),
        "talloc_steal result",
    )?;
    heap.free(a)?;
    heap.free(b)?;
    Ok(Timed { ns, ops: n })
}

/// Calls of [`count_destructor`]. C increments a plain global `uint64_t`;
/// a relaxed load and store of an atomic is the same instructions (no
/// locked read-modify-write). The destructor is a plain function, set with
/// `set_destructor_fn` as C passes a function pointer.
static DESTRUCTOR_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_destructor(_heap: &mut Talloc, _p: Ptr<[u8]>) -> DestructorResult {
    use std::sync::atomic::Ordering::Relaxed;
    DESTRUCTOR_CALLS.store(DESTRUCTOR_CALLS.load(Relaxed) + 1, Relaxed);
    Ok(())
}

/// N children with a counting destructor, then free the context.
fn talloc_destructor_free(heap: &mut Talloc, n: u64) -> Res<Timed> {
    use std::sync::atomic::Ordering::Relaxed;
    let parent = heap.new_context(None)?;
    DESTRUCTOR_CALLS.store(0, Relaxed);
    let ((), ns) = timed(|| {
        for _ in 0..n {
            let c = heap.alloc_zeroed(parent, 32)?;
            heap.set_destructor_fn(c, count_destructor)?;
        }
        heap.free(parent)?;
        Ok(())
    })?;
    check(DESTRUCTOR_CALLS.load(Relaxed) == n, "destructor count")?;
    Ok(Timed { ns, ops: n })
}

const POOL_BATCH: u64 = 10_000;
const POOL_OBJ: usize = 64;
const POOL_1MIB: usize = 1 << 20;
const POOL_2MIB: usize = 2 << 20;

/// Batches of 10,000 objects of 64 bytes: allocate all, then free all oldest
/// first; N objects in total. `pool_size` 0: a plain context, no pool.
fn pool_common(heap: &mut Talloc, n: u64, pool_size: usize) -> Res<Timed> {
    let ctx = if pool_size > 0 {
        heap.pool(None, pool_size)?.erase()
    } else {
        heap.new_context(None)?.erase()
    };
    let mut objs = Vec::with_capacity(POOL_BATCH as usize);
    let ((), ns) = timed(|| {
        let mut done = 0;
        while done < n {
            let batch = POOL_BATCH.min(n - done);
            objs.clear();
            for _ in 0..batch {
                objs.push(heap.alloc_zeroed(ctx, POOL_OBJ)?);
            }
            for &o in &objs {
                heap.free(o)?;
            }
            done += batch;
        }
        Ok(())
    })?;
    heap.free(ctx)?;
    Ok(Timed { ns, ops: n })
}

fn talloc_pool(heap: &mut Talloc, n: u64) -> Res<Timed> {
    pool_common(heap, n, POOL_1MIB)
}

fn talloc_pool_2mib(heap: &mut Talloc, n: u64) -> Res<Timed> {
    pool_common(heap, n, POOL_2MIB)
}

fn talloc_nopool(heap: &mut Talloc, n: u64) -> Res<Timed> {
    pool_common(heap, n, 0)
}

/// Untimed probe after a pool workload: how many objects of one batch are
/// carved from the pool (the rest are allocated normally) and the distance
/// between the first two in memory.
fn pool_note(pool_size: usize) -> Res<()> {
    let mut heap = Talloc::new();
    let pool = heap.pool(None, pool_size)?;
    let mut objs = Vec::with_capacity(POOL_BATCH as usize);
    let mut inside = 0;
    for _ in 0..POOL_BATCH {
        let p = heap.alloc_zeroed(pool, POOL_OBJ)?;
        inside += u32::from(heap.is_pooled(p)?);
        objs.push(p);
    }
    let addr = |p: Ptr<[u8]>| heap[p].as_ptr() as isize;
    let stride = addr(objs[1]) - addr(objs[0]);
    println!(
        "# note: a {pool_size}-byte pool holds {inside} of the {POOL_BATCH} objects in a batch \
         ({stride} bytes each in the pool for {POOL_OBJ} requested); any others are malloc'd"
    );
    heap.free(pool)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

struct Workload {
    name: &'static str,
    default_size: u64,
    max_size: u64,
    run: fn(&mut Talloc, u64) -> Res<Timed>,
    note: Option<fn() -> Res<()>>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "talloc_alloc_free_flat",
        default_size: 1_000_000,
        max_size: 100_000_000,
        run: talloc_alloc_free_flat,
        note: None,
    },
    Workload {
        name: "malloc_free_flat",
        default_size: 1_000_000,
        max_size: 100_000_000,
        run: malloc_free_flat,
        note: None,
    },
    Workload {
        name: "talloc_tree_build_free",
        default_size: 6,
        max_size: 7,
        run: talloc_tree_build_free,
        note: None,
    },
    Workload {
        name: "talloc_churn",
        default_size: 2_000_000,
        max_size: u64::MAX,
        run: talloc_churn,
        note: None,
    },
    Workload {
        name: "talloc_steal",
        default_size: 2_000_000,
        max_size: u64::MAX,
        run: talloc_steal,
        note: None,
    },
    Workload {
        name: "talloc_destructor_free",
        default_size: 1_000_000,
        max_size: 100_000_000,
        run: talloc_destructor_free,
        note: None,
    },
    Workload {
        name: "talloc_pool",
        default_size: 2_000_000,
        max_size: u64::MAX,
        run: talloc_pool,
        note: Some(|| pool_note(POOL_1MIB)),
    },
    Workload {
        name: "talloc_pool_2mib",
        default_size: 2_000_000,
        max_size: u64::MAX,
        run: talloc_pool_2mib,
        note: Some(|| pool_note(POOL_2MIB)),
    },
    Workload {
        name: "talloc_nopool",
        default_size: 2_000_000,
        max_size: u64::MAX,
        run: talloc_nopool,
        note: None,
    },
];

/// 5 repetitions; prints the name, the ops and the median and minimum ns/op.
fn run_workload(w: &Workload, size: u64) -> Res<()> {
    let mut per_op = [0f64; REPS];
    let mut ops = 0;
    // One heap for the workload's repetitions, as the C program has one
    // process-wide allocator (glibc keeps the memory a repetition freed for
    // the next one; a heap keeps its freed slots). Each repetition makes its
    // contexts afresh and must leave the heap empty.
    let mut heap = Talloc::new();
    for (r, slot) in per_op.iter_mut().enumerate() {
        let t = (w.run)(&mut heap, size)?;
        check(heap.live_objects() == 0, "everything freed")?;
        check(t.ops > 0 && (r == 0 || t.ops == ops), "op count")?;
        ops = t.ops;
        *slot = t.ns as f64 / t.ops as f64;
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{}\t{ops}\t{:.2}\t{:.2}",
        w.name,
        per_op[REPS / 2],
        per_op[0]
    );
    if let Some(note) = w.note {
        note()?;
    }
    Ok(())
}

/// Online CPUs, as C's `sysconf(_SC_NPROCESSORS_ONLN)` counts them.
fn online_cpus() -> usize {
    let from_sysfs = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| {
            s.trim()
                .split(',')
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => {
                        b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum()
        });
    from_sysfs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The peak resident set in kB (`VmHWM`; what `getrusage`'s `ru_maxrss`
/// reports), 0 if /proc is not there.
fn maxrss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn usage(to_stderr: bool) {
    let mut text =
        String::from("usage: workloads [WORKLOAD|all [SIZE]] | --list | --help\nworkloads:\n");
    for w in WORKLOADS {
        let what = if w.name == "talloc_tree_build_free" {
            " (tree depth)"
        } else {
            ""
        };
        text += &format!("  {:<30} default size {}{what}\n", w.name, w.default_size);
    }
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sel = args.first().map_or("all", String::as_str);
    if args.len() > 2 {
        usage(true);
        return ExitCode::from(2);
    }
    match sel {
        "-h" | "--help" => {
            usage(false);
            return ExitCode::SUCCESS;
        }
        "--list" => {
            for w in WORKLOADS {
                println!("{}", w.name);
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let only = if sel == "all" {
        None
    } else {
        match WORKLOADS.iter().find(|w| w.name == sel) {
            Some(w) => Some(w),
            None => {
                eprintln!("unknown workload '{sel}'");
                usage(true);
                return ExitCode::from(2);
            }
        }
    };
    let mut size = None;
    if let Some(arg) = args.get(1) {
        match (only, arg.parse::<u64>()) {
            (Some(w), Ok(s)) if s >= 1 && s <= w.max_size => size = Some(s),
            _ => {
                let max = only.map_or(0, |w| w.max_size);
                eprintln!("bad SIZE '{arg}' (needs one workload, 1..{max})");
                return ExitCode::from(2);
            }
        }
    }

    println!("# talloc-rs {}", env!("CARGO_PKG_VERSION"));
    println!(
        "# reps {REPS}, clock CLOCK_MONOTONIC (Instant), cpus {}",
        online_cpus()
    );
    println!("# name\tops\tmedian_ns_per_op\tmin_ns_per_op");
    for w in WORKLOADS {
        if only.is_some_and(|o| o.name != w.name) {
            continue;
        }
        if let Err(e) = run_workload(w, size.unwrap_or(w.default_size)) {
            eprintln!("workloads: {}: {e}", w.name);
            return ExitCode::from(1);
        }
    }
    println!("# maxrss_kb {}", maxrss_kb());
    ExitCode::SUCCESS
}
