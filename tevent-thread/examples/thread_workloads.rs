//! The cross-thread workloads of `bench/README.md`, on
//! tevent-thread, in the C program's output format.
//!
//! ```text
//! cargo run --release -p tevent-thread --example thread_workloads [-- NAME [SIZE]]
//! cargo run --release -p tevent-thread --example thread_workloads -- --list
//! ```
//!
//! - `tevent_thread_proxy_roundtrip`: a worker sends request i to the
//!   master through the master's [`ThreadProxy`], the master replies from
//!   inside its handler through the worker's proxy; the worker times the N
//!   round trips. Each message is a fresh small object (talloc'd, not in a
//!   pool, no destructor) in the sending loop's heap, moved with
//!   [`ProxySender::send`](tevent_thread::ProxySender::send) and freed on the
//!   receiving side after its handler.
//! - `tevent_threaded_immediate`: the same round trips through
//!   [`Remote::schedule_immediate`], with two immediates per
//!   direction created by the receiving loop, as the C program does.
//! - `tevent_thread_proxy_fanin`: 8 sender threads, each with its own heap,
//!   send M one-way messages each through one proxy to the main thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use talloc::{Ptr, Talloc};
use tevent::Remote;
use tevent::{Context, Immediate};
use tevent_thread::{ProxySender, Responder, Service, ThreadProxy};

const REPS: usize = 5;
const FANIN_SENDERS: usize = 8;

struct Workload {
    name: &'static str,
    default_size: u64,
    max_size: u64,
    /// Runs one repetition: (timed nanoseconds, ops).
    run: fn(u64) -> (u64, u64),
    /// Prints the `# note:` line after the five repetitions.
    note: Option<fn(u64)>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tevent_thread_proxy_roundtrip",
        default_size: 100_000,
        max_size: u64::MAX,
        run: proxy_roundtrip,
        note: None,
    },
    Workload {
        name: "tevent_threaded_immediate",
        default_size: 100_000,
        max_size: u64::MAX,
        run: threaded_immediate,
        note: None,
    },
    Workload {
        name: "tevent_thread_proxy_fanin",
        default_size: 20_000,
        max_size: 10_000_000,
        run: proxy_fanin,
        note: Some(note_fanin),
    },
    // No C counterpart (tevent has no futures): the round trip above, but
    // awaited from a task with a typed Service (`client.ask(i).await`).
    Workload {
        name: "task_thread_ask_roundtrip",
        default_size: 100_000,
        max_size: u64::MAX,
        run: ask_roundtrip,
        note: None,
    },
];

/// The worker awaits N calls in turn from one task; the master serves them
/// on its loop.
fn ask_roundtrip(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let served = Arc::new(AtomicU64::new(0));
    let s = served.clone();
    let service = Service::new(&mut ev, None, move |_, i: u64, reply: Responder<u64>| {
        s.fetch_add(1, Ordering::Relaxed);
        reply.send(i + 1)?;
        Ok(())
    })
    .expect("Service::new");
    let client = service.client(&ev).expect("client");
    let worker = std::thread::spawn(move || {
        let mut ev = Context::new().expect("context");
        let t0 = Instant::now();
        ev.block_on(async move {
            for i in 0..n {
                assert_eq!(client.ask(i).await, Ok(i + 1), "reply");
            }
        })
        .expect("block_on");
        let elapsed = ns(t0.elapsed());
        drop(ev);
        elapsed
    });
    while served.load(Ordering::Relaxed) < n {
        ev.loop_once().expect("loop_once");
    }
    let elapsed = worker.join().expect("worker");
    ev.free(service).expect("free");
    (elapsed, n)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

// ---------------------------------------------------------------------
// tevent_thread_proxy_roundtrip
// ---------------------------------------------------------------------

/// What both threads share. Each counter is written by one thread only
/// (atomics because Rust needs them to share it; relaxed is enough, the
/// proxy's queue orders the hand-overs).
struct ProxyRt {
    n: u64,
    /// Set by the worker before request 0.
    worker_tp: OnceLock<ProxySender>,
    /// Master only.
    served: AtomicU64,
    /// Worker only.
    replies: AtomicU64,
}

/// The message: a fresh small object in the sender's heap.
struct ProxyMsg {
    rt: Arc<ProxyRt>,
    seq: u64,
}

fn proxy_send(
    tp: &ProxySender,
    heap: &mut Talloc,
    rt: &Arc<ProxyRt>,
    seq: u64,
    handler: fn(&mut Context, Ptr<ProxyMsg>),
) {
    let msg = heap
        .alloc(
            None,
            ProxyMsg {
                rt: rt.clone(),
                seq,
            },
        )
        .expect("talloc");
    tp.send(heap, msg, handler).expect("ProxySender::send");
    // On success the message left the sender's heap.
    debug_assert!(!heap.contains(msg));
}

/// Worker thread: reply i arrived (freed after this returns).
fn proxy_worker_handler(ev: &mut Context, msg: Ptr<ProxyMsg>) {
    let msg = &ev.heap()[msg];
    let replies = msg.rt.replies.load(Ordering::Relaxed);
    assert_eq!(msg.seq, replies, "reply sequence");
    msg.rt.replies.store(replies + 1, Ordering::Relaxed);
}

/// Master thread: request i arrived; reply with a fresh message.
fn proxy_master_handler(ev: &mut Context, msg: Ptr<ProxyMsg>) {
    let (rt, seq) = {
        let m = &ev.heap()[msg];
        (m.rt.clone(), m.seq)
    };
    let served = rt.served.load(Ordering::Relaxed);
    assert_eq!(seq, served, "request sequence");
    rt.served.store(served + 1, Ordering::Relaxed);
    let tp = rt.worker_tp.get().expect("worker proxy");
    proxy_send(tp, ev.heap_mut(), &rt, seq, proxy_worker_handler);
}

fn proxy_roundtrip(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let master_tp = ThreadProxy::new(&mut ev, None)
        .expect("ThreadProxy::new")
        .sender(&ev)
        .expect("sender");
    let rt = Arc::new(ProxyRt {
        n,
        worker_tp: OnceLock::new(),
        served: AtomicU64::new(0),
        replies: AtomicU64::new(0),
    });
    let wrt = rt.clone();
    let worker = std::thread::spawn(move || {
        let rt = wrt;
        let mut ev = Context::new().expect("context");
        let tp = ThreadProxy::new(&mut ev, None).expect("ThreadProxy::new");
        let _ = rt.worker_tp.set(tp.sender(&ev).expect("sender"));
        let t0 = Instant::now();
        for i in 0..rt.n {
            proxy_send(&master_tp, ev.heap_mut(), &rt, i, proxy_master_handler);
            while rt.replies.load(Ordering::Relaxed) == i {
                ev.loop_once().expect("loop_once");
            }
        }
        let elapsed = ns(t0.elapsed());
        drop(ev); // a context is not Send: its own thread frees it
        elapsed
    });
    while rt.served.load(Ordering::Relaxed) < n {
        ev.loop_once().expect("loop_once");
    }
    let elapsed = worker.join().expect("worker");
    assert_eq!(rt.replies.load(Ordering::Relaxed), n, "reply count");
    drop(ev);
    (elapsed, n)
}

// ---------------------------------------------------------------------
// tevent_threaded_immediate
// ---------------------------------------------------------------------

struct ThrWorker {
    tctx: Remote,
    im_rep: [Immediate; 2],
}

struct ThrRt {
    n: u64,
    master_tctx: Remote,
    im_req: [Immediate; 2],
    /// Set by the worker before request 0.
    worker: OnceLock<ThrWorker>,
    /// Master only.
    served: AtomicU64,
    /// Worker only.
    replies: AtomicU64,
}

fn thr_master_handler(rt: Arc<ThrRt>) -> impl FnOnce(&mut Context, Immediate) + Send {
    move |_ev, im| {
        let i = rt.served.load(Ordering::Relaxed);
        rt.served.store(i + 1, Ordering::Relaxed);
        assert_eq!(im, rt.im_req[(i & 1) as usize], "request immediate");
        let w = rt.worker.get().expect("worker");
        let im_rep = w.im_rep[(i & 1) as usize];
        let r = rt.clone();
        w.tctx
            .schedule_immediate(im_rep, move |_ev, _im| {
                let n = r.replies.load(Ordering::Relaxed);
                r.replies.store(n + 1, Ordering::Relaxed);
            })
            .map_err(|_| "gone")
            .expect("schedule_immediate");
    }
}

fn threaded_immediate(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let master_tctx = ev.remote().expect("Context::remote");
    let im_req = [
        ev.create_immediate(None).expect("create_immediate"),
        ev.create_immediate(None).expect("create_immediate"),
    ];
    let rt = Arc::new(ThrRt {
        n,
        master_tctx,
        im_req,
        worker: OnceLock::new(),
        served: AtomicU64::new(0),
        replies: AtomicU64::new(0),
    });
    let wrt = rt.clone();
    let worker = std::thread::spawn(move || {
        let rt = wrt;
        let mut ev = Context::new().expect("context");
        let tctx = ev.remote().expect("Context::remote");
        let im_rep = [
            ev.create_immediate(None).expect("create_immediate"),
            ev.create_immediate(None).expect("create_immediate"),
        ];
        let _ = rt.worker.set(ThrWorker { tctx, im_rep });
        let t0 = Instant::now();
        for i in 0..rt.n {
            rt.master_tctx
                .schedule_immediate(rt.im_req[(i & 1) as usize], thr_master_handler(rt.clone()))
                .map_err(|_| "gone")
                .expect("schedule_immediate");
            while rt.replies.load(Ordering::Relaxed) == i {
                ev.loop_once().expect("loop_once");
            }
        }
        let elapsed = ns(t0.elapsed());
        drop(ev);
        elapsed
    });
    while rt.served.load(Ordering::Relaxed) < n {
        ev.loop_once().expect("loop_once");
    }
    let elapsed = worker.join().expect("worker");
    assert_eq!(rt.replies.load(Ordering::Relaxed), n, "reply count");
    drop(ev);
    (elapsed, n)
}

// ---------------------------------------------------------------------
// tevent_thread_proxy_fanin
// ---------------------------------------------------------------------

/// The master's state: an object in the master's heap, reached by the
/// handlers through a captured handle.
struct FaninState {
    m: u64,
    /// `[sender * m + seq]`: true until it arrived.
    pending: Vec<bool>,
    received: u64,
    late: u64,
    count: [u64; FANIN_SENDERS],
    high: [u64; FANIN_SENDERS],
}

/// The message: 24 bytes in C (a state pointer, sender, seq); here the
/// state is reached through the handler's captured handle.
struct FaninMsg {
    sender: u64,
    seq: u64,
}

static FANIN_LATE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

fn proxy_fanin(m: u64) -> (u64, u64) {
    let total = FANIN_SENDERS as u64 * m;
    let mut ev = Context::new().expect("context");
    let tp = ThreadProxy::new(&mut ev, None).expect("ThreadProxy::new");
    let sender = tp.sender(&ev).expect("sender");
    let state = ev
        .heap_mut()
        .alloc(
            None,
            FaninState {
                m,
                pending: vec![true; total as usize],
                received: 0,
                late: 0,
                count: [0; FANIN_SENDERS],
                high: [0; FANIN_SENDERS],
            },
        )
        .expect("talloc");
    let start = Arc::new(Barrier::new(FANIN_SENDERS + 1));
    let threads: Vec<_> = (0..FANIN_SENDERS as u64)
        .map(|s| {
            let start = start.clone();
            let tp = sender.clone();
            std::thread::spawn(move || {
                let mut heap = Talloc::new();
                let ctx = heap.new_context(None).expect("talloc_new");
                start.wait();
                let released = Instant::now();
                for i in 0..m {
                    let msg = heap
                        .alloc(ctx, FaninMsg { sender: s, seq: i })
                        .expect("talloc");
                    tp.send(&mut heap, msg, move |ev, msg| {
                        let FaninMsg { sender, seq } = ev.heap()[msg];
                        let st = &mut ev.heap_mut()[state];
                        let (s, q) = (sender as usize, seq);
                        assert!(s < FANIN_SENDERS && q < st.m, "message id");
                        let k = s * st.m as usize + q as usize;
                        assert!(st.pending[k], "message arrived once");
                        st.pending[k] = false;
                        if q < st.high[s] {
                            st.late += 1;
                        } else {
                            st.high[s] = q + 1;
                        }
                        st.count[s] += 1;
                        st.received += 1;
                    })
                    .expect("ProxySender::send");
                }
                // Everything the sender allocated left with its message.
                assert_eq!(heap.total_blocks(ctx).expect("total_blocks"), 1);
                heap.free(ctx).expect("talloc_free");
                assert_eq!(heap.live_objects(), 0);
                released
            })
        })
        .collect();
    start.wait();
    let mut t0 = Instant::now();
    while ev.heap()[state].received < total {
        ev.loop_once().expect("loop_once");
    }
    let t1 = Instant::now();
    for th in threads {
        let released = th.join().expect("sender");
        // Start = the earliest reading after the barrier, any thread.
        t0 = t0.min(released);
    }
    let st = &ev.heap()[state];
    assert_eq!(st.received, total, "message count");
    assert!(st.count.iter().all(|&c| c == m), "messages per sender");
    assert!(st.pending.iter().all(|&p| !p), "every message arrived");
    FANIN_LATE.lock().expect("lock").push(st.late);
    drop(ev);
    (ns(t1 - t0), total)
}

fn note_fanin(m: u64) {
    let mut late = FANIN_LATE.lock().expect("lock");
    let list: Vec<String> = late.iter().map(u64::to_string).collect();
    println!(
        "# note: messages that arrived after a higher sequence number of the same sender, \
         per repetition: {} (of {})",
        list.join(" "),
        FANIN_SENDERS as u64 * m
    );
    late.clear();
}

// ---------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------

fn run(w: &Workload, size: u64) {
    let mut per_op = Vec::with_capacity(REPS);
    let mut ops = 0;
    for r in 0..REPS {
        let (t, o) = (w.run)(size);
        assert!(o > 0 && (r == 0 || o == ops), "op count");
        ops = o;
        per_op.push(t as f64 / o as f64);
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{}\t{}\t{:.2}\t{:.2}",
        w.name,
        ops,
        per_op[REPS / 2],
        per_op[0]
    );
    if let Some(note) = w.note {
        note(size);
    }
}

fn maxrss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn usage() -> String {
    let mut s = String::from("usage: workloads [WORKLOAD|all [SIZE]] | --list\nworkloads:\n");
    for w in WORKLOADS {
        let extra = if w.name == "tevent_thread_proxy_fanin" {
            format!(" (messages per sender, {FANIN_SENDERS} senders)")
        } else {
            String::new()
        };
        s += &format!("  {:<30} default size {}{extra}\n", w.name, w.default_size);
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for w in WORKLOADS {
            println!("{}", w.name);
        }
        return;
    }
    if args.len() > 2 || matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        print!("{}", usage());
        std::process::exit(if args.len() > 2 { 2 } else { 0 });
    }
    let sel = args.first().map(String::as_str).unwrap_or("all");
    let only = if sel == "all" {
        None
    } else {
        match WORKLOADS.iter().find(|w| w.name == sel) {
            Some(w) => Some(w),
            None => {
                eprintln!("unknown workload '{sel}'\n{}", usage());
                std::process::exit(2);
            }
        }
    };
    let size = match args.get(1) {
        None => None,
        Some(s) => match (s.parse::<u64>(), only) {
            (Ok(n), Some(w)) if n > 0 && n <= w.max_size => Some(n),
            _ => {
                eprintln!("bad SIZE '{s}' (needs one workload, 1..max)");
                std::process::exit(2);
            }
        },
    };
    let ev = Context::new().expect("context");
    println!(
        "# tevent-thread {} backend {}",
        env!("CARGO_PKG_VERSION"),
        ev.backend_name()
    );
    drop(ev);
    println!("# tevent_backends {}", Context::backends().join(" "));
    println!(
        "# reps {REPS}, clock CLOCK_MONOTONIC, cpus {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("# name\tops\tmedian_ns_per_op\tmin_ns_per_op");
    for w in WORKLOADS {
        if let Some(o) = only {
            if o.name != w.name {
                continue;
            }
        }
        run(w, size.unwrap_or(w.default_size));
    }
    println!("# maxrss_kb {}", maxrss_kb());
}
