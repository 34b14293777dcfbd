//! Recipe: a pool of worker loops on N threads.
//!
//! Each worker thread runs a loop of its own, with its own heap, and in it
//! a `Service` that computes the answer to a `Job`. The main loop holds a
//! `Client` per worker and hands the jobs out round-robin with
//! `Client::call`; each answer comes back as a callback on the main loop.
//!
//! Ownership, on each side:
//!
//! - a worker's service is a child of the worker's root context; to stop
//!   the worker, the pool frees that root from the worker's own thread
//!   (through the loop's `Remote`), and the worker's loop, waiting for
//!   its root to go, returns;
//! - every call in flight is a child of a `batch` context in the main
//!   heap: freeing the batch cancels every call not yet answered (their
//!   callbacks never run, late answers are dropped).
//!
//! ```text
//! cargo run -p tevent-thread --example worker_pool [-- WORKERS [JOBS]]
//! ```

use std::error::Error;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use talloc::{IntoParent, Ptr};
use tevent::{CallbackError, Context, Remote};
use tevent_thread::{Client, Responder, Service};

/// An error that may cross threads.
type BoxError = Box<dyn Error + Send + Sync>;

/// A job: how many steps does the Collatz sequence of `n` take to reach 1?
#[derive(Debug, Clone, Copy)]
struct Job {
    id: usize,
    n: u64,
}

/// A job's answer, and which worker computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    id: usize,
    steps: u32,
    worker: usize,
}

fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// What a worker reports when it ends.
#[derive(Debug, PartialEq, Eq)]
struct WorkerReport {
    served: usize,
    /// Objects left in the worker's heap once its root was freed.
    objects_left: usize,
}

/// The pool's handles on one worker.
struct Worker {
    client: Client<Job, Answer>,
    /// The worker loop's queue, to stop it from here.
    remote: Remote,
    /// The worker's root context, in the worker's heap (a handle is a
    /// number: it can travel, and means something only there).
    root: Ptr<()>,
    thread: JoinHandle<Result<WorkerReport, BoxError>>,
}

/// One worker thread: a loop with the service under its root, run until
/// the root is freed.
fn spawn_worker(index: usize) -> Result<Worker, BoxError> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || -> Result<WorkerReport, BoxError> {
        let mut ev = Context::new()?;
        let root = ev.heap_mut().new_context(None)?;
        let served = ev.heap_mut().alloc(root, 0usize)?;
        let service = Service::new(
            &mut ev,
            root,
            move |ev, job: Job, reply: Responder<Answer>| {
                let answer = Answer {
                    id: job.id,
                    steps: collatz_steps(job.n),
                    worker: index,
                };
                *ev.heap_mut().get_mut(served)? += 1;
                // A caller that cancelled the call meanwhile is not an error.
                reply.send(answer)?;
                Ok(())
            },
        )?;
        tx.send((service.client(&ev)?, ev.remote()?, root))?;
        // The service's proxy does not count as an event (`loop_wait`
        // would return at once): wait for the root to go instead.
        let mut served_total = 0;
        ev.loop_until(|ev| match ev.heap().get(served) {
            Ok(&n) => {
                served_total = n;
                false
            }
            Err(_) => true, // the root, and the counter with it, is gone
        })?;
        Ok(WorkerReport {
            served: served_total,
            objects_left: ev.heap().live_objects(),
        })
    });
    let (client, remote, root) = rx.recv()?;
    Ok(Worker {
        client,
        remote,
        root,
        thread,
    })
}

/// N workers, called in turn.
struct Pool {
    workers: Vec<Worker>,
    next: usize,
}

impl Pool {
    fn new(size: usize) -> Result<Pool, BoxError> {
        let workers = (0..size).map(spawn_worker).collect::<Result<_, _>>()?;
        Ok(Pool { workers, next: 0 })
    }

    /// Sends `job` to the next worker; `on_answer` runs on `ev`'s loop. The
    /// call is a child of `parent` in `ev`'s heap.
    fn call(
        &mut self,
        ev: &mut Context,
        parent: impl IntoParent,
        job: Job,
        on_answer: impl FnOnce(&mut Context, Answer) -> Result<(), CallbackError> + 'static,
    ) -> Result<(), BoxError> {
        let worker = &self.workers[self.next];
        self.next = (self.next + 1) % self.workers.len();
        worker.client.call(ev, parent, job, move |ev, answer| {
            on_answer(ev, answer?) // `CallError::NoReply`: the worker dropped it
        })?;
        Ok(())
    }

    /// Stops every worker (each frees its own root, on its own thread,
    /// after the requests queued before) and collects their reports.
    fn shut_down(self) -> Result<Vec<WorkerReport>, BoxError> {
        for w in &self.workers {
            let root = w.root;
            w.remote
                .schedule(move |ev| {
                    ev.free(root)?;
                    Ok(())
                })
                .map_err(|_| "a worker's loop is gone")?;
        }
        self.workers
            .into_iter()
            .map(|w| w.thread.join().map_err(|_| "a worker panicked")?)
            .collect()
    }
}

/// The answers, filled in on the main loop: an object in its heap.
#[derive(Debug)]
struct Results {
    answers: Vec<Option<Answer>>,
    done: usize,
}

/// Runs `jobs` on the pool from `ev`'s loop; their answers, in job order.
fn run_jobs(ev: &mut Context, pool: &mut Pool, jobs: &[Job]) -> Result<Vec<Answer>, BoxError> {
    let results = ev.heap_mut().alloc(
        None,
        Results {
            answers: vec![None; jobs.len()],
            done: 0,
        },
    )?;
    // Owns every call in flight: one reply proxy per call.
    let batch = ev.heap_mut().new_context(None)?;
    for &job in jobs {
        pool.call(ev, batch, job, move |ev, answer| {
            let r = ev.heap_mut().get_mut(results)?;
            r.answers[answer.id] = Some(answer);
            r.done += 1;
            Ok(())
        })?;
    }
    // Replies in flight do not count as events either: `loop_until`.
    let start = Instant::now();
    let ran = ev.loop_until(|ev| {
        ev.heap().get(results).is_ok_and(|r| r.done == jobs.len())
            || start.elapsed() > Duration::from_secs(10)
    });
    // Empty if every answer came (each call's proxy goes when it is
    // answered); else this cancels the calls still out.
    ev.free(batch)?;
    let r = ev.heap_mut().take(results)?; // the answers, out of the heap
    ran?;
    if r.done < jobs.len() {
        return Err(format!("{} of {} answers came", r.done, jobs.len()).into());
    }
    r.answers
        .into_iter()
        .map(|a| a.ok_or_else(|| "an answer is missing".into()))
        .collect()
}

fn jobs(count: usize) -> Vec<Job> {
    (0..count)
        .map(|id| Job {
            id,
            n: 1_000_000 + id as u64,
        })
        .collect()
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let count: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let mut ev = Context::new()?;
    ev.set_wait_timeout(Duration::from_millis(100));
    let mut pool = Pool::new(workers)?;

    let jobs = jobs(count);
    let start = Instant::now();
    let answers = run_jobs(&mut ev, &mut pool, &jobs)?;
    let secs = start.elapsed().as_secs_f64();
    let right = answers
        .iter()
        .zip(&jobs)
        .all(|(a, j)| a.id == j.id && a.steps == collatz_steps(j.n));
    let longest = answers.iter().max_by_key(|a| a.steps).ok_or("no jobs")?;
    println!(
        "{count} jobs on {workers} workers in {secs:.2} s; all right: {right}; \
         longest: n = {} in {} steps",
        jobs[longest.id].n, longest.steps
    );
    for (i, report) in pool.shut_down()?.iter().enumerate() {
        println!("worker {i}: {report:?}");
    }
    println!("main heap: {} objects left", ev.heap().live_objects());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn new_loop() -> Context {
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(10));
        ev
    }

    #[test]
    fn every_job_comes_back_with_its_answer() {
        const WORKERS: usize = 3;
        const JOBS: usize = 30;
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let mut pool = Pool::new(WORKERS).unwrap();

        let jobs = jobs(JOBS);
        let answers = run_jobs(&mut ev, &mut pool, &jobs).unwrap();
        for (a, j) in answers.iter().zip(&jobs) {
            assert_eq!(a.id, j.id);
            assert_eq!(a.steps, collatz_steps(j.n));
            assert_eq!(a.worker, j.id % WORKERS, "round-robin");
        }
        assert_eq!(ev.heap().live_objects(), baseline, "the main heap is empty");

        let reports = pool.shut_down().unwrap();
        for r in &reports {
            assert_eq!(
                *r,
                WorkerReport {
                    served: JOBS / WORKERS,
                    objects_left: 0
                }
            );
        }
    }

    #[test]
    fn freeing_the_batch_cancels_the_calls_in_flight() {
        const WORKERS: usize = 2;
        const JOBS: usize = 10;
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let mut pool = Pool::new(WORKERS).unwrap();
        let answered = Rc::new(Cell::new(0));
        let batch = ev.heap_mut().new_context(None).unwrap();
        for job in jobs(JOBS) {
            let answered = answered.clone();
            pool.call(&mut ev, batch, job, move |_, _| {
                answered.set(answered.get() + 1);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(ev.heap().children(batch).unwrap().count(), JOBS);
        ev.free(batch).unwrap(); // cancels all ten

        // The workers still serve every request (queued before the stop);
        // their answers find the calls gone.
        let reports = pool.shut_down().unwrap();
        assert_eq!(reports.iter().map(|r| r.served).sum::<usize>(), JOBS);
        assert!(reports.iter().all(|r| r.objects_left == 0));
        for _ in 0..3 {
            ev.loop_once().unwrap();
        }
        assert_eq!(answered.get(), 0, "no callback of a cancelled call runs");
        assert_eq!(ev.heap().live_objects(), baseline);
    }
}
