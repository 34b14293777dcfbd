//! Property test of tasks owned by the heap: random trees of contexts and
//! tasks (sleeping, yielding, awaiting requests, holding a signal stream,
//! or waiting for a wake from outside), random
//! frees of subtrees while tasks are suspended, random wakes and loop
//! passes. After every step: no freed task is polled again, every dropped
//! future's `Drop` ran exactly once (and only for freed or finished tasks),
//! nothing stays registered with the loop once no task is alive, and the
//! heap's `verify()` holds. On both backends.
//!
//! 256 cases by default; `PROPTEST_CASES=n` changes it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use talloc::AnyPtr;
use tevent::{Context, Task};

/// What a task does until it finishes.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// Sleeps `ms` milliseconds, `times` times.
    Sleep { ms: u8, times: u8 },
    /// Yields `times` times.
    Yield { times: u8 },
    /// Waits for `times` wakes from outside the loop.
    Wait { times: u8 },
    /// Awaits a request made the callback way under the task (a wakeup
    /// after `ms` milliseconds), `times` times.
    Request { ms: u8, times: u8 },
    /// Waits on a signal stream of its own that nothing signals, and
    /// then `ms` milliseconds (the stream's handler goes with the task).
    Signal { ms: u8 },
}

#[derive(Debug, Clone)]
enum Op {
    /// A context under the object `parent` (an index into what was made).
    Context(Option<usize>),
    /// A task under `parent`.
    Spawn(Option<usize>, Body),
    /// Frees the object.
    Free(usize),
    /// Wakes a waiting task from another thread.
    Wake(usize),
    /// One pass of the loop.
    Run,
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (0..3u8, 1..3u8).prop_map(|(ms, times)| Body::Sleep { ms, times }),
        (1..4u8).prop_map(|times| Body::Yield { times }),
        (1..3u8).prop_map(|times| Body::Wait { times }),
        (0..3u8, 1..3u8).prop_map(|(ms, times)| Body::Request { ms, times }),
        (0..3u8).prop_map(|ms| Body::Signal { ms }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let parent = || prop::option::weighted(0.7, 0..64usize);
    prop_oneof![
        2 => parent().prop_map(Op::Context),
        4 => (parent(), body()).prop_map(|(p, b)| Op::Spawn(p, b)),
        2 => (0..64usize).prop_map(Op::Free),
        2 => (0..64usize).prop_map(Op::Wake),
        5 => Just(Op::Run),
    ]
}

/// A task's probes: how often it was polled and dropped, and its waker.
#[derive(Default)]
struct Probe {
    polls: Cell<u32>,
    drops: Cell<u32>,
    waker: RefCell<Option<Waker>>,
    wakes: Cell<u8>,
}

/// Wraps a task's body to count its polls and its drop.
struct Probed<F> {
    inner: Pin<Box<F>>,
    probe: Rc<Probe>,
}

impl<F: Future> Future for Probed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        self.probe.polls.set(self.probe.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

impl<F> Drop for Probed<F> {
    fn drop(&mut self) {
        self.probe.drops.set(self.probe.drops.get() + 1);
    }
}

/// Waits until the probe has been woken `n` times from outside.
fn wait_for_wakes(probe: Rc<Probe>, n: u8) -> impl Future<Output = ()> {
    std::future::poll_fn(move |cx| {
        if probe.wakes.get() >= n {
            return Poll::Ready(());
        }
        *probe.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
}

fn spawn(ev: &mut Context, parent: Option<AnyPtr>, body: Body, probe: Rc<Probe>) -> Task<()> {
    let p = probe.clone();
    let work = async move {
        match body {
            Body::Sleep { ms, times } => {
                for _ in 0..times {
                    tevent::sleep(Duration::from_millis(ms.into())).await;
                }
            }
            Body::Yield { times } => {
                for _ in 0..times {
                    tevent::yield_now().await;
                }
            }
            Body::Wait { times } => wait_for_wakes(p, times).await,
            Body::Request { ms, times } => {
                for _ in 0..times {
                    let d = Duration::from_millis(ms.into());
                    let req = tevent::with_task(|ev, me| ev.wakeup_send(me, d)).expect("request");
                    tevent::recv(req).await.expect("woken");
                }
            }
            Body::Signal { ms } => {
                let _quiet = tevent::signals(tevent::Signal::SIGWINCH, tevent::SaFlags::SA_RESTART)
                    .expect("signal stream");
                tevent::sleep(Duration::from_millis(ms.into())).await;
            }
        }
    };
    let fut = Probed {
        inner: Box::pin(work),
        probe,
    };
    ev.spawn(parent, fut).expect("spawn")
}

/// What the test made, in order.
enum Made {
    Context(AnyPtr),
    Task {
        task: Task<()>,
        probe: Rc<Probe>,
        /// Polls seen when the task was freed (by anyone): none may follow.
        polls_at_free: Option<u32>,
    },
}

impl Made {
    fn ptr(&self) -> AnyPtr {
        match self {
            Made::Context(p) => *p,
            Made::Task { task, .. } => task.erase(),
        }
    }
}

fn check(ev: &mut Context, made: &mut [Made]) -> Result<(), TestCaseError> {
    prop_assert_eq!(ev.heap().verify(), Ok(()));
    let mut live_tasks = 0;
    for m in made.iter_mut() {
        if let Made::Task {
            task,
            probe,
            polls_at_free,
        } = m
        {
            let alive = ev.heap().contains(&*task);
            if alive {
                live_tasks += 1;
                prop_assert_eq!(probe.drops.get(), 0, "a live task's future was dropped");
            } else {
                // Gone (freed, or finished): dropped exactly once, never
                // polled again.
                prop_assert_eq!(
                    probe.drops.get(),
                    1,
                    "a gone task's future not dropped once"
                );
                let at = *polls_at_free.get_or_insert(probe.polls.get());
                prop_assert_eq!(probe.polls.get(), at, "a freed task was polled");
            }
        }
    }
    if live_tasks > 0 {
        prop_assert!(ev.has_events(), "a live task is not counted as work");
    } else {
        // Wakes queued for tasks that are gone may still wait for their
        // (empty) turn; once they had it, nothing is left: no timer, no
        // poll, nothing registered.
        for _ in 0..1000 {
            if !ev.has_events() {
                break;
            }
            ev.loop_once().unwrap();
        }
        prop_assert!(
            !ev.has_events(),
            "something stays registered with no task alive"
        );
    }
    Ok(())
}

fn run(backend: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut ev = Context::with_backend(backend).unwrap();
    ev.set_wait_timeout(Duration::from_millis(1));
    let mut made: Vec<Made> = Vec::new();
    for op in ops {
        let pick = |made: &[Made], i: usize| (!made.is_empty()).then(|| i % made.len());
        match op {
            Op::Context(p) => {
                let parent = p.and_then(|i| pick(&made, i)).map(|i| made[i].ptr());
                if let Ok(c) = ev.heap_mut().new_context(parent) {
                    made.push(Made::Context(c.erase()));
                }
            }
            Op::Spawn(p, body) => {
                let parent = p.and_then(|i| pick(&made, i)).map(|i| made[i].ptr());
                if parent.is_some_and(|p| !ev.heap().contains(p)) {
                    continue;
                }
                let probe = Rc::new(Probe::default());
                let task = spawn(&mut ev, parent, *body, probe.clone());
                made.push(Made::Task {
                    task,
                    probe,
                    polls_at_free: None,
                });
            }
            Op::Free(i) => {
                if let Some(i) = pick(&made, *i) {
                    let _ = ev.free(made[i].ptr());
                }
            }
            Op::Wake(i) => {
                if let Some(Made::Task { probe, .. }) = pick(&made, *i).map(|i| &made[i]) {
                    probe.wakes.set(probe.wakes.get().saturating_add(1));
                    if let Some(w) = probe.waker.borrow_mut().take() {
                        std::thread::spawn(move || w.wake()).join().unwrap();
                    }
                }
            }
            Op::Run => ev.loop_once().unwrap(),
        }
        check(&mut ev, &mut made)?;
    }
    // Free everything left: every future goes, the loop is empty.
    for m in &made {
        let _ = ev.free(m.ptr());
    }
    check(&mut ev, &mut made)?;
    prop_assert!(!ev.has_events());
    prop_assert_eq!(ev.heap().live_objects(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn tasks_follow_ownership_on_epoll(ops in prop::collection::vec(op(), 1..60)) {
        run("epoll", &ops)?;
    }

    #[test]
    fn tasks_follow_ownership_on_poll(ops in prop::collection::vec(op(), 1..60)) {
        run("poll", &ops)?;
    }
}
