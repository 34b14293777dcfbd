//! The master/worker request-reply pattern of `request_reply.rs`, written
//! with async tasks: the master serves a typed [`Service`]; each worker
//! thread runs one task on its own loop that awaits its calls in turn
//! (`client.ask(request).await`). The pair of proxies that example builds by
//! hand is the service's business here, and a call lives under the task
//! that awaits it: freeing the task would cancel its call.
//!
//! ```text
//! cargo run --release -p tevent-thread --example request_reply_async [-- WORKERS [ROUND_TRIPS]]
//! ```

use std::time::Instant;

use tevent::Context;
use tevent_thread::{Client, Responder, Service};

/// A request: which worker, and its sequence number.
struct Request {
    worker: usize,
    seq: u64,
}

/// The master's books, an object in the master's heap.
struct Served {
    per_worker: Vec<u64>,
    total: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let round_trips: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let (clean, secs) = run(workers, round_trips)?;
    let expected = workers as u64 * round_trips;
    println!(
        "{expected} awaited round trips in {secs:.2} s: {:.0} round trips per second",
        expected as f64 / secs
    );
    println!(
        "every request got exactly one reply, in order, and every heap is back where it started: {}",
        if clean { "yes" } else { "NO" }
    );
    if clean {
        Ok(())
    } else {
        Err("the final check failed".into())
    }
}

/// Runs the master and `workers` worker threads; whether every check held,
/// and the time taken.
fn run(workers: usize, round_trips: u64) -> Result<(bool, f64), Box<dyn std::error::Error>> {
    let mut master = Context::new()?;
    let master_blocks = master.heap().live_objects();
    let served = master.heap_mut().alloc(
        None,
        Served {
            per_worker: vec![0; workers],
            total: 0,
        },
    )?;
    let service = Service::new(
        &mut master,
        None,
        move |ev, req: Request, reply: Responder<u64>| {
            let books = ev.heap_mut().get_mut(served)?;
            if books.per_worker[req.worker] != req.seq {
                return Err("requests out of order".into());
            }
            books.per_worker[req.worker] += 1;
            books.total += 1;
            reply.send(req.seq)?;
            Ok(())
        },
    )?;
    let client = service.client(&master)?;

    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let client = client.clone();
            std::thread::spawn(move || worker(w, round_trips, client))
        })
        .collect();
    let expected = workers as u64 * round_trips;
    while master.heap()[served].total < expected {
        master.loop_once()?;
    }
    let mut clean = true;
    for (w, t) in threads.into_iter().enumerate() {
        let replies = t.join().map_err(|_| format!("worker {w} panicked"))??;
        clean &= replies == round_trips && master.heap()[served].per_worker[w] == round_trips;
    }
    let secs = start.elapsed().as_secs_f64();
    master.free(served)?;
    master.free(service)?;
    clean &= master.heap().live_objects() == master_blocks;
    Ok((clean, secs))
}

/// One worker thread: one task that awaits `n` calls in turn. Returns the
/// replies counted (0 if the heap did not end as it started).
fn worker(w: usize, n: u64, client: Client<Request, u64>) -> Result<u64, String> {
    let mut ev = Context::new().map_err(|e| e.to_string())?;
    let start_blocks = ev.heap().live_objects();
    let replies = ev
        .block_on(async move {
            for seq in 0..n {
                let answer = client.ask(Request { worker: w, seq }).await;
                if answer != Ok(seq) {
                    return Err(format!("worker {w}: reply {answer:?} to request {seq}"));
                }
            }
            Ok(n)
        })
        .map_err(|e| e.to_string())??;
    let back = ev.heap().live_objects() == start_blocks;
    Ok(if back { replies } else { 0 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_awaited_request_gets_its_reply() {
        let (clean, _) = super::run(3, 200).unwrap();
        assert!(clean);
    }
}
