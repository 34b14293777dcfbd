//! `ThreadProxy` / `ProxySender`: rule E11 as our design states it, the
//! transfer refusals, and the C tests `multi_tevent_threaded` and
//! `multi_tevent_threaded_1`.
//!
//! Where the design departs from C on purpose, the test says so:
//! - messages from one sender arrive in the order they were sent (C's proxy
//!   reverses each batch);
//! - sending after the proxy or its loop went away is `SendError::Gone` with
//!   the data handed back (C: silently ignored, or a use-after-free);
//! - a transfer the rules refuse changes nothing (C has no check at all).

use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use talloc::{AnyPtr, Ptr, Talloc, TransferRule};
use tevent::{Context, FdFlags};
use tevent_thread::{ProxySender, SendError, ThreadProxy};

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Records, for each probe dropped, its id and the thread it was dropped on.
#[derive(Clone, Default)]
struct DropLog(Arc<Mutex<Vec<(u64, ThreadId)>>>);

impl DropLog {
    fn entries(&self) -> Vec<(u64, ThreadId)> {
        self.0.lock().unwrap().clone()
    }
    fn ids(&self) -> Vec<u64> {
        self.entries().into_iter().map(|(id, _)| id).collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A value whose drop records the thread it ran on.
struct Probe {
    id: u64,
    log: DropLog,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.log
            .0
            .lock()
            .unwrap()
            .push((self.id, thread::current().id()));
    }
}

/// Runs `ev` until `done`, failing after 10 s (the loop wakes every 20 ms
/// to look at the clock).
fn run_until(ev: &mut Context, what: &str, mut done: impl FnMut(&mut Context) -> bool) {
    ev.set_wait_timeout(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(ev) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        ev.loop_once().expect("loop_once");
    }
}

/// Runs a few passes of the loop that must not deliver anything.
fn spin(ev: &mut Context, passes: usize) {
    ev.set_wait_timeout(Duration::from_millis(1));
    for _ in 0..passes {
        ev.loop_once().expect("loop_once");
    }
}

/// A destination loop with a proxy and a sender for it.
fn dest() -> (Context, ThreadProxy, ProxySender) {
    let mut ev = Context::new().expect("context");
    let proxy = ThreadProxy::new(&mut ev, None).expect("proxy");
    let sender = proxy.sender(&ev).expect("sender");
    (ev, proxy, sender)
}

/// The delivery context's name says what it is (its exact spelling is the
/// implementation's: a constant name or its type's name).
fn is_delivery_name(name: &str) -> bool {
    name.to_ascii_lowercase().contains("delivery")
}

/// A report without the `#slot.generation` tags, to compare across heaps.
fn without_slots(report: &str) -> Vec<&str> {
    report
        .lines()
        .map(|l| l.rsplit_once(" #").map_or(l, |(head, _)| head))
        .collect()
}

/// Everything a refused transfer must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    report: String,
    blocks: usize,
    size: usize,
    live: usize,
    top: Vec<AnyPtr>,
}

fn snapshot(heap: &Talloc, root: impl Into<AnyPtr>) -> Snapshot {
    let root = root.into();
    heap.verify().expect("heap invariants");
    Snapshot {
        report: heap.report_full(root).expect("report_full"),
        blocks: heap.total_blocks(root).expect("total_blocks"),
        size: heap.total_size(root).expect("total_size"),
        live: heap.live_objects(),
        top: heap.top_level().collect(),
    }
}

/// Sends `data`, expecting a refusal for `object` under `rule`; checks that
/// nothing changed in `heap`, and that nothing reaches the destination.
fn assert_refused<T: ?Sized + 'static>(
    heap: &mut Talloc,
    data: Ptr<T>,
    object: AnyPtr,
    rule: TransferRule,
) {
    let (mut dest, _proxy, sender) = dest();
    let before_dest = dest.heap().live_objects();
    let before = snapshot(heap, data);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    match sender.send(heap, data, move |_, _| {
        r.fetch_add(1, Ordering::Relaxed);
    }) {
        Err(SendError::Transfer(e)) => {
            assert_eq!(e.rule, rule, "{e}");
            assert_eq!(e.object, object, "{e}");
            assert!(!e.to_string().is_empty());
        }
        other => panic!("expected a refusal for {rule:?}, got {other:?}"),
    }
    assert_eq!(
        snapshot(heap, data),
        before,
        "a refused send changed the tree"
    );
    assert_eq!(
        heap.check_transfer(data).unwrap().map(|e| e.rule),
        Some(rule)
    );
    spin(&mut dest, 3);
    assert_eq!(ran.load(Ordering::Relaxed), 0);
    assert_eq!(dest.heap().live_objects(), before_dest);
}

// ---------------------------------------------------------------------
// E11: setup and lifetime
// ---------------------------------------------------------------------

#[test]
fn e11_proxy_is_a_child_of_its_parent() {
    let mut ev = Context::new().unwrap();
    let owner = ev.heap_mut().new_context(None).unwrap();
    let proxy = ThreadProxy::new(&mut ev, owner).unwrap();
    assert_eq!(
        ev.heap().parent(proxy.erase()).unwrap(),
        Some(owner.erase())
    );
    assert_eq!(
        ev.heap().name(proxy.erase()).unwrap(),
        "tevent_thread_proxy"
    );
    // The proxy object cannot itself travel (it belongs to its loop).
    assert!(!ev.heap().is_send(proxy.erase()).unwrap());
    let sender = proxy.sender(&ev).unwrap();
    assert!(sender.is_alive());
    assert!(format!("{sender:?}").contains("open: true"));
    // Freeing an ancestor closes it.
    ev.free(owner).unwrap();
    assert!(!sender.is_alive());
    assert!(proxy.sender(&ev).is_err(), "a freed proxy gives no sender");
}

#[test]
fn e11_sender_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<ProxySender>();
    let (_ev, _proxy, sender) = dest();
    let s2 = sender.clone();
    thread::spawn(move || assert!(s2.is_alive()))
        .join()
        .unwrap();
}

#[test]
fn e11_send_moves_the_whole_subtree() {
    let (mut ev, _proxy, sender) = dest();
    let base = ev.heap().live_objects();
    let got = Rc::new(RefCell::new(None));
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap.alloc_str(None, "root").unwrap();
        let a = heap.alloc_slice(msg, &[1u32, 2, 3]).unwrap();
        let b = heap.alloc_str(msg, "b").unwrap();
        heap.alloc_str(a, "grandchild").unwrap();
        heap.set_name(b, "named child").unwrap();
        let sent_report = heap.report_full(msg).unwrap();
        let blocks = heap.total_blocks(msg).unwrap();
        sender
            .send(&mut heap, msg, move |ev, msg| {
                let heap = ev.heap();
                tx.send((
                    heap.report_full(msg).unwrap(),
                    heap.total_blocks(msg).unwrap(),
                ))
                .unwrap();
            })
            .unwrap();
        // Every handle into the subtree is stale here now.
        for p in [msg.erase(), a.erase(), b.erase()] {
            assert_eq!(heap.parent(p), Err(talloc::Error::Stale));
        }
        assert_eq!(heap.live_objects(), 0);
        heap.verify().unwrap();
        (sent_report, blocks)
    });
    let (sent_report, blocks) = h.join().unwrap();
    run_until(&mut ev, "the message", |_| {
        if let Ok(r) = rx.try_recv() {
            *got.borrow_mut() = Some(r);
        }
        got.borrow().is_some()
    });
    let (report, got_blocks) = got.borrow_mut().take().unwrap();
    assert_eq!(got_blocks, blocks);
    assert_eq!(got_blocks, 5, "4 objects and the name chunk of set_name");
    // Same shape, names, sizes and child order on the other side (the
    // slot numbers differ: another heap).
    assert_eq!(without_slots(&report), without_slots(&sent_report));
    ev.heap().verify().unwrap();
    assert_eq!(ev.heap().live_objects(), base, "freed after the handler");
}

#[test]
fn e11_handler_runs_on_the_destination_thread() {
    let (mut ev, _proxy, sender) = dest();
    let me = thread::current().id();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let other = thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap.alloc(None, 7u64).unwrap();
        sender
            .send(&mut heap, msg, move |ev, msg| {
                assert_eq!(ev.heap()[msg], 7);
                *s.lock().unwrap() = Some(thread::current().id());
            })
            .unwrap();
        thread::current().id()
    })
    .join()
    .unwrap();
    run_until(&mut ev, "the message", |_| seen.lock().unwrap().is_some());
    assert_eq!(seen.lock().unwrap().unwrap(), me);
    assert_ne!(other, me);
}

#[test]
fn e11_send_to_own_loop_is_never_inline() {
    let (mut ev, _proxy, sender) = dest();
    let ran = Rc::new(Cell::new(false));
    // The handler is Send, so it reports through a channel.
    let (tx, rx) = mpsc::channel();
    let msg = ev.heap_mut().alloc_str(None, "to myself").unwrap();
    sender
        .send(ev.heap_mut(), msg, move |ev, msg| {
            tx.send(ev.heap()[msg].to_string()).unwrap();
        })
        .unwrap();
    assert!(rx.try_recv().is_err(), "ran inline");
    run_until(&mut ev, "the message", |_| {
        if let Ok(s) = rx.try_recv() {
            assert_eq!(s, "to myself");
            ran.set(true);
        }
        ran.get()
    });
}

// ---------------------------------------------------------------------
// E11: delivery
// ---------------------------------------------------------------------

#[test]
fn e11_delivery_context_is_the_parent_inside_the_handler() {
    let (mut ev, _proxy, sender) = dest();
    let base = ev.heap().live_objects();
    let seen: Arc<Mutex<Option<AnyPtr>>> = Arc::default();
    let s = seen.clone();
    let mut heap = Talloc::new();
    let parent = heap.new_context(None).unwrap();
    let msg = heap.alloc_str(parent, "m").unwrap();
    sender
        .send(&mut heap, msg, move |ev, msg| {
            let heap = ev.heap();
            let d = heap.parent(msg).unwrap().expect("a delivery context");
            assert!(is_delivery_name(heap.name(d).unwrap()));
            assert_eq!(heap.parent(d).unwrap(), None, "top level");
            let kids: Vec<AnyPtr> = heap.children(d).unwrap().collect();
            assert_eq!(kids, [msg.erase()], "only the data under it");
            *s.lock().unwrap() = Some(d);
        })
        .unwrap();
    // The old parent stays in the sender's heap, empty.
    assert_eq!(heap.total_blocks(parent).unwrap(), 1);
    run_until(&mut ev, "the message", |_| seen.lock().unwrap().is_some());
    let d = seen.lock().unwrap().unwrap();
    assert!(
        !ev.heap().contains(d),
        "the delivery context goes after the handler"
    );
    assert_eq!(ev.heap().live_objects(), base);
}

#[test]
fn e11_data_is_freed_after_the_handler_on_the_destination() {
    let (mut ev, _proxy, sender) = dest();
    let base = ev.heap().live_objects();
    let log = DropLog::default();
    let l = log.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let sender_thread = thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap
            .alloc(
                None,
                Probe {
                    id: 1,
                    log: l.clone(),
                },
            )
            .unwrap();
        heap.alloc(
            msg,
            Probe {
                id: 2,
                log: l.clone(),
            },
        )
        .unwrap();
        sender
            .send(&mut heap, msg, move |ev, msg| {
                // Still alive inside the handler.
                assert_eq!(ev.heap()[msg].id, 1);
                assert_eq!(l.len(), 0);
                d.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        thread::current().id()
    })
    .join()
    .unwrap();
    assert_eq!(log.len(), 0, "nothing dropped on the way");
    run_until(&mut ev, "the message", |_| {
        done.load(Ordering::Relaxed) == 1
    });
    let entries = log.entries();
    assert_eq!(entries.len(), 2);
    let me = thread::current().id();
    assert!(entries.iter().all(|&(_, t)| t == me && t != sender_thread));
    assert_eq!(ev.heap().live_objects(), base);
}

#[test]
fn e11_stolen_data_survives_the_handler() {
    let (mut ev, _proxy, sender) = dest();
    let inbox = ev.heap_mut().new_context(None).unwrap();
    let log = DropLog::default();
    let l = log.clone();
    thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap
            .alloc(
                None,
                Probe {
                    id: 9,
                    log: l.clone(),
                },
            )
            .unwrap();
        heap.alloc_str(msg, "child").unwrap();
        sender
            .send(&mut heap, msg, move |ev, msg| {
                ev.heap_mut().steal(inbox, msg).unwrap();
            })
            .unwrap();
    })
    .join()
    .unwrap();
    run_until(&mut ev, "the message", |ev| {
        ev.heap().total_blocks(inbox).unwrap() > 1
    });
    spin(&mut ev, 2);
    assert_eq!(log.len(), 0, "kept");
    assert_eq!(ev.heap().total_blocks(inbox).unwrap(), 3);
    let msg = ev.heap().children(inbox).unwrap().next().unwrap();
    let msg = ev.heap().downcast::<Probe>(msg).unwrap();
    assert_eq!(ev.heap()[msg].id, 9);
    ev.free(inbox).unwrap();
    assert_eq!(log.entries(), [(9, thread::current().id())]);
    ev.heap().verify().unwrap();
}

#[test]
fn e11_fifo_per_sender_not_reversed() {
    // C delivers each batch newest first ([verified] 3, 2, 1, 0); ours keeps
    // the order in which one sender sent.
    let (mut ev, _proxy, sender) = dest();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    thread::spawn(move || {
        let mut heap = Talloc::new();
        for i in 0..200u64 {
            let o = o.clone();
            let msg = heap.alloc(None, i).unwrap();
            sender
                .send(&mut heap, msg, move |ev, msg| {
                    o.lock().unwrap().push(ev.heap()[msg])
                })
                .unwrap();
        }
    })
    .join()
    .unwrap();
    // The whole burst is one batch for the loop.
    run_until(&mut ev, "200 messages", |_| {
        order.lock().unwrap().len() == 200
    });
    assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
}

#[test]
fn e11_fifo_per_sender_with_concurrent_senders() {
    let (mut ev, _proxy, sender) = dest();
    const SENDERS: u64 = 4;
    const EACH: u64 = 500;
    let order = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let sender = sender.clone();
            let o = order.clone();
            thread::spawn(move || {
                let mut heap = Talloc::new();
                for i in 0..EACH {
                    let o = o.clone();
                    let msg = heap.alloc(None, (s, i)).unwrap();
                    sender
                        .send(&mut heap, msg, move |ev, msg| {
                            o.lock().unwrap().push(ev.heap()[msg])
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    run_until(&mut ev, "every message", |_| {
        order.lock().unwrap().len() as u64 == SENDERS * EACH
    });
    for t in threads {
        t.join().unwrap();
    }
    let order = order.lock().unwrap();
    for s in 0..SENDERS {
        let mine: Vec<u64> = order.iter().filter(|m| m.0 == s).map(|m| m.1).collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "sender {s}");
    }
}

#[test]
fn e11_one_message_per_loop_once() {
    // Remote messages join the immediate queue: one handler per pass.
    let (mut ev, _proxy, sender) = dest();
    let count = Arc::new(AtomicUsize::new(0));
    let mut heap = Talloc::new();
    for _ in 0..3 {
        let c = count.clone();
        let msg = heap.new_context(None).unwrap();
        sender
            .send(&mut heap, msg, move |_, _| {
                c.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    }
    for want in 1..=3 {
        ev.loop_once().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), want);
    }
}

#[test]
fn e11_names_and_internal_references_travel() {
    let (mut ev, _proxy, sender) = dest();
    let (tx, rx) = mpsc::channel();
    let mut heap = Talloc::new();
    let msg = heap.new_context(None).unwrap();
    heap.set_name(msg, "request 42").unwrap();
    let shared = heap.alloc_str(msg, "shared").unwrap();
    let holder = heap.new_context(msg).unwrap();
    heap.reference(holder, shared).unwrap();
    assert!(
        heap.check_transfer(msg).unwrap().is_none(),
        "inside to inside is fine"
    );
    sender
        .send(&mut heap, msg, move |ev, msg| {
            let heap = ev.heap();
            heap.verify().unwrap();
            let kids: Vec<AnyPtr> = heap.children(msg).unwrap().collect();
            let shared = kids
                .iter()
                .copied()
                .find(|&k| heap.downcast::<str>(k).is_ok())
                .unwrap();
            tx.send((
                heap.name(msg).unwrap().to_string(),
                heap.reference_count(shared).unwrap(),
                heap.total_blocks(msg).unwrap(),
            ))
            .unwrap();
        })
        .unwrap();
    assert_eq!(heap.live_objects(), 0);
    let mut got = None;
    run_until(&mut ev, "the message", |_| {
        got = got.take().or_else(|| rx.try_recv().ok());
        got.is_some()
    });
    let (name, refs, blocks) = got.unwrap();
    assert_eq!(name, "request 42");
    assert_eq!(refs, 1);
    assert_eq!(
        blocks, 5,
        "context, its name, string, holder, reference handle"
    );
    ev.heap().verify().unwrap();
}

#[test]
fn e11_memory_limit_is_given_back_on_send() {
    let (mut ev, _proxy, sender) = dest();
    let mut heap = Talloc::new();
    let limited = heap.new_context(None).unwrap();
    heap.set_memlimit(limited, 1000).unwrap();
    let big = heap.alloc_zeroed(limited, 900).unwrap();
    assert!(heap.alloc_zeroed(limited, 200).is_err(), "over the limit");
    sender.send(&mut heap, big, |_, _| {}).unwrap();
    // The bytes left with the data: the limited context has room again.
    heap.alloc_zeroed(limited, 900).unwrap();
    heap.verify().unwrap();
    spin(&mut ev, 2);
}

// ---------------------------------------------------------------------
// E11: C's calling convention (an immediate and private data)
// ---------------------------------------------------------------------

#[test]
fn e11_schedule_moves_the_immediate_and_the_data() {
    let (mut dest_ev, _proxy, sender) = dest();
    let base = dest_ev.heap().live_objects();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    thread::spawn(move || {
        let mut ev = Context::new().unwrap();
        let im = ev.create_immediate(None).unwrap();
        let msg = ev.heap_mut().alloc_str(None, "ping").unwrap();
        ev.heap_mut().alloc_str(msg, "child").unwrap();
        sender
            .schedule(&mut ev, im, msg, move |ev, im, msg| {
                let heap = ev.heap();
                assert_eq!(&heap[msg], "ping");
                // Both under the delivery context.
                let d = heap.parent(msg).unwrap().unwrap();
                assert_eq!(heap.parent(im.erase()).unwrap(), Some(d));
                assert!(is_delivery_name(heap.name(d).unwrap()));
                assert!(!ev.immediate_is_scheduled(im).unwrap());
                *s.lock().unwrap() = Some((im.erase(), msg.erase(), d));
            })
            .unwrap();
        // Both left the sender's loop.
        assert!(!ev.heap().contains(im.erase()));
        assert!(!ev.heap().contains(msg));
        assert_eq!(ev.heap().live_objects(), 0);
    })
    .join()
    .unwrap();
    run_until(&mut dest_ev, "the message", |_| {
        seen.lock().unwrap().is_some()
    });
    let (im, msg, d) = seen.lock().unwrap().unwrap();
    for p in [im, msg, d] {
        assert!(!dest_ev.heap().contains(p), "freed after the handler");
    }
    assert_eq!(dest_ev.heap().live_objects(), base);
    assert!(!dest_ev.has_events());
}

#[test]
fn e11_schedule_handler_may_keep_and_use_its_immediate() {
    let (mut dest_ev, _proxy, sender) = dest();
    let keep = dest_ev.heap_mut().new_context(None).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut ev = Context::new().unwrap();
    let im = ev.create_immediate(None).unwrap();
    let msg = ev.heap_mut().alloc(None, 5u32).unwrap();
    sender
        .schedule(&mut ev, im, msg, move |ev, im, msg| {
            ev.heap_mut().steal_any(keep, im.erase()).unwrap();
            ev.heap_mut().steal(keep, msg).unwrap();
            let r = r.clone();
            ev.schedule_immediate(im, move |ev, _| {
                assert_eq!(ev.heap()[msg], 5);
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        })
        .unwrap();
    run_until(&mut dest_ev, "the rescheduled immediate", |_| {
        runs.load(Ordering::Relaxed) == 1
    });
    assert_eq!(dest_ev.heap().total_blocks(keep).unwrap(), 3);
    dest_ev.free(keep).unwrap();
    assert!(!dest_ev.has_events());
}

#[test]
fn e11_schedule_from_inside_the_immediates_own_handler() {
    // C's usual pattern: a handler passes its own immediate on.
    let (mut dest_ev, _proxy, sender) = dest();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let mut ev = Context::new().unwrap();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, move |ev, me| {
        let msg = ev.heap_mut().alloc(None, 11u16).unwrap();
        let g = g.clone();
        sender
            .schedule(ev, me, msg, move |ev, _im, msg| {
                assert_eq!(ev.heap()[msg], 11);
                g.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    })
    .unwrap();
    ev.loop_once().unwrap();
    assert!(
        !ev.heap().contains(im.erase()),
        "the running immediate went"
    );
    assert!(!ev.has_events());
    assert_eq!(ev.heap().live_objects(), 0);
    run_until(&mut dest_ev, "the message", |_| {
        got.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn e11_two_proxies_on_one_loop_are_independent() {
    let mut ev = Context::new().unwrap();
    let a = ThreadProxy::new(&mut ev, None).unwrap();
    let b = ThreadProxy::new(&mut ev, None).unwrap();
    let (sa, sb) = (a.sender(&ev).unwrap(), b.sender(&ev).unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut heap = Talloc::new();
    for (i, s) in [&sa, &sb, &sa, &sb].into_iter().enumerate() {
        let o = order.clone();
        let msg = heap.alloc(None, i).unwrap();
        s.send(&mut heap, msg, move |ev, msg| {
            o.lock().unwrap().push(ev.heap()[msg])
        })
        .unwrap();
    }
    ev.free(a).unwrap();
    assert!(!sa.is_alive() && sb.is_alive());
    run_until(&mut ev, "b's messages", |_| {
        order.lock().unwrap().len() == 2
    });
    spin(&mut ev, 3);
    assert_eq!(*order.lock().unwrap(), [1, 3], "only b's, in order");
    let msg = heap.alloc(None, 9usize).unwrap();
    assert!(matches!(
        sa.send(&mut heap, msg, |_, _| {}),
        Err(SendError::Gone { .. })
    ));
    sb.send(&mut heap, msg, |_, _| {}).unwrap();
    ev.loop_once().unwrap();
}

#[test]
fn e11_schedule_refuses_a_scheduled_immediate() {
    let (mut dest_ev, _proxy, sender) = dest();
    let mut ev = Context::new().unwrap();
    let im = ev.create_immediate(None).unwrap();
    ev.schedule_immediate(im, |_, _| {}).unwrap();
    let msg = ev.heap_mut().alloc_str(None, "x").unwrap();
    let before = snapshot(ev.heap(), msg);
    match sender.schedule(&mut ev, im, msg, |_, _, _| -> () { panic!("must not run") }) {
        Err(SendError::ImmediateScheduled) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(ev.heap(), msg), before);
    assert!(ev.immediate_is_scheduled(im).unwrap(), "left as it was");
    spin(&mut dest_ev, 2);
}

#[test]
fn e11_schedule_with_refused_data_keeps_the_immediate() {
    let (mut dest_ev, _proxy, sender) = dest();
    let mut ev = Context::new().unwrap();
    let im = ev.create_immediate(None).unwrap();
    let msg = ev.heap_mut().alloc_str(None, "x").unwrap();
    ev.heap_mut().set_destructor(msg, |_, _| Ok(())).unwrap();
    match sender.schedule(&mut ev, im, msg, |_, _, _| -> () { panic!("must not run") }) {
        Err(SendError::Transfer(e)) => assert_eq!(e.rule, TransferRule::Destructor),
        other => panic!("{other:?}"),
    }
    assert!(ev.heap().contains(im.erase()), "the immediate stays");
    assert_eq!(&ev.heap()[msg], "x");
    spin(&mut dest_ev, 2);
}

#[test]
fn e11_stale_and_foreign_handles() {
    let (_ev, _proxy, sender) = dest();
    let mut heap = Talloc::new();
    let x = heap.alloc_str(None, "x").unwrap();
    heap.free(x).unwrap();
    match sender.send(&mut heap, x, |_, _| {}) {
        Err(SendError::Handle(_)) => {}
        other => panic!("{other:?}"),
    }
    let mut other = Talloc::new();
    let y = other.alloc_str(None, "y").unwrap();
    match sender.send(&mut heap, y, |_, _| {}) {
        Err(SendError::Handle(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(&other[y], "y");
    // An immediate of another loop is a handle error too.
    let mut ev1 = Context::new().unwrap();
    let mut ev2 = Context::new().unwrap();
    let im = ev2.create_immediate(None).unwrap();
    let msg = ev1.heap_mut().alloc_str(None, "m").unwrap();
    match sender.schedule(&mut ev1, im, msg, |_, _, _| {}) {
        Err(SendError::Handle(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(&ev1.heap()[msg], "m");
    assert!(ev2.heap().contains(im.erase()));
}

// ---------------------------------------------------------------------
// E11: the proxy or its loop going away (Gone, not a silent no-op or UB)
// ---------------------------------------------------------------------

#[test]
fn e11_send_after_proxy_freed_is_gone_with_the_data_back() {
    let (mut ev, proxy, sender) = dest();
    ev.free(proxy).unwrap();
    assert!(!sender.is_alive());
    let mut heap = Talloc::new();
    let parent = heap.new_context(None).unwrap();
    let msg = heap.alloc_str(parent, "back").unwrap();
    heap.alloc_str(msg, "child").unwrap();
    let before = snapshot(&heap, parent);
    match sender.send(&mut heap, msg, |_, _| -> () { panic!("must not run") }) {
        Err(SendError::Gone { data }) => {
            assert_eq!(data, msg, "noticed before the data left: same handle");
            assert_eq!(&heap[data], "back");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&heap, parent), before);
    let e: SendError<str> = SendError::Gone { data: msg };
    assert_eq!(e.to_string(), "the destination loop is gone");
}

#[test]
fn e11_send_after_loop_dropped_is_gone_with_the_data_back() {
    let (ev, _proxy, sender) = dest();
    drop(ev);
    assert!(!sender.is_alive());
    let h = thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap.alloc(None, [1u8; 16]).unwrap();
        match sender.send(&mut heap, msg, |_, _| -> () { panic!("must not run") }) {
            Err(SendError::Gone { data }) => assert_eq!(heap[data], [1u8; 16]),
            other => panic!("{other:?}"),
        }
        heap.verify().unwrap();
        heap.live_objects()
    });
    assert_eq!(h.join().unwrap(), 1);
}

#[test]
fn e11_freeing_the_proxy_frees_undelivered_data_on_the_destination() {
    let (mut ev, proxy, sender) = dest();
    let base = ev.heap().live_objects() - 1; // without the proxy
    let log = DropLog::default();
    let l = log.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let sender_thread = thread::spawn(move || {
        let mut heap = Talloc::new();
        for id in 0..10 {
            let msg = heap.alloc(None, Probe { id, log: l.clone() }).unwrap();
            heap.alloc(
                msg,
                Probe {
                    id: 100 + id,
                    log: l.clone(),
                },
            )
            .unwrap();
            let r = r.clone();
            sender
                .send(&mut heap, msg, move |_, _| {
                    r.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
        thread::current().id()
    })
    .join()
    .unwrap();
    // Deliver the first one, then close the proxy.
    ev.loop_once().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert_eq!(log.len(), 2);
    ev.free(proxy).unwrap();
    spin(&mut ev, 12);
    assert_eq!(ran.load(Ordering::Relaxed), 1, "no handler after the free");
    let entries = log.entries();
    assert_eq!(entries.len(), 20, "every undelivered message freed");
    let me = thread::current().id();
    assert!(entries.iter().all(|&(_, t)| t == me && t != sender_thread));
    let mut ids = log.ids();
    ids.sort_unstable();
    let mut want: Vec<u64> = (0..10).chain(100..110).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(ev.heap().live_objects(), base);
    ev.heap().verify().unwrap();
}

#[test]
fn e11_dropping_the_loop_frees_queued_data_on_its_thread() {
    let log = DropLog::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let dest_thread = thread::spawn(move || {
        let (ev, _proxy, sender) = dest();
        ready_tx.send(sender).unwrap();
        go_rx.recv().unwrap();
        drop(ev); // with messages queued, never delivered
        thread::current().id()
    });
    let sender = ready_rx.recv().unwrap();
    let mut heap = Talloc::new();
    for id in 0..5 {
        let msg = heap
            .alloc(
                None,
                Probe {
                    id,
                    log: log.clone(),
                },
            )
            .unwrap();
        sender
            .send(&mut heap, msg, |_, _| -> () { panic!("must not run") })
            .unwrap();
    }
    assert_eq!(heap.live_objects(), 0);
    go_tx.send(()).unwrap();
    let dest_id = dest_thread.join().unwrap();
    let entries = log.entries();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|&(_, t)| t == dest_id));
    assert!(!sender.is_alive());
}

// ---------------------------------------------------------------------
// Transfer refusals: nothing moves, nothing changes
// ---------------------------------------------------------------------

#[test]
fn refuse_pool() {
    let mut heap = Talloc::new();
    let msg = heap.new_context(None).unwrap();
    heap.alloc_str(msg, "plain").unwrap();
    let pool = heap.pool(msg, 1024).unwrap();
    let carved = heap.alloc_str(pool, "carved").unwrap();
    assert_refused(&mut heap, msg, pool.erase(), TransferRule::InPool);
    // The pool still serves allocations.
    assert!(heap.is_pooled(carved).unwrap());
    let more = heap.alloc_str(pool, "more").unwrap();
    assert!(heap.is_pooled(more).unwrap());
    heap.verify().unwrap();
}

#[test]
fn refuse_object_carved_from_a_pool_elsewhere() {
    // An object stolen out of its pool still lives in the pool's memory.
    let mut heap = Talloc::new();
    let pool = heap.pool(None, 1024).unwrap();
    let msg = heap.new_context(None).unwrap();
    let mid = heap.alloc_str(msg, "mid").unwrap();
    let carved = heap.alloc_str(pool, "carved").unwrap();
    heap.steal(mid, carved).unwrap();
    assert_refused(&mut heap, msg, carved.erase(), TransferRule::InPool);
    // And the root itself carved from a pool.
    let root = heap.alloc_str(pool, "root").unwrap();
    heap.steal(None, root).unwrap();
    assert_refused(&mut heap, root, root.erase(), TransferRule::InPool);
    assert_eq!(&heap[carved], "carved");
    heap.free(pool).unwrap();
    heap.verify().unwrap();
}

#[test]
fn refuse_destructor() {
    let mut heap = Talloc::new();
    let msg = heap.new_context(None).unwrap();
    let a = heap.alloc_str(msg, "a").unwrap();
    let deep = heap.alloc_str(a, "deep").unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    heap.set_destructor(deep, move |_, _| {
        c.set(c.get() + 1);
        Ok(())
    })
    .unwrap();
    assert_refused(&mut heap, msg, deep.erase(), TransferRule::Destructor);
    assert!(heap.has_destructor(deep).unwrap());
    // The destructor still runs, once, when the tree is freed here.
    heap.free(msg).unwrap();
    assert_eq!(calls.get(), 1);
    heap.verify().unwrap();
}

#[test]
fn refuse_destructor_on_the_root() {
    let mut heap = Talloc::new();
    let msg = heap.alloc_str(None, "m").unwrap();
    heap.set_destructor(msg, |_, _| Ok(())).unwrap();
    assert_refused(&mut heap, msg, msg.erase(), TransferRule::Destructor);
    // Clearing it makes the transfer possible.
    heap.clear_destructor(msg).unwrap();
    let (mut ev, _proxy, sender) = dest();
    sender.send(&mut heap, msg, |_, _| {}).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn refuse_not_send() {
    let mut heap = Talloc::new();
    let msg = heap.new_context(None).unwrap();
    let a = heap.alloc_str(msg, "a").unwrap();
    let rc = Rc::new(5);
    let local = heap.alloc_local(a, rc.clone()).unwrap();
    heap.alloc_str(msg, "after").unwrap();
    assert_refused(&mut heap, msg, local.erase(), TransferRule::NotSend);
    assert_eq!(Rc::strong_count(&rc), 2, "not dropped, not copied");
    assert_eq!(*heap[local], 5);
    heap.free(msg).unwrap();
    assert_eq!(Rc::strong_count(&rc), 1);
}

#[test]
fn refuse_immediate_in_the_subtree() {
    let mut ev = Context::new().unwrap();
    let msg = ev.heap_mut().new_context(None).unwrap();
    let a = ev.heap_mut().alloc_str(msg, "a").unwrap();
    let im = ev.create_immediate(a).unwrap();
    assert_refused(ev.heap_mut(), msg, im.erase(), TransferRule::NotSend);
    // The immediate still works.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ev.schedule_immediate(im, move |_, _| r.set(true)).unwrap();
    ev.loop_once().unwrap();
    assert!(ran.get());
}

#[test]
fn refuse_scheduled_immediate_in_the_subtree() {
    let mut ev = Context::new().unwrap();
    let msg = ev.heap_mut().new_context(None).unwrap();
    let im = ev.create_immediate(msg).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    ev.schedule_immediate(im, move |_, _| r.set(true)).unwrap();
    assert_refused(ev.heap_mut(), msg, im.erase(), TransferRule::NotSend);
    assert!(ev.immediate_is_scheduled(im).unwrap(), "still queued");
    ev.loop_once().unwrap();
    assert!(ran.get());
}

#[test]
fn refuse_timer_in_the_subtree() {
    let mut ev = Context::new().unwrap();
    let msg = ev.heap_mut().new_context(None).unwrap();
    let a = ev.heap_mut().alloc_str(msg, "a").unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let t = ev
        .add_timer(a, Duration::from_millis(1), move |_, _, _| f.set(true))
        .unwrap();
    assert_refused(ev.heap_mut(), msg, t.erase(), TransferRule::NotSend);
    ev.set_wait_timeout(Duration::from_secs(5));
    ev.loop_once().unwrap();
    assert!(fired.get(), "the timer still fires");
}

#[test]
fn refuse_fd_event_in_the_subtree() {
    let mut ev = Context::new().unwrap();
    let msg = ev.heap_mut().new_context(None).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let fde = ev
        .add_fd(msg, a, FdFlags::WRITE, move |_, _, _| f.set(true))
        .unwrap();
    assert_refused(ev.heap_mut(), msg, fde.erase(), TransferRule::NotSend);
    ev.set_wait_timeout(Duration::from_secs(5));
    ev.loop_once().unwrap();
    assert!(fired.get(), "the fd event still fires");
}

#[test]
fn refuse_reference_from_outside() {
    let mut heap = Talloc::new();
    let outside = heap.new_context(None).unwrap();
    let msg = heap.new_context(None).unwrap();
    let inner = heap.alloc_str(msg, "inner").unwrap();
    heap.reference(outside, inner).unwrap();
    let out_before = snapshot(&heap, outside);
    assert_refused(
        &mut heap,
        msg,
        inner.erase(),
        TransferRule::OutsideReference,
    );
    assert_eq!(snapshot(&heap, outside), out_before);
    assert_eq!(heap.reference_count(inner).unwrap(), 1);
    // The reference still works: freeing the parent leaves inner alive
    // under the reference's owner.
    heap.free(msg).unwrap();
    assert_eq!(heap.parent(inner).unwrap(), Some(outside.erase()));
    heap.verify().unwrap();
}

#[test]
fn refuse_reference_to_outside() {
    let mut heap = Talloc::new();
    let target = heap.alloc_str(None, "target").unwrap();
    let msg = heap.new_context(None).unwrap();
    let holder = heap.new_context(msg).unwrap();
    heap.reference(holder, target).unwrap();
    let handle = heap.children(holder).unwrap().next().unwrap();
    assert_refused(&mut heap, msg, handle, TransferRule::OutsideReference);
    assert_eq!(heap.reference_count(target).unwrap(), 1);
    heap.free(msg).unwrap();
    assert_eq!(heap.reference_count(target).unwrap(), 0);
    heap.verify().unwrap();
}

#[test]
fn refuse_reports_the_first_offender_and_a_retry_works() {
    // Two offenders: fixing the one reported moves on to the next; once
    // none is left, the same data goes through.
    let mut heap = Talloc::new();
    let msg = heap.new_context(None).unwrap();
    let local = heap.alloc_local(msg, Rc::new(())).unwrap();
    let with_dtor = heap.alloc_str(msg, "d").unwrap();
    heap.set_destructor(with_dtor, |_, _| Ok(())).unwrap();
    let first = heap.check_transfer(msg).unwrap().unwrap();
    assert!(first.object == local.erase() || first.object == with_dtor.erase());
    heap.free(local).unwrap();
    assert_refused(&mut heap, msg, with_dtor.erase(), TransferRule::Destructor);
    heap.clear_destructor(with_dtor).unwrap();
    let (mut ev, _proxy, sender) = dest();
    let (tx, rx) = mpsc::channel();
    sender
        .send(&mut heap, msg, move |ev, msg| {
            tx.send(ev.heap().total_blocks(msg).unwrap()).unwrap();
        })
        .unwrap();
    ev.loop_once().unwrap();
    assert_eq!(rx.try_recv().unwrap(), 2);
}

// ---------------------------------------------------------------------
// E13 (as it applies here): a loop blocked in the kernel wakes up
// ---------------------------------------------------------------------

fn wakes_a_blocked_loop(backend: &str) {
    let mut ev = Context::with_backend(backend).unwrap();
    let proxy = ThreadProxy::new(&mut ev, None).unwrap();
    let sender = proxy.sender(&ev).unwrap();
    ev.set_wait_timeout(Duration::from_secs(30));
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        let mut heap = Talloc::new();
        let msg = heap.alloc(None, 1u8).unwrap();
        sender
            .send(&mut heap, msg, move |_, _| {
                g.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    });
    let start = Instant::now();
    // The first pass blocks in the backend until the wake-up, then may
    // return without running anything (the wake-up fd drained); the
    // message runs by the second pass at the latest.
    for _ in 0..2 {
        if got.load(Ordering::Relaxed) == 0 {
            ev.loop_once().unwrap();
        }
    }
    assert_eq!(got.load(Ordering::Relaxed), 1);
    assert!(start.elapsed() < Duration::from_secs(10), "not woken");
    t.join().unwrap();
}

#[test]
fn e13_send_wakes_a_blocked_epoll_loop() {
    wakes_a_blocked_loop("epoll");
}

#[test]
fn e13_send_wakes_a_blocked_poll_loop() {
    wakes_a_blocked_loop("poll");
}

// ---------------------------------------------------------------------
// The C tests
// ---------------------------------------------------------------------

/// `multi_tevent_threaded`: 100 threads each send one message carrying
/// talloc data to the master; all 100 arrive (10 s timeout).
#[test]
fn multi_tevent_threaded() {
    const THREADS: usize = 100;
    let (mut ev, _proxy, sender) = dest();
    let base = ev.heap().live_objects();
    let seen = Arc::new(Mutex::new(vec![0u32; THREADS]));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let sender = sender.clone();
            let seen = seen.clone();
            thread::spawn(move || {
                let mut heap = Talloc::new();
                let msg = talloc::alloc_format!(heap, None, "thread {i}").unwrap();
                heap.alloc(msg, i).unwrap();
                sender
                    .send(&mut heap, msg, move |ev, msg| {
                        let heap = ev.heap();
                        assert_eq!(&heap[msg], format!("thread {i}"));
                        let kid = heap.children(msg).unwrap().next().unwrap();
                        assert_eq!(heap[heap.downcast::<usize>(kid).unwrap()], i);
                        seen.lock().unwrap()[i] += 1;
                    })
                    .unwrap();
                assert_eq!(heap.live_objects(), 0);
            })
        })
        .collect();
    run_until(&mut ev, "100 messages", |_| {
        seen.lock().unwrap().iter().sum::<u32>() == THREADS as u32
    });
    for t in threads {
        t.join().unwrap();
    }
    assert!(seen.lock().unwrap().iter().all(|&n| n == 1));
    assert_eq!(ev.heap().live_objects(), base);
}

/// The request of `multi_tevent_threaded_1`: who sent it, where to reply,
/// and a payload that travels there and back.
struct Request {
    thread: usize,
    reply_to: ProxySender,
    hops: u32,
}

/// `multi_tevent_threaded_1`: each of 100 threads has its own loop and
/// proxy, sends a request to the master, and the master sends the same
/// data back through the thread's proxy.
#[test]
fn multi_tevent_threaded_1() {
    const THREADS: usize = 100;
    let (mut ev, _proxy, master) = dest();
    let base = ev.heap().live_objects();
    let served = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let master = master.clone();
            let served = served.clone();
            thread::spawn(move || {
                let mut ev = Context::new().unwrap();
                let proxy = ThreadProxy::new(&mut ev, None).unwrap();
                let reply_to = proxy.sender(&ev).unwrap();
                let base = ev.heap().live_objects();
                let req = ev
                    .heap_mut()
                    .alloc(
                        None,
                        Request {
                            thread: i,
                            reply_to,
                            hops: 0,
                        },
                    )
                    .unwrap();
                ev.heap_mut()
                    .alloc_fmt(req, format_args!("payload of {i}"))
                    .unwrap();
                let me = thread::current().id();
                let answered = Arc::new(AtomicUsize::new(0));
                let a = answered.clone();
                master
                    .send(ev.heap_mut(), req, move |mev, req| {
                        // On the master: pass the same block back.
                        served.fetch_add(1, Ordering::Relaxed);
                        mev.heap_mut()[req].hops += 1;
                        let reply_to = mev.heap()[req].reply_to.clone();
                        reply_to
                            .send(mev.heap_mut(), req, move |ev, req| {
                                // Back on the thread, with its payload.
                                assert_eq!(thread::current().id(), me);
                                let heap = ev.heap();
                                assert_eq!(heap[req].thread, i);
                                assert_eq!(heap[req].hops, 1);
                                let kid = heap.children(req).unwrap().next().unwrap();
                                let s = heap.downcast::<str>(kid).unwrap();
                                assert_eq!(&heap[s], format!("payload of {i}"));
                                a.fetch_add(1, Ordering::Relaxed);
                            })
                            .unwrap();
                    })
                    .unwrap();
                run_until(&mut ev, "the reply", |_| {
                    answered.load(Ordering::Relaxed) == 1
                });
                assert_eq!(ev.heap().live_objects(), base, "the reply was freed");
                ev.heap().verify().unwrap();
            })
        })
        .collect();
    run_until(&mut ev, "100 requests", |_| {
        served.load(Ordering::Relaxed) == THREADS
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ev.heap().live_objects(), base);
}

/// A delivery handler (in both conventions) may fail: its error comes out
/// of the destination's `loop_once`, after the delivery was freed; the
/// destination's error hook sees it first when one is set.
#[test]
fn a_failing_delivery_handler_is_reported_on_the_destination() {
    let mut dest = Context::new().unwrap();
    dest.set_wait_timeout(Duration::from_secs(5));
    let sender = ThreadProxy::new(&mut dest, None)
        .unwrap()
        .sender(&dest)
        .unwrap();
    let base = dest.heap().live_objects();
    let s = sender.clone();
    thread::spawn(move || {
        let mut heap = Talloc::new();
        let msg = heap.alloc_str(None, "not a number").unwrap();
        s.send(&mut heap, msg, |ev, msg| {
            let n: u32 = ev.heap().get(msg)?.parse()?;
            let _ = n;
            Ok(())
        })
        .unwrap();
        let mut ev = Context::new().unwrap();
        let im = ev.create_immediate(None).unwrap();
        let msg = ev.heap_mut().alloc_str(None, "x").unwrap();
        s.schedule(&mut ev, im, msg, |_, _, _| {
            Err("refused by the handler".into())
        })
        .unwrap();
    })
    .join()
    .unwrap();
    let message = |e: tevent::Error| match e {
        tevent::Error::Callback(f) => f.error().to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        message(dest.loop_once().unwrap_err()),
        "invalid digit found in string"
    );
    assert_eq!(dest.heap().live_objects(), base, "the delivery was freed");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    dest.set_error_hook(move |_, e| {
        s2.borrow_mut().push(e.to_string());
        Ok(())
    });
    dest.loop_once().unwrap();
    assert_eq!(*seen.borrow(), ["refused by the handler"]);
    assert_eq!(dest.heap().live_objects(), base);
}
