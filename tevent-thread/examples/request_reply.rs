//! The master/worker request-reply pattern of tevent's thread documentation.
//!
//! Each worker thread runs its own loop with its own heap and proxy. For
//! every request it allocates a message in its heap and sends it, with its
//! reply proxy inside, to the master's loop; the master checks it and sends
//! the same message back through the worker's proxy; the worker waits on its
//! own loop for the reply. Every message crosses two heaps per round trip,
//! checked against the transfer rules each time.
//!
//! ```text
//! cargo run --release -p tevent-thread --example request_reply [-- WORKERS [ROUND_TRIPS]]
//! ```

use std::time::Instant;

use talloc::Ptr;
use tevent::Context;
use tevent_thread::{ProxySender, ThreadProxy};

/// A request, and later its reply: one object that travels there and back.
struct Request {
    worker: usize,
    seq: u64,
    /// Where the master sends the reply.
    reply_to: ProxySender,
    /// The worker's books, in the worker's heap (a handle is just a number:
    /// it can travel, and means something only back home).
    books: Ptr<Replies>,
}

/// The master's books, an object in the master's heap.
struct Served {
    per_worker: Vec<u64>,
    total: u64,
}

/// A worker's books, an object in the worker's heap.
struct Replies {
    count: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let round_trips: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);

    let mut master = Context::new()?;
    let master_blocks = master.heap().live_objects();
    let served = master.heap_mut().alloc(
        None,
        Served {
            per_worker: vec![0; workers],
            total: 0,
        },
    )?;
    let proxy = ThreadProxy::new(&mut master, None)?;
    let to_master = proxy.sender(&master)?;

    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let to_master = to_master.clone();
            std::thread::spawn(move || worker(w, round_trips, to_master, served))
        })
        .collect();

    let expected = workers as u64 * round_trips;
    while master.heap()[served].total < expected {
        master.loop_once()?;
    }
    let mut clean = true;
    for (w, t) in threads.into_iter().enumerate() {
        let (replies, blocks_back) = t.join().map_err(|_| format!("worker {w} panicked"))??;
        let requests = master.heap()[served].per_worker[w];
        println!("worker {w}: {requests} requests served, {replies} replies received");
        clean &= requests == round_trips && replies == round_trips && blocks_back;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{expected} round trips in {secs:.2} s: {:.0} round trips per second",
        expected as f64 / secs
    );

    master.heap_mut().free(served)?;
    master.free(proxy)?;
    let back = master.heap().live_objects() == master_blocks;
    println!(
        "every request got exactly one reply: {}; every heap back to its starting block count: {}",
        if clean { "yes" } else { "NO" },
        if back && clean { "yes" } else { "NO" }
    );
    if clean && back {
        Ok(())
    } else {
        Err("the final check failed".into())
    }
}

/// One worker: `n` round trips, each waited for on the worker's own loop.
/// Returns the replies counted and whether its heap ended as it started.
fn worker(
    w: usize,
    n: u64,
    to_master: ProxySender,
    served: Ptr<Served>,
) -> Result<(u64, bool), String> {
    let mut ev = Context::new().map_err(|e| e.to_string())?;
    let start_blocks = ev.heap().live_objects();
    let replies = ev
        .heap_mut()
        .alloc(None, Replies { count: 0 })
        .map_err(|e| e.to_string())?;
    let proxy = ThreadProxy::new(&mut ev, None).map_err(|e| e.to_string())?;
    let reply_to = proxy.sender(&ev).map_err(|e| e.to_string())?;

    for seq in 0..n {
        let req = Request {
            worker: w,
            seq,
            reply_to: reply_to.clone(),
            books: replies,
        };
        let req = ev.heap_mut().alloc(None, req).map_err(|e| e.to_string())?;
        to_master
            .send(ev.heap_mut(), req, move |ev, req| serve(ev, req, served))
            .map_err(|e| e.to_string())?;
        // Wait on our own loop for the reply to this request.
        while ev.heap()[replies].count == seq {
            ev.loop_once().map_err(|e| e.to_string())?;
        }
    }
    let count = ev.heap()[replies].count;
    ev.heap_mut().free(replies).map_err(|e| e.to_string())?;
    ev.free(proxy).map_err(|e| e.to_string())?;
    Ok((count, ev.heap().live_objects() == start_blocks))
}

/// On the master's loop: count the request and send the message back.
fn serve(ev: &mut Context, req: Ptr<Request>, served: Ptr<Served>) {
    let (w, seq, reply_to) = {
        let r = &ev.heap()[req];
        (r.worker, r.seq, r.reply_to.clone())
    };
    let books = &mut ev.heap_mut()[served];
    assert_eq!(books.per_worker[w], seq, "requests arrive in order");
    books.per_worker[w] += 1;
    books.total += 1;
    // The reply is the same object, moved on to the worker's heap.
    let sent = reply_to.send(ev.heap_mut(), req, |ev, rep| {
        let Request { seq, books, .. } = ev.heap()[rep];
        let books = &mut ev.heap_mut()[books];
        assert_eq!(books.count, seq, "replies arrive in order");
        books.count += 1;
    });
    if let Err(e) = sent {
        eprintln!("reply to worker {w} failed: {e}");
    }
}
