//! Property test: random programs of add / free / steal / reschedule of fd,
//! timer and immediate events, interleaved with `loop_once`, run against a
//! model of which callbacks must and must not run, and in what order.
//!
//! The model knows the heap tree (so a free takes a whole subtree), the
//! immediate queue (FIFO, reschedule to the tail), the timers ordered by
//! (deadline, insertion) and the fds that are readable. Immediates and
//! timers are predicted exactly; for fds it knows the set one of which must
//! run (the backends differ in which).
//!
//! Closures sent through the context's `Remote` (from the test's thread:
//! the queue does not care which thread sends) are modelled by rule E4:
//! every `loop_once` first moves what was sent onto the tail of the
//! immediate queue, where each runs as one immediate. A remote closure may
//! reschedule an immediate and send another remote closure when it runs,
//! which interleaves remote work with local immediates.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use talloc::AnyPtr;
use tevent::{Context, Error, FdEvent, FdFlags, Immediate, Remote, TimerEvent};

/// Remote closures are numbered from here in the model's immediate queue
/// (below are the objects).
const REMOTE: usize = 1 << 20;

#[derive(Debug, Clone)]
enum Op {
    NewCtx {
        parent: usize,
    },
    AddTimer {
        parent: usize,
        delay: u8,
    },
    AddImm {
        parent: usize,
    },
    AddFd {
        parent: usize,
        readable: bool,
    },
    /// An immediate whose callback frees `victim`.
    AddKiller {
        parent: usize,
        victim: usize,
    },
    Free {
        target: usize,
    },
    Steal {
        target: usize,
        parent: usize,
    },
    Reschedule {
        target: usize,
    },
    Cancel {
        target: usize,
    },
    UpdateTimer {
        target: usize,
        delay: u8,
    },
    SetFdFlags {
        target: usize,
        on: bool,
    },
    /// A remote closure; when it runs, it reschedules `resched` (if that is
    /// a live immediate) and, if `chain`, sends one more remote closure.
    Remote {
        resched: usize,
        chain: bool,
    },
    LoopOnce,
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0usize..64;
    prop_oneof![
        i().prop_map(|parent| Op::NewCtx { parent }),
        (i(), any::<u8>()).prop_map(|(parent, delay)| Op::AddTimer { parent, delay }),
        i().prop_map(|parent| Op::AddImm { parent }),
        (i(), any::<bool>()).prop_map(|(parent, readable)| Op::AddFd { parent, readable }),
        (i(), i()).prop_map(|(parent, victim)| Op::AddKiller { parent, victim }),
        i().prop_map(|target| Op::Free { target }),
        (i(), i()).prop_map(|(target, parent)| Op::Steal { target, parent }),
        i().prop_map(|target| Op::Reschedule { target }),
        i().prop_map(|target| Op::Cancel { target }),
        (i(), any::<u8>()).prop_map(|(target, delay)| Op::UpdateTimer { target, delay }),
        (i(), any::<bool>()).prop_map(|(target, on)| Op::SetFdFlags { target, on }),
        (i(), any::<bool>()).prop_map(|(resched, chain)| Op::Remote { resched, chain }),
        Just(Op::LoopOnce),
        Just(Op::LoopOnce),
        Just(Op::LoopOnce),
    ]
}

#[allow(dead_code)] // the peer socket is only kept open
enum Real {
    Ctx,
    Timer(TimerEvent),
    Imm(Immediate),
    /// The event and the peer socket that keeps it readable.
    Fd(FdEvent<UnixStream>, UnixStream),
}

struct Obj {
    ptr: AnyPtr,
    parent: Option<usize>,
    alive: bool,
    real: Real,
    /// Timers: the queue key; fds: readable and flags on.
    key: (u64, u64),
    readable: bool,
    on: bool,
    victim: Option<usize>,
}

struct World {
    ev: Context,
    objs: Vec<Obj>,
    log: Rc<RefCell<Vec<usize>>>,
    /// What remote closures ran (they are `Send`: no `Rc`).
    remote_log: Arc<Mutex<Vec<usize>>>,
    remote: Remote,
    /// Remote closures sent and not yet taken by a `loop_once`.
    remote_sent: Vec<usize>,
    /// What each remote closure does when it runs: (immediate, chain).
    remote_acts: Vec<(Option<usize>, bool)>,
    imm_queue: Vec<usize>,
    timers: BTreeSet<(u64, u64, usize)>,
    seq: u64,
    base: Instant,
}

impl World {
    fn new(backend: &str) -> World {
        let mut ev = Context::with_backend(backend).unwrap();
        ev.set_wait_timeout(Duration::from_millis(1));
        let remote = ev.remote().unwrap();
        World {
            ev,
            objs: Vec::new(),
            log: Rc::default(),
            remote_log: Arc::default(),
            remote,
            remote_sent: Vec::new(),
            remote_acts: Vec::new(),
            imm_queue: Vec::new(),
            timers: BTreeSet::new(),
            seq: 0,
            base: Instant::now() - Duration::from_secs(10),
        }
    }

    fn parent(&self, k: usize) -> Option<usize> {
        let k = k % (self.objs.len() + 1);
        (k > 0).then(|| k - 1)
    }

    fn target(&self, k: usize) -> Option<usize> {
        (!self.objs.is_empty()).then(|| k % self.objs.len())
    }

    fn parent_ptr(&self, p: Option<usize>) -> Option<AnyPtr> {
        p.map(|p| self.objs[p].ptr)
    }

    fn push(&mut self, ptr: AnyPtr, parent: Option<usize>, real: Real) -> usize {
        self.objs.push(Obj {
            ptr,
            parent,
            alive: true,
            real,
            key: (0, 0),
            readable: false,
            on: true,
            victim: None,
        });
        self.objs.len() - 1
    }

    fn within(&self, mut x: usize, root: usize) -> bool {
        loop {
            if x == root {
                return true;
            }
            match self.objs[x].parent {
                Some(p) => x = p,
                None => return false,
            }
        }
    }

    /// The model's free: the object and its whole subtree.
    fn model_free(&mut self, root: usize) {
        for x in 0..self.objs.len() {
            if self.objs[x].alive && self.within(x, root) {
                self.objs[x].alive = false;
                self.imm_queue.retain(|q| *q != x);
                let (a, b) = self.objs[x].key;
                self.timers.remove(&(a, b, x));
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn recorder(&self, me: usize) -> impl Fn() + 'static {
        let log = self.log.clone();
        move || log.borrow_mut().push(me)
    }

    fn apply(&mut self, op: &Op) {
        let n = self.objs.len();
        let adds = match *op {
            Op::NewCtx { parent }
            | Op::AddTimer { parent, .. }
            | Op::AddImm { parent }
            | Op::AddFd { parent, .. }
            | Op::AddKiller { parent, .. } => Some(parent),
            _ => None,
        };
        if let Some(p) = adds.and_then(|k| self.parent(k)) {
            if !self.objs[p].alive {
                // Under a freed parent nothing can be added.
                let pp = self.objs[p].ptr;
                assert_eq!(self.ev.create_immediate(pp).unwrap_err(), Error::Stale);
                let e = self.ev.add_timer(pp, self.base, |_, _, _| {}).unwrap_err();
                assert_eq!(e, Error::Stale);
                return;
            }
        }
        match *op {
            Op::NewCtx { parent } => {
                let p = self.parent(parent);
                let pp = self.parent_ptr(p);
                let ptr = self.ev.heap_mut().new_context(pp).unwrap();
                self.push(ptr.erase(), p, Real::Ctx);
            }
            Op::AddTimer { parent, delay } => {
                let p = self.parent(parent);
                let rec = self.recorder(n);
                let when = self.base + Duration::from_millis(u64::from(delay));
                let t = self
                    .ev
                    .add_timer(self.parent_ptr(p), when, move |_, _, _| rec())
                    .unwrap();
                let i = self.push(t.erase(), p, Real::Timer(t));
                let seq = self.next_seq();
                self.objs[i].key = (u64::from(delay), seq);
                self.timers.insert((u64::from(delay), seq, i));
            }
            Op::AddImm { parent } | Op::AddKiller { parent, .. } => {
                let p = self.parent(parent);
                let victim = match *op {
                    Op::AddKiller { victim, .. } => self.target(victim),
                    _ => None,
                };
                let victim_ptr = victim.map(|v| self.objs[v].ptr);
                let rec = self.recorder(n);
                let im = self.ev.create_immediate(self.parent_ptr(p)).unwrap();
                self.ev
                    .schedule_immediate(im, move |ev, _| {
                        rec();
                        if let Some(v) = victim_ptr {
                            let _ = ev.free(v);
                        }
                    })
                    .unwrap();
                let i = self.push(im.erase(), p, Real::Imm(im));
                self.objs[i].victim = victim;
                self.imm_queue.push(i);
            }
            Op::AddFd { parent, readable } => {
                let p = self.parent(parent);
                let (s, mut peer) = UnixStream::pair().unwrap();
                if readable {
                    peer.write_all(b"x").unwrap();
                }
                let rec = self.recorder(n);
                let fde = self
                    .ev
                    .add_fd(self.parent_ptr(p), s, FdFlags::READ, move |_, _, _| rec())
                    .unwrap();
                let i = self.push(fde.erase(), p, Real::Fd(fde, peer));
                self.objs[i].readable = readable;
            }
            Op::Free { target } => {
                let Some(t) = self.target(target) else { return };
                let r = self.ev.free(self.objs[t].ptr);
                if self.objs[t].alive {
                    r.unwrap();
                    self.model_free(t);
                } else {
                    assert_eq!(r, Err(Error::Stale));
                }
            }
            Op::Steal { target, parent } => {
                let Some(t) = self.target(target) else { return };
                let p = self.parent(parent);
                if !self.objs[t].alive || p.is_some_and(|p| !self.objs[p].alive) {
                    return;
                }
                let (pp, tp) = (self.parent_ptr(p), self.objs[t].ptr);
                let r = self.ev.heap_mut().steal_any(pp, tp);
                if p.is_some_and(|p| self.within(p, t)) {
                    assert_eq!(r, Err(talloc::Error::Loop));
                } else {
                    r.unwrap();
                    self.objs[t].parent = p;
                }
            }
            Op::Reschedule { target } | Op::Cancel { target } => {
                let Some(t) = self.target(target) else { return };
                let Real::Imm(im) = self.objs[t].real else {
                    return;
                };
                let reschedule = matches!(op, Op::Reschedule { .. });
                let r = if reschedule {
                    self.ev.reschedule_immediate(im)
                } else {
                    self.ev.cancel_immediate(im)
                };
                if !self.objs[t].alive {
                    assert_eq!(r, Err(Error::Stale));
                    return;
                }
                r.unwrap();
                self.imm_queue.retain(|q| *q != t);
                if reschedule {
                    self.imm_queue.push(t);
                }
            }
            Op::UpdateTimer { target, delay } => {
                let Some(t) = self.target(target) else { return };
                let Real::Timer(te) = self.objs[t].real else {
                    return;
                };
                let r = self
                    .ev
                    .update_timer(te, self.base + Duration::from_millis(u64::from(delay)));
                if !self.objs[t].alive {
                    assert_eq!(r, Err(Error::Stale));
                    return;
                }
                r.unwrap();
                let (a, b) = self.objs[t].key;
                self.timers.remove(&(a, b, t));
                let seq = self.next_seq();
                self.objs[t].key = (u64::from(delay), seq);
                self.timers.insert((u64::from(delay), seq, t));
            }
            Op::SetFdFlags { target, on } => {
                let Some(t) = self.target(target) else { return };
                let Real::Fd(fde, _) = &self.objs[t].real else {
                    return;
                };
                let flags = if on { FdFlags::READ } else { FdFlags::empty() };
                let r = self.ev.set_fd_flags(*fde, flags);
                if !self.objs[t].alive {
                    assert_eq!(r, Err(Error::Stale));
                    return;
                }
                r.unwrap();
                self.objs[t].on = on;
            }
            Op::Remote { resched, chain } => {
                let target = self
                    .target(resched)
                    .filter(|&t| matches!(self.objs[t].real, Real::Imm(_)));
                self.send_remote(target, chain);
            }
            Op::LoopOnce => self.loop_once(),
        }
        self.check();
    }

    /// Sends a remote closure that logs its number, reschedules `target`
    /// and, if `chain`, sends a plain one.
    fn send_remote(&mut self, target: Option<usize>, chain: bool) {
        let me = REMOTE + self.remote_acts.len();
        self.remote_acts.push((target, chain));
        let next = REMOTE + self.remote_acts.len();
        if chain {
            self.remote_acts.push((None, false));
        }
        let im = target.map(|t| match self.objs[t].real {
            Real::Imm(im) => im,
            _ => unreachable!(),
        });
        let log = self.remote_log.clone();
        let again = self.remote.clone();
        self.remote
            .schedule(move |ev: &mut Context| {
                log.lock().unwrap().push(me);
                if let Some(im) = im {
                    let _ = ev.reschedule_immediate(im);
                }
                if chain {
                    let log = log.clone();
                    again
                        .schedule(move |_: &mut Context| log.lock().unwrap().push(next))
                        .unwrap();
                }
            })
            .unwrap();
        self.remote_sent.push(me);
    }

    fn loop_once(&mut self) {
        self.log.borrow_mut().clear();
        self.ev.loop_once().unwrap();
        let mut ran = std::mem::take(&mut *self.log.borrow_mut());
        ran.append(&mut self.remote_log.lock().unwrap());
        // E4 step 2: what was sent joins the immediate queue.
        self.imm_queue.append(&mut self.remote_sent);
        if let Some(&head) = self.imm_queue.first() {
            assert_eq!(ran, [head], "the head immediate runs");
            self.imm_queue.remove(0);
            if head >= REMOTE {
                let (target, chain) = self.remote_acts[head - REMOTE];
                if let Some(t) = target.filter(|&t| self.objs[t].alive) {
                    self.imm_queue.retain(|q| *q != t);
                    self.imm_queue.push(t);
                }
                if chain {
                    self.remote_sent.push(head + 1);
                }
            } else if let Some(v) = self.objs[head].victim {
                if self.objs[v].alive {
                    self.model_free(v);
                }
            }
        } else if let Some(&(a, b, t)) = self.timers.iter().next() {
            assert_eq!(ran, [t], "the first timer fires");
            self.timers.remove(&(a, b, t));
            self.model_free(t);
        } else {
            let ready: Vec<usize> = (0..self.objs.len())
                .filter(|&i| {
                    let o = &self.objs[i];
                    o.alive && o.readable && o.on && matches!(o.real, Real::Fd(..))
                })
                .collect();
            if ready.is_empty() {
                assert!(ran.is_empty(), "nothing may run: {ran:?}");
            } else {
                assert_eq!(ran.len(), 1, "one fd handler");
                assert!(ready.contains(&ran[0]), "{ran:?} not ready");
            }
        }
    }

    fn check(&self) {
        for (i, o) in self.objs.iter().enumerate() {
            assert_eq!(self.ev.heap().contains(o.ptr), o.alive, "object {i}");
            if let (Real::Imm(im), true) = (&o.real, o.alive) {
                let queued = self.imm_queue.contains(&i);
                assert_eq!(self.ev.immediate_is_scheduled(*im), Ok(queued));
            }
        }
        let fds = self
            .objs
            .iter()
            .any(|o| o.alive && matches!(o.real, Real::Fd(..)));
        let expect = !self.imm_queue.is_empty() || !self.timers.is_empty() || fds;
        assert_eq!(self.ev.has_events(), expect);
    }
}

fn run(backend: &str, ops: &[Op]) {
    let mut w = World::new(backend);
    for op in ops {
        w.apply(op);
    }
    // Drain: every remaining immediate and timer runs, in model order.
    for o in &mut w.objs {
        o.on = false;
    }
    let fds: Vec<_> = w
        .objs
        .iter()
        .filter_map(|o| match (&o.real, o.alive) {
            (Real::Fd(f, _), true) => Some(*f),
            _ => None,
        })
        .collect();
    for f in fds {
        w.ev.set_fd_flags(f, FdFlags::empty()).unwrap();
    }
    while !w.imm_queue.is_empty() || !w.timers.is_empty() || !w.remote_sent.is_empty() {
        w.loop_once();
        w.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn model_epoll(ops in prop::collection::vec(op(), 1..60)) {
        run("epoll", &ops);
    }

    #[test]
    fn model_poll(ops in prop::collection::vec(op(), 1..60)) {
        run("poll", &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The long run: `cargo test -p tevent-rs --test model -- --ignored`.
    #[test]
    #[ignore]
    fn model_stress(ops in prop::collection::vec(op(), 1..300), poll in any::<bool>()) {
        run(if poll { "poll" } else { "epoll" }, &ops);
    }
}
