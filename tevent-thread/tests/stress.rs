//! Many threads at once, and faults.
//!
//! The default run is short. `TEVENT_THREAD_STRESS=1` runs the full sizes
//! (8 senders x 100,000 messages into one loop; 4 loops x 3 peers x 50,000);
//! `cargo test -p tevent-thread --release --test stress -- --ignored` runs
//! the full sizes and the soak (`TEVENT_THREAD_SOAK_SECS`, default 60).
//!
//! Every test accounts for every message: delivered exactly once and in
//! order per sender, or (in the fault tests) freed undelivered on the
//! destination, or handed back to its sender, never two of these and
//! never none.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use talloc::{Ptr, Talloc};
use tevent::Context;
use tevent_thread::{ProxySender, SendError, ThreadProxy};

fn full_size() -> bool {
    std::env::var("TEVENT_THREAD_STRESS").is_ok_and(|v| v == "1")
}

/// Runs `ev` until `done`, failing after `limit`.
fn run_until(
    ev: &mut Context,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&mut Context) -> bool,
) {
    ev.set_wait_timeout(Duration::from_millis(50));
    let deadline = Instant::now() + limit;
    while !done(ev) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        ev.loop_once().expect("loop_once");
    }
}

// ---------------------------------------------------------------------
// Fan-in: S senders into one loop
// ---------------------------------------------------------------------

/// The receiving loop's bookkeeping, an object in its heap.
struct FanIn {
    senders: usize,
    /// Next sequence number expected from each sender.
    next: Vec<u64>,
    received: u64,
}

struct Msg {
    sender: usize,
    seq: u64,
}

fn fan_in(senders: usize, each: u64) {
    let mut ev = Context::new().unwrap();
    let proxy = ThreadProxy::new(&mut ev, None).unwrap();
    let sender = proxy.sender(&ev).unwrap();
    let state = ev
        .heap_mut()
        .alloc(
            None,
            FanIn {
                senders,
                next: vec![0; senders],
                received: 0,
            },
        )
        .unwrap();
    let base = ev.heap().live_objects();
    let start = Arc::new(Barrier::new(senders));
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let sender = sender.clone();
            let start = start.clone();
            thread::spawn(move || {
                let mut heap = Talloc::new();
                let home = heap.new_context(None).unwrap();
                start.wait();
                for seq in 0..each {
                    let msg = heap.alloc(home, Msg { sender: s, seq }).unwrap();
                    heap.alloc_slice(msg, &seq.to_le_bytes()).unwrap();
                    sender
                        .send(&mut heap, msg, move |ev, msg| {
                            let Msg { sender, seq } = ev.heap()[msg];
                            let kid = ev.heap().children(msg).unwrap().next().unwrap();
                            let kid = ev.heap().downcast::<[u8]>(kid).unwrap();
                            assert_eq!(ev.heap()[kid], seq.to_le_bytes(), "payload");
                            let st = &mut ev.heap_mut()[state];
                            assert!(sender < st.senders);
                            // In order per sender: catches a loss, a
                            // duplicate and a reordering alike.
                            assert_eq!(seq, st.next[sender], "sender {sender}");
                            st.next[sender] += 1;
                            st.received += 1;
                        })
                        .unwrap();
                }
                assert_eq!(heap.total_blocks(home).unwrap(), 1, "everything left");
                heap.free(home).unwrap();
                heap.live_objects()
            })
        })
        .collect();
    let total = senders as u64 * each;
    run_until(&mut ev, Duration::from_secs(300), "every message", |ev| {
        ev.heap()[state].received == total
    });
    for t in threads {
        assert_eq!(t.join().unwrap(), 0, "a sender heap is back to empty");
    }
    let st = &ev.heap()[state];
    assert!(st.next.iter().all(|&n| n == each));
    // Nothing more arrives.
    ev.set_wait_timeout(Duration::from_millis(1));
    ev.loop_once().unwrap();
    assert_eq!(ev.heap()[state].received, total);
    assert_eq!(ev.heap().live_objects(), base, "back to the starting count");
    ev.heap().verify().unwrap();
}

#[test]
fn fan_in_8_senders() {
    if full_size() {
        fan_in(8, 100_000);
    } else {
        fan_in(8, 5_000);
    }
}

#[test]
#[ignore = "full size: 8 x 100,000 messages (run with --release)"]
fn fan_in_8_senders_100k() {
    fan_in(8, 100_000);
}

// ---------------------------------------------------------------------
// Mesh: L loops, each sending to every other
// ---------------------------------------------------------------------

struct MeshState {
    me: usize,
    next: Vec<u64>,
    received: u64,
}

struct MeshMsg {
    from: usize,
    seq: u64,
}

/// One loop of the mesh: sends `each` messages to every other loop, in
/// batches from a self-rescheduling immediate so that sending and
/// receiving interleave, and runs until it has everything.
/// Each loop's sender and the handle of its bookkeeping object (which
/// lives in that loop's heap: the handlers run there).
type Book = Arc<Vec<OnceLock<(ProxySender, Ptr<MeshState>)>>>;

fn mesh_loop(me: usize, loops: usize, each: u64, book: Book, start: Arc<Barrier>) {
    let mut ev = Context::new().unwrap();
    let proxy = ThreadProxy::new(&mut ev, None).unwrap();
    let state = ev
        .heap_mut()
        .alloc(
            None,
            MeshState {
                me,
                next: vec![0; loops],
                received: 0,
            },
        )
        .unwrap();
    let base = ev.heap().live_objects();
    book[me].set((proxy.sender(&ev).unwrap(), state)).unwrap();
    start.wait();
    let peers: Vec<(ProxySender, Ptr<MeshState>)> = (0..loops)
        .filter(|&p| p != me)
        .map(|p| book[p].get().unwrap().clone())
        .collect();
    let sent = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let s = sent.clone();
    let pump = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(pump, move |ev, pump| {
        const BATCH: u64 = 32;
        let from = s.get();
        let to = (from + BATCH).min(each);
        for seq in from..to {
            for &(ref peer, peer_state) in &peers {
                let msg = ev
                    .heap_mut()
                    .alloc(None, MeshMsg { from: me, seq })
                    .unwrap();
                ev.heap_mut()
                    .alloc_fmt(msg, format_args!("{me}:{seq}"))
                    .unwrap();
                peer.send(ev.heap_mut(), msg, move |ev, msg| {
                    let MeshMsg { from, seq } = ev.heap()[msg];
                    let kid = ev.heap().children(msg).unwrap().next().unwrap();
                    let kid = ev.heap().downcast::<str>(kid).unwrap();
                    assert_eq!(&ev.heap()[kid], format!("{from}:{seq}"));
                    let st = &mut ev.heap_mut()[peer_state];
                    assert_ne!(from, st.me, "not to myself");
                    assert_eq!(seq, st.next[from], "from {from} to {}", st.me);
                    st.next[from] += 1;
                    st.received += 1;
                })
                .unwrap();
            }
        }
        s.set(to);
        if to < each {
            ev.reschedule_immediate(pump).unwrap();
        }
    })
    .unwrap();
    let want = each * (loops as u64 - 1);
    run_until(&mut ev, Duration::from_secs(600), "the mesh", |ev| {
        ev.heap()[state].received == want && sent.get() == each
    });
    let st = &ev.heap()[state];
    for (p, &n) in st.next.iter().enumerate() {
        assert_eq!(n, if p == me { 0 } else { each }, "loop {me} from {p}");
    }
    ev.free(pump).unwrap();
    assert_eq!(
        ev.heap().live_objects(),
        base,
        "loop {me}: back to the starting count"
    );
    ev.heap().verify().unwrap();
}

fn mesh(loops: usize, each: u64) {
    let book: Book = Arc::new((0..loops).map(|_| OnceLock::new()).collect());
    let start = Arc::new(Barrier::new(loops));
    let threads: Vec<_> = (0..loops)
        .map(|me| {
            let book = book.clone();
            let start = start.clone();
            thread::spawn(move || mesh_loop(me, loops, each, book, start))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every loop is gone now.
    assert!(book.iter().all(|s| !s.get().unwrap().0.is_alive()));
}

#[test]
fn mesh_4_loops() {
    if full_size() {
        mesh(4, 50_000);
    } else {
        mesh(4, 2_000);
    }
}

#[test]
#[ignore = "full size: 4 loops x 3 peers x 50,000 messages (run with --release)"]
fn mesh_4_loops_full() {
    mesh(4, 50_000);
}

#[test]
#[ignore = "soak: fan-in and mesh rounds for TEVENT_THREAD_SOAK_SECS (default 60)"]
fn soak() {
    let secs = std::env::var("TEVENT_THREAD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0u64;
    while Instant::now() < end {
        fan_in(8, 20_000);
        mesh(4, 10_000);
        mid_flight(Kill::DropContext, 4, 500);
        mid_flight(Kill::FreeProxy, 4, 500);
        rounds += 1;
    }
    eprintln!("soak: {rounds} rounds");
}

// ---------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delivered,
    FreedUndelivered,
    HandedBack,
}

/// One line of the ledger: (sender, seq), how it ended, and where.
type Entry = ((usize, u64), Fate, ThreadId);

#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<Entry>>>);

/// A message that writes down how it ended when it is dropped.
struct Probe {
    sender: usize,
    seq: u64,
    delivered: bool,
    handed_back: bool,
    ledger: Ledger,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let fate = match (self.delivered, self.handed_back) {
            (true, false) => Fate::Delivered,
            (false, false) => Fate::FreedUndelivered,
            (false, true) => Fate::HandedBack,
            (true, true) => panic!("delivered and handed back"),
        };
        self.ledger
            .0
            .lock()
            .unwrap()
            .push(((self.sender, self.seq), fate, thread::current().id()));
    }
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The destination drops its whole context.
    DropContext,
    /// The destination frees the proxy object and keeps running a while.
    FreeProxy,
}

/// Senders send as fast as they can until they get `Gone`; the destination
/// goes away after `after` deliveries. Every message is accounted for
/// exactly once.
fn mid_flight(kill: Kill, senders: usize, after: u64) {
    const CAP: u64 = 20_000;
    let ledger = Ledger::default();
    let delivered = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let d = delivered.clone();
    let dest = thread::spawn(move || {
        let mut ev = Context::new().unwrap();
        let proxy = ThreadProxy::new(&mut ev, None).unwrap();
        tx.send(proxy.sender(&ev).unwrap()).unwrap();
        run_until(&mut ev, Duration::from_secs(60), "deliveries", |_| {
            d.load(Ordering::Relaxed) >= after
        });
        match kill {
            Kill::DropContext => drop(ev),
            Kill::FreeProxy => {
                ev.free(proxy).unwrap();
                // Keep delivering (nothing: undelivered data is freed here).
                ev.set_wait_timeout(Duration::from_millis(1));
                for _ in 0..200 {
                    ev.loop_once().unwrap();
                }
                drop(ev);
            }
        }
        thread::current().id()
    });
    let sender = rx.recv().unwrap();
    let renewed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let sender = sender.clone();
            let ledger = ledger.clone();
            let d = delivered.clone();
            let renewed = renewed.clone();
            thread::spawn(move || {
                let mut heap = Talloc::new();
                let home = heap.new_context(None).unwrap();
                let mut seq = 0u64;
                loop {
                    if seq >= CAP {
                        // Enough queued: wait for the destination to go.
                        while sender.is_alive() {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                    let msg = heap
                        .alloc(
                            home,
                            Probe {
                                sender: s,
                                seq,
                                delivered: false,
                                handed_back: false,
                                ledger: ledger.clone(),
                            },
                        )
                        .unwrap();
                    heap.alloc_str(msg, "payload").unwrap();
                    let d = d.clone();
                    match sender.send(&mut heap, msg, move |ev, msg| {
                        ev.heap_mut()[msg].delivered = true;
                        d.fetch_add(1, Ordering::Relaxed);
                    }) {
                        Ok(()) => seq += 1,
                        Err(SendError::Gone { data }) => {
                            if data != msg {
                                // It left and came back: a new handle.
                                renewed.fetch_add(1, Ordering::Relaxed);
                                assert!(!heap.contains(msg));
                            }
                            assert_eq!(heap.parent(data).unwrap(), Some(home.erase()));
                            assert_eq!(heap.total_blocks(data).unwrap(), 2);
                            heap[data].handed_back = true;
                            heap.free(data).unwrap();
                            seq += 1;
                            break;
                        }
                        Err(e) => panic!("sender {s}: {e}"),
                    }
                }
                assert_eq!(heap.total_blocks(home).unwrap(), 1);
                heap.free(home).unwrap();
                heap.verify().unwrap();
                assert_eq!(heap.live_objects(), 0, "no leak on the sender");
                (seq, thread::current().id())
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for t in threads {
        attempts.push(t.join().expect("no panic in a sender"));
    }
    let dest_id = dest.join().expect("no panic on the destination");
    assert!(!sender.is_alive());

    let ledger = ledger.0.lock().unwrap();
    let mut fates: HashMap<(usize, u64), (Fate, ThreadId)> = HashMap::new();
    for &(id, fate, t) in ledger.iter() {
        assert!(fates.insert(id, (fate, t)).is_none(), "{id:?} ended twice");
    }
    let mut counts = [0u64; 3];
    for (s, &(n, sender_id)) in attempts.iter().enumerate() {
        // Per sender: a delivered prefix, then freed undelivered, then the
        // one handed back (the last attempt).
        let mut stage = 0;
        for seq in 0..n {
            let (fate, t) = *fates
                .get(&(s, seq))
                .unwrap_or_else(|| panic!("message {s}:{seq} never ended (leak)"));
            let st = match fate {
                Fate::Delivered => 0,
                Fate::FreedUndelivered => 1,
                Fate::HandedBack => 2,
            };
            assert!(st >= stage, "{s}:{seq} {fate:?} after a later stage");
            stage = st;
            counts[st] += 1;
            match fate {
                Fate::HandedBack => {
                    assert_eq!(seq, n - 1, "only the last is handed back");
                    assert_eq!(t, sender_id, "handed back to the sender");
                }
                _ => assert_eq!(t, dest_id, "{fate:?} on the destination thread"),
            }
        }
        assert_eq!(stage, 2, "sender {s} ended with Gone");
    }
    assert_eq!(
        fates.len() as u64,
        attempts.iter().map(|a| a.0).sum::<u64>(),
        "no message outside the attempts"
    );
    assert_eq!(counts[0], delivered.load(Ordering::Relaxed), "handler runs");
    assert!(counts[0] >= after);
    assert_eq!(counts[2], senders as u64);
    eprintln!(
        "{kill:?}: delivered {}, freed undelivered {}, handed back {} ({} with a renewed handle)",
        counts[0],
        counts[1],
        counts[2],
        renewed.load(Ordering::Relaxed)
    );
}

#[test]
fn fault_destination_dropped_mid_flight() {
    mid_flight(Kill::DropContext, 4, 500);
}

#[test]
fn fault_proxy_freed_mid_flight() {
    mid_flight(Kill::FreeProxy, 4, 500);
}

#[test]
fn fault_sender_thread_exits_with_messages_queued() {
    let mut ev = Context::new().unwrap();
    let proxy = ThreadProxy::new(&mut ev, None).unwrap();
    let sender = proxy.sender(&ev).unwrap();
    let base = ev.heap().live_objects();
    let ledger = Ledger::default();
    let got = Arc::new(Mutex::new(Vec::new()));
    const SENDERS: usize = 8;
    const EACH: u64 = 100;
    let mut ids = Vec::new();
    for s in 0..SENDERS {
        let sender = sender.clone();
        let ledger = ledger.clone();
        let got = got.clone();
        // Each thread sends, drops its heap and exits before the loop runs.
        let id = thread::spawn(move || {
            let mut heap = Talloc::new();
            for seq in 0..EACH {
                let msg = heap
                    .alloc(
                        None,
                        Probe {
                            sender: s,
                            seq,
                            delivered: false,
                            handed_back: false,
                            ledger: ledger.clone(),
                        },
                    )
                    .unwrap();
                let got = got.clone();
                sender
                    .send(&mut heap, msg, move |ev, msg| {
                        ev.heap_mut()[msg].delivered = true;
                        got.lock().unwrap().push((s, seq));
                    })
                    .unwrap();
            }
            drop(heap);
            thread::current().id()
        })
        .join()
        .unwrap();
        ids.push(id);
    }
    assert!(ledger.0.lock().unwrap().is_empty(), "nothing dropped yet");
    run_until(&mut ev, Duration::from_secs(30), "every message", |_| {
        got.lock().unwrap().len() as u64 == SENDERS as u64 * EACH
    });
    let got = got.lock().unwrap();
    for s in 0..SENDERS {
        let mine: Vec<u64> = got.iter().filter(|m| m.0 == s).map(|m| m.1).collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
    let ledger = ledger.0.lock().unwrap();
    let me = thread::current().id();
    assert_eq!(ledger.len() as u64, SENDERS as u64 * EACH);
    assert!(ledger
        .iter()
        .all(|&(_, f, t)| f == Fate::Delivered && t == me));
    assert_eq!(ev.heap().live_objects(), base);
}

#[test]
fn fault_handler_panics() {
    let mut ev = Context::new().unwrap();
    let proxy = ThreadProxy::new(&mut ev, None).unwrap();
    let sender = proxy.sender(&ev).unwrap();
    let inbox = ev.heap_mut().new_context(None).unwrap();
    let base = ev.heap().live_objects();
    let ledger = Ledger::default();
    let seen = Arc::new(AtomicBool::new(false));
    let mut heap = Talloc::new();
    let probe = |seq| Probe {
        sender: 0,
        seq,
        delivered: false,
        handed_back: false,
        ledger: ledger.clone(),
    };
    // Message 0: keeps one child, then panics.
    let msg = heap.alloc(None, probe(0)).unwrap();
    let keep = heap.alloc(msg, probe(1)).unwrap();
    heap.alloc(msg, probe(2)).unwrap();
    let _ = keep;
    sender
        .send(&mut heap, msg, move |ev, msg| -> () {
            let kept = ev
                .heap()
                .children(msg)
                .unwrap()
                .find(|&k| ev.heap().downcast::<Probe>(k).map(|p| ev.heap()[p].seq) == Ok(1))
                .unwrap();
            ev.heap_mut().steal_any(inbox, kept).unwrap();
            panic!("handler failure");
        })
        .unwrap();
    // Message 1: an ordinary one behind it.
    let msg = heap.alloc(None, probe(3)).unwrap();
    let s = seen.clone();
    sender
        .send(&mut heap, msg, move |ev, msg| {
            ev.heap_mut()[msg].delivered = true;
            s.store(true, Ordering::Relaxed);
        })
        .unwrap();
    let payload = catch_unwind(AssertUnwindSafe(|| ev.loop_once()))
        .expect_err("the panic reaches the caller of loop_once");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"handler failure"));
    // The delivery context and what was not stolen are gone, on this thread.
    let me = thread::current().id();
    let mut freed: Vec<u64> = ledger.0.lock().unwrap().iter().map(|e| e.0 .1).collect();
    freed.sort_unstable();
    assert_eq!(freed, [0, 2]);
    assert!(ledger.0.lock().unwrap().iter().all(|e| e.2 == me));
    assert_eq!(
        ev.heap().total_blocks(inbox).unwrap(),
        2,
        "the stolen child stays"
    );
    assert_eq!(ev.heap().live_objects(), base + 1);
    ev.heap().verify().unwrap();
    // The loop keeps working: the next message, then new ones.
    ev.loop_once().unwrap();
    assert!(seen.load(Ordering::Relaxed));
    assert!(sender.is_alive());
    let again = Arc::new(AtomicBool::new(false));
    let a = again.clone();
    let msg = heap.alloc_str(None, "after").unwrap();
    sender
        .send(&mut heap, msg, move |_, _| a.store(true, Ordering::Relaxed))
        .unwrap();
    ev.loop_once().unwrap();
    assert!(again.load(Ordering::Relaxed));
    ev.free(inbox).unwrap();
    assert_eq!(ev.heap().live_objects(), base - 1);
}

#[test]
fn fault_handler_panics_in_c_convention() {
    // `schedule`: the fresh immediate and the data both go with the
    // delivery context when the handler panics.
    let mut dest = Context::new().unwrap();
    let proxy = ThreadProxy::new(&mut dest, None).unwrap();
    let sender = proxy.sender(&dest).unwrap();
    let base = dest.heap().live_objects();
    let mut ev = Context::new().unwrap();
    let im = ev.create_immediate(None).unwrap();
    let msg = ev.heap_mut().alloc_str(None, "x").unwrap();
    sender
        .schedule(&mut ev, im, msg, |_, _, _| -> () {
            panic!("schedule handler failure")
        })
        .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| dest.loop_once())).is_err());
    assert_eq!(dest.heap().live_objects(), base);
    assert!(!dest.has_events());
    dest.heap().verify().unwrap();
}

/// A message handler that sends the data on to a third loop: the subtree
/// crosses two heaps and ends freed on the last one.
#[test]
fn relay_through_two_loops() {
    let (tx, rx) = mpsc::channel::<ProxySender>();
    let hops = Arc::new(AtomicUsize::new(0));
    let h = hops.clone();
    let last = thread::spawn(move || {
        let mut ev = Context::new().unwrap();
        let proxy = ThreadProxy::new(&mut ev, None).unwrap();
        tx.send(proxy.sender(&ev).unwrap()).unwrap();
        run_until(&mut ev, Duration::from_secs(30), "relayed messages", |_| {
            h.load(Ordering::Relaxed) == 100
        });
        ev.heap().live_objects()
    });
    let to_last = rx.recv().unwrap();
    let mut mid = Context::new().unwrap();
    let mid_proxy = ThreadProxy::new(&mut mid, None).unwrap();
    let to_mid = mid_proxy.sender(&mid).unwrap();
    let base = mid.heap().live_objects();
    let relayed = Arc::new(AtomicUsize::new(0));
    let sender = thread::spawn({
        let relayed = relayed.clone();
        let hops = hops.clone();
        move || {
            let mut heap = Talloc::new();
            for i in 0..100u32 {
                let msg = heap.alloc(None, i).unwrap();
                heap.alloc_fmt(msg, format_args!("n{i}")).unwrap();
                let to_last = to_last.clone();
                let relayed = relayed.clone();
                let hops = hops.clone();
                to_mid
                    .send(&mut heap, msg, move |ev, msg| {
                        relayed.fetch_add(1, Ordering::Relaxed);
                        to_last
                            .send(ev.heap_mut(), msg, move |ev, msg: Ptr<u32>| {
                                assert_eq!(ev.heap().total_blocks(msg).unwrap(), 2);
                                assert_eq!(ev.heap()[msg], i);
                                hops.fetch_add(1, Ordering::Relaxed);
                            })
                            .unwrap();
                    })
                    .unwrap();
            }
        }
    });
    run_until(&mut mid, Duration::from_secs(30), "the relay", |_| {
        relayed.load(Ordering::Relaxed) == 100
    });
    sender.join().unwrap();
    assert_eq!(
        mid.heap().live_objects(),
        base,
        "nothing stays on the relay"
    );
    assert_eq!(
        last.join().unwrap(),
        1,
        "only the proxy is left on the last loop"
    );
}

/// Undelivered data must be freed on the destination's thread even when
/// the destination drops its loop while a sender is still inside `send`
/// (after queueing, before returning). Races a one-message send against
/// the loop's drop many times.
#[test]
fn fault_undelivered_data_freed_on_destination_in_a_race() {
    let rounds = if full_size() { 20_000 } else { 2_000 };
    let ledger = Ledger::default();
    let mut wrong = 0;
    for round in 0..rounds {
        let start = Arc::new(Barrier::new(2));
        let (tx, rx) = mpsc::channel();
        let st = start.clone();
        let dest = thread::spawn(move || {
            let mut ev = Context::new().unwrap();
            let proxy = ThreadProxy::new(&mut ev, None).unwrap();
            tx.send(proxy.sender(&ev).unwrap()).unwrap();
            st.wait();
            for _ in 0..round % 50 {
                std::hint::spin_loop();
            }
            drop(ev);
            thread::current().id()
        });
        let sender = rx.recv().unwrap();
        let mut heap = Talloc::new();
        let msg = heap
            .alloc(
                None,
                Probe {
                    sender: 0,
                    seq: round,
                    delivered: false,
                    handed_back: false,
                    ledger: ledger.clone(),
                },
            )
            .unwrap();
        start.wait();
        match sender.send(&mut heap, msg, |_, _| -> () { panic!("never delivered") }) {
            Ok(()) => {}
            Err(SendError::Gone { data }) => {
                heap[data].handed_back = true;
                heap.free(data).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        let dest_id = dest.join().unwrap();
        let entries = ledger.0.lock().unwrap().split_off(0);
        assert_eq!(entries.len(), 1, "round {round}: the message ended once");
        let (_, fate, t) = entries[0];
        match fate {
            Fate::HandedBack => assert_eq!(t, thread::current().id()),
            Fate::FreedUndelivered if t != dest_id => wrong += 1,
            Fate::FreedUndelivered => {}
            Fate::Delivered => unreachable!(),
        }
    }
    assert_eq!(wrong, 0, "undelivered data freed on the sender's thread");
}
