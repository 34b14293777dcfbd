//! How tasks are woken and dropped: on the loop's own thread, taking turns
//! with immediates, per context when a thread has several, harmlessly
//! after their context is gone; from another thread; and freed while
//! suspended. Most tests here never make the loop wait, and Miri runs
//! those on the poll backend (`.ci/miri` names them; Miri has no `poll(2)`
//! nor level-triggered epoll, which a wait needs).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use common::ctx;
use tevent::Context;

/// Two tasks that yield to each other, until `n` yields in all.
fn ping_pong(ev: &mut Context, n: u64) -> Rc<Cell<u64>> {
    let count = Rc::new(Cell::new(0u64));
    for _ in 0..2 {
        let c = count.clone();
        ev.spawn(None, async move {
            while c.get() < n {
                c.set(c.get() + 1);
                tevent::yield_now().await;
            }
        })
        .unwrap();
    }
    count
}

/// A task that wakes itself on every poll does not starve the immediates,
/// nor they the task: each gets a turn.
fn woken_tasks_and_immediates_take_turns(b: &str) {
    let mut ev = ctx(b);
    let log = Rc::new(RefCell::new(String::new()));
    let l = log.clone();
    ev.spawn(None, async move {
        for _ in 0..3 {
            l.borrow_mut().push('t');
            tevent::yield_now().await;
        }
    })
    .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let l = log.clone();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    ev.schedule_immediate(im, move |ev, im| {
        l.borrow_mut().push('i');
        f.set(f.get() + 1);
        if f.get() < 3 {
            ev.reschedule_immediate(im).unwrap();
        }
    })
    .unwrap();
    for _ in 0..6 {
        ev.loop_once().unwrap();
    }
    let log = log.borrow();
    assert_eq!(log.matches('t').count(), 3, "{log}");
    assert_eq!(log.matches('i').count(), 3, "{log}");
    assert!(!log.contains("tt") && !log.contains("ii"), "{log}");
}

/// A task that yields in a loop does not starve timers and fd events:
/// they get a turn every few dozen polls, as in tokio (whose `yield_now`
/// waits for its I/O driver's next turn).
fn a_yielding_task_lets_timers_and_fds_run(b: &str) {
    let mut ev = ctx(b);
    let (timer_fired, fd_ran) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let (t, f) = (timer_fired.clone(), fd_ran.clone());
    ev.spawn(None, async move {
        while !(t.get() && f.get()) {
            tevent::yield_now().await;
        }
    })
    .unwrap();
    let f = fd_ran.clone();
    ev.add_timer(None, Duration::ZERO, move |_, _, _| timer_fired.set(true))
        .unwrap();
    let (a, mut z) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut z, b"x").unwrap();
    let fde = ev
        .add_fd(None, a, tevent::FdFlags::READ, move |_, _, _| f.set(true))
        .unwrap();
    for _ in 0..1_000 {
        if fd_ran.get() {
            break;
        }
        ev.loop_once().unwrap();
    }
    assert!(fd_ran.get(), "the fd handler never ran");
    ev.free(fde).unwrap();
    for _ in 0..1_000 {
        if !ev.has_events() {
            break;
        }
        ev.loop_once().unwrap();
    }
    assert!(!ev.has_events(), "the task saw both");
}

/// Past the fd turn, a task still takes turns with an immediate that
/// reschedules itself forever (the turn waits for the immediates, which go
/// before fds and timers in C's order).
fn a_yielding_task_and_an_endless_immediate(b: &str) {
    let mut ev = ctx(b);
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    ev.spawn(None, async move {
        for _ in 0..200 {
            tevent::yield_now().await;
        }
        d.set(true);
    })
    .unwrap();
    let im = ev.create_immediate(None).unwrap();
    let d = done.clone();
    ev.schedule_immediate(im, move |ev, im| {
        if !d.get() {
            ev.reschedule_immediate(im).unwrap();
        }
    })
    .unwrap();
    for _ in 0..1_000 {
        if done.get() {
            break;
        }
        ev.loop_once().unwrap();
    }
    assert!(done.get(), "the task was starved");
}

/// Two contexts on one thread: each loop polls its own woken tasks and
/// leaves the other's, which are not lost.
fn each_context_polls_its_own(b: &str) {
    let mut a = ctx(b);
    let mut z = ctx(b);
    // A lost wake would leave a loop waiting: make such a wait short.
    a.set_wait_timeout(Duration::from_millis(1));
    z.set_wait_timeout(Duration::from_millis(1));
    let na = ping_pong(&mut a, 100);
    let nz = ping_pong(&mut z, 100);
    for _ in 0..50 {
        a.loop_once().unwrap();
    }
    assert_eq!(nz.get(), 0, "z's tasks ran on a's loop");
    assert!(na.get() > 0);
    for _ in 0..50 {
        z.loop_once().unwrap();
    }
    assert!(nz.get() > 0, "z's wakes were lost");
    for _ in 0..200 {
        if na.get() == 100 && nz.get() == 100 {
            break;
        }
        a.loop_once().unwrap();
        z.loop_once().unwrap();
    }
    assert_eq!((na.get(), nz.get()), (100, 100));
}

/// A waker kept after its context is gone, woken on the same thread, does
/// nothing, and a new context on that thread is not disturbed.
fn a_waker_outliving_its_context(b: &str) {
    let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
    {
        let mut ev = ctx(b);
        let k = kept.clone();
        ev.spawn(
            None,
            std::future::poll_fn(move |cx| {
                *k.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::<()>::Pending
            }),
        )
        .unwrap();
        ev.loop_once().unwrap();
        // Woken, not polled again before the context goes.
        kept.borrow().as_ref().unwrap().wake_by_ref();
    }
    kept.borrow().as_ref().unwrap().wake_by_ref();
    let mut ev = ctx(b);
    let count = ping_pong(&mut ev, 10);
    ev.loop_wait().unwrap();
    assert_eq!(count.get(), 10);
    assert_eq!(ev.heap().live_objects(), 0);
}

/// A wake from another thread goes through the remote queue; one that
/// came before the pass needs no wait.
fn a_wake_from_another_thread(b: &str) {
    let mut ev = ctx(b);
    let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
    let polls = Rc::new(Cell::new(0));
    let (k, p) = (kept.clone(), polls.clone());
    let task = ev
        .spawn(
            None,
            std::future::poll_fn(move |cx| {
                p.set(p.get() + 1);
                if p.get() == 2 {
                    return std::task::Poll::Ready("woken");
                }
                *k.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }),
        )
        .unwrap();
    ev.loop_once().unwrap();
    let waker = kept.borrow_mut().take().unwrap();
    std::thread::spawn(move || {
        waker.wake_by_ref();
        waker.wake(); // merged with the first
    })
    .join()
    .unwrap();
    while !task.is_finished() {
        ev.loop_once().unwrap();
    }
    assert_eq!(task.try_take(), Some(Ok("woken")));
    assert_eq!(polls.get(), 2);
}

/// Freeing the owner of suspended tasks drops each future once, at once;
/// their wakers then do nothing and a join reads `Cancelled`.
fn freed_while_suspended(b: &str) {
    struct Dropped(Rc<Cell<u32>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let mut ev = ctx(b);
    let owner = ev.heap_mut().new_context(None).unwrap();
    let drops = Rc::new(Cell::new(0));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let d = Dropped(drops.clone());
        tasks.push(
            ev.spawn(owner, async move {
                let _d = d;
                loop {
                    tevent::yield_now().await;
                }
            })
            .unwrap(),
        );
    }
    let waiter = ev
        .spawn(None, {
            let t = tasks[0].clone();
            async move { t.join().await }
        })
        .unwrap();
    for _ in 0..10 {
        ev.loop_once().unwrap();
    }
    ev.free(owner).unwrap();
    assert_eq!(drops.get(), 3, "each future dropped once, at the free");
    ev.loop_once().unwrap(); // the waiter, woken by the cancel
    assert_eq!(waiter.try_take(), Some(Ok(Err(tevent::Cancelled))));
    assert!(tasks
        .iter()
        .all(|t| t.try_take() == Some(Err(tevent::Cancelled))));
    assert_eq!(drops.get(), 3);
    assert!(!ev.has_events());
    assert_eq!(ev.heap().live_objects(), 0);
}

both!(
    a_yielding_task_lets_timers_and_fds_run,
    a_yielding_task_and_an_endless_immediate,
    a_wake_from_another_thread,
    freed_while_suspended,
    woken_tasks_and_immediates_take_turns,
    each_context_polls_its_own,
    a_waker_outliving_its_context
);
