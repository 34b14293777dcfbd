//! `Service`, `Client` and `Responder`: request and reply between loops,
//! with cancellation by freeing the call's parent and an answer for every
//! call that is not cancelled (a reply or `CallError::NoReply`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tevent::Context;
use tevent_thread::{CallError, Responder, SendValueError, Service};

/// Runs `ev` until `done`, or fails after 20 s.
fn run_until(ev: &mut Context, what: &str, mut done: impl FnMut(&Context) -> bool) {
    let start = Instant::now();
    ev.set_wait_timeout(Duration::from_millis(10));
    while !done(ev) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        ev.loop_once().unwrap();
    }
}

type Outcomes = Rc<RefCell<Vec<Result<String, CallError>>>>;

/// Calls `client` with `request` from `ev`, logging the outcome.
fn call(
    ev: &mut Context,
    client: &tevent_thread::Client<String, String>,
    parent: Option<talloc::AnyPtr>,
    request: &str,
    log: &Outcomes,
) {
    let log = log.clone();
    client
        .call(ev, parent, request.to_string(), move |_, answer| {
            log.borrow_mut().push(answer)
        })
        .unwrap();
}

/// A server thread: a loop with a service that upper-cases requests,
/// drops the ones that say "drop", and answers "later" from a timer.
fn spawn_server(
    stop: Arc<AtomicBool>,
) -> (
    thread::JoinHandle<()>,
    tevent_thread::Client<String, String>,
) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(5));
        let service = Service::new(&mut ev, None, |ev, q: String, reply: Responder<String>| {
            match q.as_str() {
                "drop" => drop(reply),
                "later" => {
                    // Keep the responder in the heap; a timer answers.
                    let kept = ev.heap_mut().alloc(None, Some(reply))?;
                    ev.add_timer(kept, Duration::from_millis(2), move |ev, _, _| {
                        let reply = ev.heap_mut().get_mut(kept)?.take().ok_or("answered")?;
                        // A caller that cancelled meanwhile is not an error.
                        reply.send("LATER".to_string())?;
                        Ok(())
                    })?;
                }
                _ => {
                    reply.send(q.to_uppercase())?;
                }
            }
            Ok(())
        })
        .unwrap();
        tx.send(service.client(&ev).unwrap()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            ev.loop_once().unwrap();
        }
    });
    (handle, rx.recv().unwrap())
}

#[test]
fn every_call_gets_its_answer_or_no_reply() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, client) = spawn_server(stop.clone());
    let mut ev = Context::new().unwrap();
    let log: Outcomes = Rc::default();
    for q in ["hello", "drop", "later", "world"] {
        call(&mut ev, &client, None, q, &log);
    }
    run_until(&mut ev, "four answers", |_| log.borrow().len() == 4);
    let mut got = log.borrow().clone();
    // "later" comes last, the others in order.
    assert_eq!(got.pop(), Some(Ok("LATER".to_string())));
    assert_eq!(
        got,
        [
            Ok("HELLO".to_string()),
            Err(CallError::NoReply),
            Ok("WORLD".to_string())
        ]
    );
    // Each call's reply proxy went with its answer.
    assert_eq!(ev.heap().live_objects(), 0);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn freeing_the_parent_cancels_the_call() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, client) = spawn_server(stop.clone());
    let mut ev = Context::new().unwrap();
    let log: Outcomes = Rc::default();
    let conn = ev.heap_mut().new_context(None).unwrap();
    call(&mut ev, &client, Some(conn.erase()), "later", &log);
    ev.free(conn).unwrap(); // the caller lost interest
    call(&mut ev, &client, None, "ping", &log);
    run_until(&mut ev, "the second answer", |_| !log.borrow().is_empty());
    // Give the cancelled answer time to arrive and be dropped.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(30) {
        ev.set_wait_timeout(Duration::from_millis(5));
        ev.loop_once().unwrap();
    }
    assert_eq!(*log.borrow(), [Ok("PING".to_string())]);
    assert_eq!(ev.heap().live_objects(), 0);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn a_service_that_is_gone_gives_the_request_back() {
    let mut server = Context::new().unwrap();
    let service = Service::new(&mut server, None, |_, _: u32, reply: Responder<u32>| {
        reply.send(0).map_err(|e| e.to_string())?;
        Ok(())
    })
    .unwrap();
    let client = service.client(&server).unwrap();
    server.free(service).unwrap();
    let mut ev = Context::new().unwrap();
    let err = client.call(&mut ev, None, 7, |_, _| ()).unwrap_err();
    assert!(matches!(err, SendValueError::Gone(7)));
    assert_eq!(ev.heap().live_objects(), 0, "the reply proxy went too");
}

#[test]
fn a_server_loop_that_ends_with_calls_queued_answers_no_reply() {
    let mut server = Context::new().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let service = Service::new(
        &mut server,
        None,
        move |_, _: u32, reply: Responder<u32>| {
            s.fetch_add(1, Ordering::Relaxed);
            reply.send(1).map_err(|e| e.to_string())?;
            Ok(())
        },
    )
    .unwrap();
    let client = service.client(&server).unwrap();
    let mut ev = Context::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        client
            .call(&mut ev, None, i, move |_, answer| {
                log.borrow_mut().push(answer)
            })
            .unwrap();
    }
    // The server's loop goes away with the calls queued.
    drop(server);
    run_until(&mut ev, "three answers", |_| log.borrow().len() == 3);
    assert_eq!(*log.borrow(), [Err(CallError::NoReply); 3]);
    assert_eq!(served.load(Ordering::Relaxed), 0);
    assert_eq!(ev.heap().live_objects(), 0);
}

#[test]
fn a_failing_reply_callback_comes_out_of_the_callers_loop() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, client) = spawn_server(stop.clone());
    let mut ev = Context::new().unwrap();
    client
        .call(&mut ev, None, "x".to_string(), |_, answer| {
            let answer = answer?;
            Err(format!("did not like {answer}").into())
        })
        .unwrap();
    let start = Instant::now();
    let err = loop {
        assert!(start.elapsed() < Duration::from_secs(20));
        if let Err(e) = ev.loop_once() {
            break e;
        }
    };
    match err {
        tevent::Error::Callback(f) => assert_eq!(f.error().to_string(), "did not like X"),
        other => panic!("{other:?}"),
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn many_callers_on_many_threads() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, client) = spawn_server(stop.clone());
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                let mut ev = Context::new().unwrap();
                let log: Outcomes = Rc::default();
                for i in 0..50 {
                    call(&mut ev, &client, None, &format!("t{t}-{i}"), &log);
                }
                run_until(&mut ev, "fifty answers", |_| log.borrow().len() == 50);
                let want: Vec<_> = (0..50).map(|i| Ok(format!("T{t}-{i}"))).collect();
                assert_eq!(*log.borrow(), want);
                assert_eq!(ev.heap().live_objects(), 0);
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn ask_awaits_the_answer_and_cancels_with_its_task() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, client) = spawn_server(stop.clone());
    let mut ev = Context::new().unwrap();
    ev.set_wait_timeout(Duration::from_millis(10));
    // The answer, awaited.
    let c = client.clone();
    let got = ev
        .block_on(async move { c.ask("hi".to_string()).await })
        .unwrap();
    assert_eq!(got, Ok("HI".to_string()));
    let c = client.clone();
    let got = ev
        .block_on(async move { c.ask("drop".to_string()).await })
        .unwrap();
    assert_eq!(got, Err(CallError::NoReply));
    assert_eq!(ev.heap().live_objects(), 0);
    // A task waiting for a slow answer, freed: the call goes with it.
    let c = client.clone();
    let task = ev
        .spawn(None, async move { c.ask("later".to_string()).await })
        .unwrap();
    ev.loop_once().unwrap(); // sends the request
    ev.free(&task).unwrap();
    assert_eq!(
        ev.heap().live_objects(),
        0,
        "the call's reply proxy went with the task"
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(30) {
        ev.loop_once().unwrap(); // the late answer arrives and is dropped
    }
    assert_eq!(task.try_take(), Some(Err(tevent::Cancelled)));
    assert_eq!(ev.heap().live_objects(), 0);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    // A service that is gone.
    let got = ev
        .block_on(async move { client.ask("x".to_string()).await })
        .unwrap();
    assert_eq!(got, Err(CallError::Gone));
}
