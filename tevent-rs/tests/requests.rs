//! Async requests, queues and timed waits (rule E10, C's `test_req.c` and
//! the queue/wakeup behaviours), on both backends.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{ctx, Log};
use tevent::{Context, Error, Req, ReqError, ReqState};

/// C's `create`: the state is what was given, a child of the request.
fn create(b: &str) {
    let mut ev = ctx(b);
    let owner = ev.heap_mut().new_context(None).unwrap();
    let req: Req<[u8; 16], String> = ev.req_create(owner, [0u8; 16]).unwrap();
    assert_eq!(ev.heap()[req.state()], [0u8; 16]);
    assert_eq!(ev.heap().parent(req.state()).unwrap(), Some(req.erase()));
    assert_eq!(ev.heap().parent(req.erase()).unwrap(), Some(owner.erase()));
    assert!(ev.req_is_in_progress(req).unwrap());
    assert_eq!(ev.req_recv(req), Err(ReqError::InProgress));
    assert!(ev.req_is_in_progress(req).unwrap());
}

/// done/error/oom finish once, run the callback synchronously, and a
/// second finish is refused.
fn finish_and_callback(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let req: Req<(), &'static str> = ev.req_create(None, ()).unwrap();
    let l = log.clone();
    ev.req_set_callback(req, move |ev, req| {
        l.push(format!("{:?}", ev.req_state(req).unwrap()));
        assert_eq!(ev.req_recv(req), Err(ReqError::Failed("eof")));
        ev.free(req.erase()).unwrap();
    })
    .unwrap();
    ev.req_error(req, "eof").unwrap();
    assert_eq!(log.take(), ["Error"]);
    assert_eq!(ev.req_done(req), Err(Error::Stale));

    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.req_done(req).unwrap();
    assert_eq!(ev.req_done(req), Err(Error::NotInProgress));
    assert_eq!(ev.req_oom(req), Err(Error::NotInProgress));
    assert_eq!(ev.req_state(req), Ok(ReqState::Done));
    assert_eq!(ev.req_recv(req), Ok(()));
    assert_eq!(ev.req_recv(req), Err(ReqError::Received));
}

/// A heap allocation that fails (here on a memory limit) finishes the
/// request as out of memory.
fn no_memory(b: &str) {
    let mut ev = ctx(b);
    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.heap_mut().set_memlimit(req.state(), 64).unwrap();
    let r = ev.heap_mut().alloc_zeroed(req.state(), 1 << 20);
    assert!(ev.req_nomem(req, r).is_none());
    assert_eq!(ev.req_state(req), Ok(ReqState::NoMemory));
    assert_eq!(ev.req_recv(req), Err(ReqError::NoMemory));
}

/// post: a result known at once reaches a callback set afterwards, from
/// the loop; defer_callback does the same for a later finish.
fn post_and_defer(b: &str) {
    let mut ev = ctx(b);
    let log = Log::new();
    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.req_done(req).unwrap();
    ev.req_post(req).unwrap();
    let l = log.clone();
    ev.req_set_callback(req, move |_, _| l.push("posted"))
        .unwrap();
    assert!(log.get().is_empty());
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["posted"]);

    let req: Req<()> = ev.req_create(None, ()).unwrap();
    let l = log.clone();
    ev.req_set_callback(req, move |_, _| l.push("deferred"))
        .unwrap();
    ev.req_defer_callback(req).unwrap();
    ev.req_done(req).unwrap();
    assert!(log.get().is_empty());
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["deferred"]);
    // Freeing a request whose post is pending cancels it.
    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.req_done(req).unwrap();
    ev.req_post(req).unwrap();
    let l = log.clone();
    ev.req_set_callback(req, move |_, _| l.push("never"))
        .unwrap();
    ev.free(req.erase()).unwrap();
    ev.loop_wait().unwrap();
    assert!(log.get().is_empty());
}

/// The end time finishes a request as timed out; finishing first cancels
/// the timer.
fn endtime(b: &str) {
    let mut ev = ctx(b);
    let req: Req<()> = ev.req_create(None, ()).unwrap();
    let t0 = Instant::now();
    ev.req_set_endtime(req, Duration::from_millis(5)).unwrap();
    ev.req_poll(req).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(5));
    assert_eq!(ev.req_recv(req), Err(ReqError::TimedOut));

    let req: Req<()> = ev.req_create(None, ()).unwrap();
    ev.req_set_endtime(req, Duration::from_secs(60)).unwrap();
    assert!(ev.has_events());
    ev.req_done(req).unwrap();
    assert!(!ev.has_events(), "the end-time timer went with the finish");
    assert_eq!(ev.req_recv(req), Ok(()));
}

/// The cleanup function runs once per state: on finishing, and on receive
/// or free; the state is still there when it runs.
fn cleanup_states(b: &str) {
    let mut ev = ctx(b);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let make = |ev: &mut Context| {
        let req: Req<u32> = ev.req_create(None, 7).unwrap();
        let s = seen.clone();
        ev.req_set_cleanup_fn(req, move |heap, req, state| {
            assert_eq!(heap.get(req.state()).ok().copied(), Some(7));
            s.borrow_mut().push(state);
        })
        .unwrap();
        req
    };
    let req = make(&mut ev);
    ev.req_done(req).unwrap();
    ev.req_received(req).unwrap();
    ev.free(req.erase()).unwrap();
    assert_eq!(seen.take(), [ReqState::Done, ReqState::Received]);

    let req = make(&mut ev);
    ev.free(req.erase()).unwrap();
    assert_eq!(seen.take(), [ReqState::Received]);

    let req = make(&mut ev);
    ev.req_set_endtime(req, Duration::ZERO).unwrap();
    ev.loop_once().unwrap();
    assert_eq!(ev.req_recv(req), Err(ReqError::TimedOut));
    assert_eq!(seen.take(), [ReqState::TimedOut, ReqState::Received]);
    ev.free(req.erase()).unwrap();
    assert!(seen.take().is_empty());
}

/// cancel runs the cancel function; without one it says no.
fn cancel(b: &str) {
    let mut ev = ctx(b);
    let req: Req<(), &str> = ev.req_create(None, ()).unwrap();
    assert_eq!(ev.req_cancel(req), Ok(false));
    ev.req_set_cancel_fn(req, |ev, req| ev.req_error(req, "cancelled").is_ok())
        .unwrap();
    assert_eq!(ev.req_cancel(req), Ok(true));
    assert_eq!(
        ev.req_cancel(req),
        Ok(false),
        "finished: the error is refused"
    );
    assert_eq!(ev.req_recv(req), Err(ReqError::Failed("cancelled")));
}

/// The composed-request pattern: a request waits on a sub-request created
/// under its state; freeing the outer request frees the inner one and its
/// timer (nothing is left to run).
fn subrequests(b: &str) {
    let mut ev = ctx(b);
    fn outer_send(ev: &mut Context, delay: Duration) -> Req<u32, String> {
        let req: Req<u32, String> = ev.req_create(None, 0).unwrap();
        let sub = ev.wakeup_send(req.state(), delay).unwrap();
        ev.req_set_callback(sub, move |ev, sub| {
            ev.req_recv(sub).unwrap();
            ev.free(sub.erase()).unwrap();
            ev.heap_mut()[req.state()] = 42;
            ev.req_done(req).unwrap();
        })
        .unwrap();
        req
    }
    let req = outer_send(&mut ev, Duration::from_millis(2));
    ev.req_poll(req).unwrap();
    assert_eq!(ev.req_recv(req), Ok(42));

    let req = outer_send(&mut ev, Duration::from_secs(3600));
    assert!(ev.has_events());
    ev.free(req.erase()).unwrap();
    assert!(!ev.has_events());
}

/// req_poll refuses to nest, like loop_once.
fn poll_nested(b: &str) {
    let mut ev = ctx(b);
    let outer = ev.wakeup_send(None, Duration::ZERO).unwrap();
    let inner = ev.wakeup_send(None, Duration::from_secs(60)).unwrap();
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    ev.req_set_callback(outer, move |ev, _| {
        o.set(ev.req_poll(inner) == Err(Error::Nested));
    })
    .unwrap();
    ev.req_poll(outer).unwrap();
    assert!(ok.get());
}

/// wakeup_send finishes at its time, not before; freed, it never does.
fn wakeup(b: &str) {
    let mut ev = ctx(b);
    let at = Instant::now() + Duration::from_millis(10);
    let req = ev.wakeup_send(None, at).unwrap();
    ev.req_poll(req).unwrap();
    assert!(Instant::now() >= at);
    let req = ev.wakeup_send(None, Duration::from_secs(60)).unwrap();
    ev.free(req.erase()).unwrap();
    ev.loop_wait().unwrap();
}

/// Queue: one trigger at a time, first in first out; the head holds the
/// queue until its request is freed.
fn queue_fifo(b: &str) {
    let mut ev = ctx(b);
    let q = ev.queue_create(None, "fifo").unwrap();
    let log = Log::new();
    let mut reqs = Vec::new();
    for i in 0..3 {
        let req: Req<u32> = ev.req_create(None, i).unwrap();
        let l = log.clone();
        ev.queue_add(q, req, move |ev, req| {
            l.push(format!("t{}", ev.heap()[req.state()]))
        })
        .unwrap();
        reqs.push(req);
    }
    assert_eq!(ev.queue_length(q), Ok(3));
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["t0"]);
    ev.free(reqs[0].erase()).unwrap();
    assert_eq!(ev.queue_length(q), Ok(2));
    ev.loop_wait().unwrap();
    assert_eq!(log.take(), ["t1"]);
    // Freeing one that is not the head triggers nothing.
    ev.free(reqs[2].erase()).unwrap();
    ev.loop_wait().unwrap();
    assert!(log.get().is_empty());
    ev.free(reqs[1].erase()).unwrap();
    assert_eq!(ev.queue_length(q), Ok(0));
}

/// A stopped queue triggers nothing until started; untrigger re-arms.
fn queue_stop_start(b: &str) {
    let mut ev = ctx(b);
    let q = ev.queue_create(None, "q").unwrap();
    ev.queue_stop(q).unwrap();
    assert_eq!(ev.queue_running(q), Ok(false));
    let w = ev.queue_wait_send(None, q).unwrap();
    ev.set_wait_timeout(Duration::from_millis(1));
    ev.loop_once().unwrap();
    assert!(ev.req_is_in_progress(w).unwrap());
    ev.queue_start(q).unwrap();
    ev.req_poll(w).unwrap();
    assert_eq!(ev.req_recv(w), Ok(()));
    ev.free(w.erase()).unwrap();
}

/// Freeing the queue empties it; the requests live on, and freeing them
/// later is fine.
fn queue_freed(b: &str) {
    let mut ev = ctx(b);
    let q = ev.queue_create(None, "q").unwrap();
    let a: Req<()> = ev.req_create(None, ()).unwrap();
    let c: Req<()> = ev.req_create(None, ()).unwrap();
    ev.queue_add(q, a, |_, _| {}).unwrap();
    let e = ev.queue_add(q, c, |_, _| -> () { unreachable!() }).unwrap();
    ev.loop_once().unwrap();
    ev.free(q.erase()).unwrap();
    assert_eq!(ev.queue_length(q), Err(Error::Stale));
    assert!(ev.heap().contains(e.erase()));
    ev.free(a.erase()).unwrap();
    ev.free(c.erase()).unwrap();
    ev.loop_wait().unwrap();
}

/// Two queues and a request in both: freeing it releases both.
fn request_in_two_queues(b: &str) {
    let mut ev = ctx(b);
    let (q1, q2) = (
        ev.queue_create(None, "1").unwrap(),
        ev.queue_create(None, "2").unwrap(),
    );
    let r: Req<()> = ev.req_create(None, ()).unwrap();
    ev.queue_add_blocker(q1, r).unwrap();
    ev.queue_add_blocker(q2, r).unwrap();
    let w1 = ev.queue_wait_send(None, q1).unwrap();
    let w2 = ev.queue_wait_send(None, q2).unwrap();
    ev.loop_wait().unwrap();
    assert!(ev.req_is_in_progress(w1).unwrap() && ev.req_is_in_progress(w2).unwrap());
    ev.free(r.erase()).unwrap();
    ev.req_poll(w1).unwrap();
    ev.req_poll(w2).unwrap();
}

/// Profiles (C's `tevent_req_profile`): a profiled request's sub-requests
/// created under its state are profiled; each finished one's profile moves
/// under its parent's, in the order they finished, and outlives it.
fn profiles_follow_subrequests(b: &str) {
    let mut ev = ctx(b);
    let outer: Req<u64, String> = ev.req_create(None, 0).unwrap();
    assert_eq!(ev.req_profile(outer), Ok(None));
    let p = ev.req_set_profile(outer).unwrap();
    assert_eq!(ev.req_set_profile(outer), Err(Error::AlreadyProfiled));
    assert!(
        ev.req_is_in_progress(outer).unwrap(),
        "a second profile does not fail it"
    );
    let first: Req<u8> = ev.req_create(outer.state(), 1).unwrap();
    let second: Req<u16> = ev.req_create(outer.state(), 2).unwrap();
    let deeper: Req<u32> = ev.req_create(second.state(), 3).unwrap();
    let elsewhere: Req<i8> = ev.req_create(outer.erase(), 4).unwrap();
    assert!(ev.req_profile(first).unwrap().is_some());
    assert!(ev.req_profile(deeper).unwrap().is_some());
    assert_eq!(ev.req_profile(elsewhere), Ok(None), "not under the state");
    ev.req_done(second).unwrap();
    ev.req_set_endtime(first, Duration::ZERO).unwrap();
    ev.req_poll(first).unwrap();
    assert_eq!(ev.req_profile(second), Ok(None), "moved to the parent's");
    ev.free(first.erase()).unwrap();
    ev.free(second.erase()).unwrap();
    let subs = ev.profile_subprofiles(p).unwrap();
    let names: Vec<_> = subs.iter().map(|s| ev.heap()[*s].name.clone()).collect();
    assert_eq!(names, ["u16", "u8"], "in the order they finished");
    let second_p = &ev.heap()[subs[0]];
    assert_eq!(second_p.state, ReqState::Done);
    assert!(second_p.stop_location.contains("requests.rs"));
    assert_eq!(ev.heap()[subs[1]].state, ReqState::TimedOut);
    // deeper was freed with second, in progress: its profile went with it.
    assert_eq!(ev.profile_subprofiles(subs[0]), Ok(vec![]));
    ev.req_error(outer, "failed".into()).unwrap();
    let kept = ev.req_move_profile(outer, None).unwrap().unwrap();
    ev.free(outer.erase()).unwrap();
    let top = &ev.heap()[kept];
    assert_eq!(top.state, ReqState::Error);
    assert!(top.name.contains("u64"));
    assert!(top.start_location.contains("requests.rs"));
    assert!(top.stop_time.unwrap() >= top.start_time);
    ev.free(kept.erase()).unwrap();
    assert!(!ev.heap().contains(elsewhere.erase()), "went with outer");
}

/// `tevent_req_print`: a default line, or the caller's function until the
/// request is received.
fn print(b: &str) {
    let mut ev = ctx(b);
    let req: Req<Vec<u8>> = ev.req_create(None, vec![1]).unwrap();
    let line = ev.req_print(req).unwrap();
    assert!(line.contains("requests.rs"), "{line}");
    assert!(
        line.contains("InProgress") && line.contains("finished at -"),
        "{line}"
    );
    ev.req_set_print_fn(req, |ev, req| {
        format!("{} bytes", ev.heap()[req.state()].len())
    })
    .unwrap();
    assert_eq!(ev.req_print(req).unwrap(), "1 bytes");
    ev.req_done(req).unwrap();
    ev.req_recv(req).unwrap();
    let line = ev.req_print(req).unwrap();
    assert!(line.contains("Received"), "{line}");
    ev.free(req.erase()).unwrap();
    assert_eq!(ev.req_print(req), Err(Error::Stale));
}

/// `req_recv` hands the state back, moved out of the heap, after the
/// cleanup function has seen it; the state's children are freed with it.
/// A state whose destructor refuses reads `Gone` and stays.
fn recv_returns_the_state(b: &str) {
    let mut ev = ctx(b);
    let req: Req<String, ()> = ev.req_create(None, String::from("answer")).unwrap();
    let part = ev
        .heap_mut()
        .alloc_str(req.state(), "part of the state")
        .unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    ev.req_set_cleanup_fn(req, move |heap, req, state| {
        s.borrow_mut().push((state, heap.get(req.state()).cloned()));
    })
    .unwrap();
    ev.req_done(req).unwrap();
    assert_eq!(ev.req_recv(req), Ok(String::from("answer")));
    assert!(!ev.heap().contains(req.state()) && !ev.heap().contains(part));
    let after = seen.borrow().clone();
    assert_eq!(
        after,
        [
            (ReqState::Done, Ok("answer".to_string())),
            (ReqState::Received, Ok("answer".to_string()))
        ]
    );
    assert_eq!(ev.req_state(req).unwrap(), ReqState::Received);
    assert_eq!(ev.req_recv(req), Err(ReqError::Received));
    ev.free(req.erase()).unwrap();
    assert_eq!(ev.heap().live_objects(), 0);

    let req: Req<u8, ()> = ev.req_create(None, 1).unwrap();
    ev.heap_mut()
        .set_destructor(req.state(), |_, _| Err(talloc::Refused))
        .unwrap();
    ev.req_done(req).unwrap();
    assert_eq!(
        ev.req_recv(req),
        Err(ReqError::Gone(Error::Heap(talloc::Error::Refused)))
    );
    assert_eq!(ev.heap()[req.state()], 1);
}

both!(
    recv_returns_the_state,
    profiles_follow_subrequests,
    print,
    create,
    finish_and_callback,
    no_memory,
    post_and_defer,
    endtime,
    cleanup_states,
    cancel,
    subrequests,
    poll_nested,
    wakeup,
    queue_fifo,
    queue_stop_start,
    queue_freed,
    request_in_two_queues
);
