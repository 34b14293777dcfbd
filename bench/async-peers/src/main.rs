//! The async task workloads on three single-threaded runtimes: tevent-rs
//! (ours), tokio's current-thread runtime with a `LocalSet`, and calloop's
//! futures executor. See `bench/async-peers/README.md`.
//!
//! ```text
//! cargo run --release -p async-peers [-- [--rounds K] [WORKLOAD ...]]
//! cargo run --release -p async-peers -- --list
//! ```
//!
//! For each workload and round the three runtimes run one after the other
//! (tevent, tokio, calloop), each for 5 repetitions; one row gives the
//! medians in ns per operation and the ratios peer / tevent of the medians
//! (above 1: tevent is faster), a `# min` row the same for the minimums.

mod calloop_side;
mod tevent_side;
mod tokio_side;

use std::time::Duration;

const REPS: usize = 5;

/// One repetition on one runtime: builds its state, returns the timed
/// nanoseconds (the operation count is the workload's N).
type Rep = fn(u64) -> u64;

const RUNTIMES: [&str; 3] = ["tevent", "tokio", "calloop"];

struct Workload {
    name: &'static str,
    /// N: operations per repetition.
    n: u64,
    /// tevent, tokio, calloop (the order of [`RUNTIMES`]).
    runs: [Rep; 3],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "task_spawn_complete",
        n: 200_000,
        runs: [
            tevent_side::task_spawn_complete,
            tokio_side::task_spawn_complete,
            calloop_side::task_spawn_complete,
        ],
    },
    Workload {
        name: "task_yield_pingpong",
        n: 500_000,
        runs: [
            tevent_side::task_yield_pingpong,
            tokio_side::task_yield_pingpong,
            calloop_side::task_yield_pingpong,
        ],
    },
    // tokio's timer wheel counts whole milliseconds and rounds a deadline up
    // to the end of its millisecond, so each zero-length sleep there waits
    // for the next tick (about 1 ms): at tevent's usual N = 100,000 one
    // tokio repetition would take nearly two minutes.
    Workload {
        name: "task_timer_await",
        n: 5_000,
        runs: [
            tevent_side::task_timer_await,
            tokio_side::task_timer_await,
            calloop_side::task_timer_await,
        ],
    },
    // On a 2-vCPU virtual machine a round trip costs up to ~100 µs of
    // thread wake-ups whatever the runtime; 20,000 keeps a repetition near
    // 2 s (tevent-thread's own example uses 100,000).
    Workload {
        name: "task_thread_ask_roundtrip",
        n: 20_000,
        runs: [
            tevent_side::task_thread_ask_roundtrip,
            tokio_side::task_thread_ask_roundtrip,
            calloop_side::task_thread_ask_roundtrip,
        ],
    },
];

pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("elapsed time fits in u64 ns")
}

/// The median (3rd of 5 sorted) and the minimum, in ns per operation.
#[derive(Clone, Copy)]
struct Figures {
    median: f64,
    min: f64,
}

fn measure(rep: Rep, n: u64) -> Figures {
    let mut per_op: Vec<f64> = (0..REPS).map(|_| rep(n) as f64 / n as f64).collect();
    per_op.sort_by(f64::total_cmp);
    Figures {
        median: per_op[REPS / 2],
        min: per_op[0],
    }
}

/// `workload`, the three figures, then tokio / tevent and calloop / tevent.
fn row(prefix: &str, name: &str, f: [f64; 3]) {
    println!(
        "{prefix}{name}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{:.2}",
        f[0],
        f[1],
        f[2],
        f[1] / f[0],
        f[2] / f[0]
    );
}

/// The version of `package` in the workspace's lock file (`?` if absent).
fn locked_version(package: &str) -> &'static str {
    const LOCK: &str = include_str!("../../../Cargo.lock");
    let name = format!("name = \"{package}\"");
    let mut lines = LOCK.lines();
    while let Some(l) = lines.next() {
        if l == name {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                return v.trim_end_matches('"');
            }
        }
    }
    "?"
}

enum Cli {
    Run {
        rounds: u32,
        selected: Vec<&'static Workload>,
    },
    List,
    Help,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut rounds = 1;
    let mut selected: Vec<&'static Workload> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => return Ok(Cli::List),
            "-h" | "--help" => return Ok(Cli::Help),
            "--rounds" => {
                let v = it.next().ok_or("--rounds needs a value")?;
                rounds = match v.parse::<u32>() {
                    Ok(k) if k > 0 => k,
                    _ => return Err(format!("bad --rounds value '{v}' (a whole number >= 1)")),
                };
            }
            opt if opt.starts_with('-') => return Err(format!("unknown option '{opt}'")),
            name => {
                let w = WORKLOADS
                    .iter()
                    .find(|w| w.name == name)
                    .ok_or_else(|| format!("unknown workload '{name}'"))?;
                if !selected.iter().any(|s| s.name == w.name) {
                    selected.push(w);
                }
            }
        }
    }
    if selected.is_empty() {
        selected = WORKLOADS.iter().collect();
    }
    Ok(Cli::Run { rounds, selected })
}

fn usage() -> String {
    let mut s = String::from(
        "usage: async-peers [--rounds K] [WORKLOAD ...]   (default: all workloads, 1 round)\n\
         \x20      async-peers --list\n\
         workloads (N = operations per repetition):\n",
    );
    for w in WORKLOADS {
        s += &format!("  {:<28} N = {}\n", w.name, w.n);
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rounds, selected) = match parse(&args) {
        Ok(Cli::Run { rounds, selected }) => (rounds, selected),
        Ok(Cli::List) => {
            for w in WORKLOADS {
                println!("{}", w.name);
            }
            return;
        }
        Ok(Cli::Help) => {
            print!("{}", usage());
            return;
        }
        Err(msg) => {
            eprint!("async-peers: {msg}\n{}", usage());
            std::process::exit(2);
        }
    };

    let ev = tevent::Context::new().expect("context");
    println!(
        "# async-peers: tevent-rs {} (backend {}), tokio {} (current_thread + LocalSet), \
         calloop {} (futures executor)",
        locked_version("tevent-rs"),
        ev.backend_name(),
        locked_version("tokio"),
        locked_version("calloop"),
    );
    drop(ev);
    println!(
        "# reps {REPS} per runtime and round, cpus {}, rounds {rounds}; N: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        selected
            .iter()
            .map(|w| format!("{} {}", w.name, w.n))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "# ns/op medians; '# min' rows: the minimums; ratios peer / tevent (above 1: tevent is faster)"
    );
    let [base, peers @ ..] = RUNTIMES;
    let mut header = String::from("# workload");
    for r in RUNTIMES {
        header += &format!("\t{r}_ns/op");
    }
    for p in peers {
        header += &format!("\t{p}/{base}");
    }
    println!("{header}");
    for w in selected {
        for _ in 0..rounds {
            // One runtime after the other, in the order of RUNTIMES.
            let mut figs = [Figures {
                median: 0.0,
                min: 0.0,
            }; 3];
            for (f, rep) in figs.iter_mut().zip(w.runs) {
                *f = measure(rep, w.n);
            }
            row("", w.name, figs.map(|f| f.median));
            row("# min ", w.name, figs.map(|f| f.min));
        }
    }
}
