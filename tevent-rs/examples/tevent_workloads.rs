//! The tevent workloads of `bench/README.md`, on tevent-rs, in
//! the C program's output format.
//!
//! ```text
//! cargo run --release -p tevent-rs --example tevent_workloads [-- NAME [SIZE]]
//! cargo run --release -p tevent-rs --example tevent_workloads -- --list
//! ```

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::unistd::{read, write};
use tevent::{Context, FdFlags};

const REPS: usize = 5;

struct Workload {
    name: &'static str,
    default_size: u64,
    max_size: u64,
    /// Runs one repetition: (timed nanoseconds, ops).
    run: fn(u64) -> (u64, u64),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tevent_immediate",
        default_size: 1_000_000,
        max_size: u64::MAX,
        run: immediate,
    },
    Workload {
        name: "tevent_timer",
        default_size: 100_000,
        max_size: 100_000_000,
        run: timer,
    },
    Workload {
        name: "tevent_timer_random",
        default_size: 20_000,
        max_size: 1_000_000,
        run: timer_random,
    },
    Workload {
        name: "tevent_fd_pingpong",
        default_size: 200_000,
        max_size: u64::MAX,
        run: fd_pingpong,
    },
    // Async tasks (no C counterpart: tevent has no futures; compare.sh
    // skips them, the performance chapter sets them beside tokio's).
    Workload {
        name: "task_spawn_complete",
        default_size: 200_000,
        max_size: u64::MAX,
        run: task_spawn_complete,
    },
    Workload {
        name: "task_spawn_join",
        default_size: 200_000,
        max_size: u64::MAX,
        run: task_spawn_join,
    },
    Workload {
        name: "task_yield_pingpong",
        default_size: 500_000,
        max_size: u64::MAX,
        run: task_yield_pingpong,
    },
    Workload {
        name: "task_timer_await",
        default_size: 100_000,
        max_size: u64::MAX,
        run: task_timer_await,
    },
];

/// N empty tasks spawned and run to completion, one at a time: spawn, one
/// poll, output taken.
fn task_spawn_complete(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    for i in 0..n {
        let task = ev.spawn(None, async move { i }).expect("spawn");
        while !task.is_finished() {
            ev.loop_once().expect("loop_once");
        }
        assert_eq!(task.try_take(), Some(Ok(i)), "task output");
    }
    let t = ns(t0.elapsed());
    assert_eq!(ev.heap().live_objects(), 0);
    (t, n)
}

/// From inside one task, N times: spawn an empty task and await its
/// output (the form tokio's `spawn_local(..).await` has).
fn task_spawn_join(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    ev.block_on(async move {
        for i in 0..n {
            let t = tevent::with(|ev| ev.spawn(None, async move { i })).expect("spawn");
            assert_eq!(t.join().await, Ok(i), "task output");
        }
    })
    .expect("block_on");
    let t = ns(t0.elapsed());
    assert_eq!(ev.heap().live_objects(), 0);
    (t, n)
}

/// Two tasks yielding to each other, N yields in all.
fn task_yield_pingpong(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let count = Rc::new(Cell::new(0u64));
    for _ in 0..2 {
        let c = count.clone();
        ev.spawn(None, async move {
            while c.get() < n {
                c.set(c.get() + 1);
                tevent::yield_now().await;
            }
        })
        .expect("spawn");
    }
    let t0 = Instant::now();
    while count.get() < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    ev.loop_wait().expect("loop_wait");
    (t, n)
}

/// One task awaiting N zero-length sleeps in turn: a timer added, fired and
/// freed per await.
fn task_timer_await(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    let done = ev
        .block_on(async move {
            for _ in 0..n {
                tevent::sleep(Duration::ZERO).await;
            }
            n
        })
        .expect("block_on");
    let t = ns(t0.elapsed());
    assert_eq!(done, n);
    (t, n)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// One immediate that reschedules itself until it has fired N times.
fn immediate(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let im = ev.create_immediate(None).expect("create_immediate");
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    let t0 = Instant::now();
    ev.schedule_immediate(im, move |ev, im| {
        c.set(c.get() + 1);
        if c.get() < n {
            ev.reschedule_immediate(im).expect("reschedule_immediate");
        }
    })
    .expect("schedule_immediate");
    while count.get() < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    drop(ev);
    (t, n)
}

/// N one-shot timers, all due at the same "now", then loop until all fired.
fn timer(n: u64) -> (u64, u64) {
    let mut ev = Context::new().expect("context");
    let fired = Rc::new(Cell::new(0u64));
    let t0 = Instant::now();
    let due = Instant::now();
    for _ in 0..n {
        let f = fired.clone();
        ev.add_timer(None, due, move |_, _, _| f.set(f.get() + 1))
            .expect("add_timer");
    }
    while fired.get() < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    assert_eq!(fired.get(), n, "timer count");
    drop(ev);
    (t, n)
}

fn xorshift64star(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

struct RState {
    fired: u64,
    last_due: Option<Instant>,
    slots: Vec<(Option<Instant>, bool)>,
}

/// N timers with deadlines spread at random over the second before now,
/// added in that random order.
fn timer_random(n: u64) -> (u64, u64) {
    let mut rng = 42u64;
    let off: Vec<u32> = (0..n)
        .map(|_| (xorshift64star(&mut rng) % 1_000_000) as u32)
        .collect();
    let st = Rc::new(RefCell::new(RState {
        fired: 0,
        last_due: None,
        slots: vec![(None, false); n as usize],
    }));
    let mut ev = Context::new().expect("context");
    let t0 = Instant::now();
    let base = Instant::now() - Duration::from_secs(1);
    for (i, off) in off.iter().enumerate() {
        let due = base + Duration::from_micros(u64::from(*off));
        st.borrow_mut().slots[i].0 = Some(due);
        let s = st.clone();
        ev.add_timer(None, due, move |_, _, _| {
            let mut s = s.borrow_mut();
            let (due, fired) = s.slots[i];
            assert!(!fired, "timer fired once");
            assert!(s.last_due <= due, "timer deadline order");
            s.slots[i].1 = true;
            s.last_due = due;
            s.fired += 1;
        })
        .expect("add_timer");
    }
    while st.borrow().fired < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    let s = st.borrow();
    assert_eq!(s.fired, n, "timer count");
    assert!(s.slots.iter().all(|s| s.1), "every timer fired");
    (t, n)
}

/// One byte bounced between the two ends of a socketpair, N hops.
fn fd_pingpong(n: u64) -> (u64, u64) {
    let (s0, s1) = UnixStream::pair().expect("socketpair");
    s0.set_nonblocking(true).expect("nonblocking");
    s1.set_nonblocking(true).expect("nonblocking");
    let mut ev = Context::new().expect("context");
    let hops = Rc::new(Cell::new(0u64));
    let mut first = s0.try_clone().expect("dup");
    for s in [s0, s1] {
        let h = hops.clone();
        ev.add_fd(None, s, FdFlags::READ, move |ev, fde, flags| {
            assert!(flags.contains(FdFlags::READ), "fd readable");
            // read(2) and write(2), as the C program does.
            let sock = ev.fd_io(fde).expect("fd_io");
            let mut c = [0u8; 1];
            assert_eq!(read(sock.as_raw_fd(), &mut c).expect("read"), 1, "read");
            h.set(h.get() + 1);
            if h.get() < n {
                assert_eq!(write(sock, &c).expect("write"), 1, "write");
            }
        })
        .expect("add_fd");
    }
    let t0 = Instant::now();
    assert_eq!(first.write(b"x").expect("write"), 1);
    while hops.get() < n {
        ev.loop_once().expect("loop_once");
    }
    let t = ns(t0.elapsed());
    drop(ev);
    (t, n)
}

fn run(w: &Workload, size: u64) {
    let mut per_op = Vec::with_capacity(REPS);
    let mut ops = 0;
    for r in 0..REPS {
        let (t, o) = (w.run)(size);
        assert!(o > 0 && (r == 0 || o == ops), "op count");
        ops = o;
        per_op.push(t as f64 / o as f64);
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{}\t{}\t{:.2}\t{:.2}",
        w.name,
        ops,
        per_op[REPS / 2],
        per_op[0]
    );
}

fn maxrss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn usage() -> String {
    let mut s = String::from("usage: workloads [WORKLOAD|all [SIZE]] | --list\nworkloads:\n");
    for w in WORKLOADS {
        s += &format!("  {:<30} default size {}\n", w.name, w.default_size);
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for w in WORKLOADS {
            println!("{}", w.name);
        }
        return;
    }
    if args.len() > 2 || matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        print!("{}", usage());
        std::process::exit(if args.len() > 2 { 2 } else { 0 });
    }
    let sel = args.first().map(String::as_str).unwrap_or("all");
    let only = if sel == "all" {
        None
    } else {
        match WORKLOADS.iter().find(|w| w.name == sel) {
            Some(w) => Some(w),
            None => {
                eprintln!("unknown workload '{sel}'\n{}", usage());
                std::process::exit(2);
            }
        }
    };
    let size = match args.get(1) {
        None => None,
        Some(s) => match (s.parse::<u64>(), only) {
            (Ok(n), Some(w)) if n > 0 && n <= w.max_size => Some(n),
            _ => {
                eprintln!("bad SIZE '{s}' (needs one workload, 1..max)");
                std::process::exit(2);
            }
        },
    };
    let ev = Context::new().expect("context");
    println!(
        "# tevent-rs {} backend {}",
        env!("CARGO_PKG_VERSION"),
        ev.backend_name()
    );
    drop(ev);
    println!("# tevent_backends {}", Context::backends().join(" "));
    println!(
        "# reps {REPS}, clock CLOCK_MONOTONIC, cpus {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("# name\tops\tmedian_ns_per_op\tmin_ns_per_op");
    for w in WORKLOADS {
        match only {
            Some(o) if o.name != w.name => {}
            _ => run(w, size.unwrap_or(w.default_size)),
        }
    }
    println!("# maxrss_kb {}", maxrss_kb());
}
