//! Recipe: errors in callbacks, with `?`.
//!
//! A small service keeps a running total per connection: each line is a
//! number, each answer the total so far. Its fd handler returns
//! `Result<(), CallbackError>` and uses `?` on everything that can fail:
//! reads and writes (I/O errors), UTF-8 and number parsing, the heap.
//! An error is wrapped in a `ConnError` that names the connection it
//! belongs to, so whoever receives it knows what to end.
//!
//! Two ways to receive it, and the program runs both:
//!
//! - without a hook, the error comes out of `loop_once` (or `loop_wait`)
//!   as `tevent::Error::Callback(failure)`; `failure.error()` is the
//!   handler's error, and the caller frees the connection and goes on;
//! - with an error hook (`set_error_hook`), the hook sees it first, inside
//!   the loop: it logs it and frees the connection (`Ok(())`: handled), or
//!   passes on an error that is not a connection's (`Err`), which then
//!   comes out of `loop_once`.
//!
//! ```text
//! cargo run -p tevent-rs --example callback_errors
//! ```

use std::error::Error;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use talloc::Ptr;
use tevent::{CallbackError, Context, FdEvent, FdFlags};

/// A connection's running total: an object under the connection context.
#[derive(Debug, Default)]
struct Sum {
    total: i64,
    lines: usize,
    /// Bytes of a line not complete yet.
    partial: Vec<u8>,
}

/// An error of one connection's handler, with the connection it ends.
#[derive(Debug)]
struct ConnError {
    conn: Ptr<()>,
    cause: CallbackError,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {:?} failed: {}", self.conn, self.cause)
    }
}

impl Error for ConnError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.cause)
    }
}

/// What was done about each failed connection.
type Log = Vec<(Ptr<()>, String)>;

/// A connection on `sock`: a context with its `Sum` and its fd event.
fn add_conn(ev: &mut Context, sock: UnixStream) -> Result<(Ptr<()>, Ptr<Sum>), Box<dyn Error>> {
    let conn = ev.heap_mut().new_context(None)?;
    let sum = ev.heap_mut().alloc(conn, Sum::default())?;
    ev.add_fd(conn, sock, FdFlags::READ, move |ev, fde, _| {
        // Any error of the handler becomes this connection's error.
        on_readable(ev, fde, conn, sum)
            .map_err(|cause| -> CallbackError { Box::new(ConnError { conn, cause }) })
    })?;
    Ok((conn, sum))
}

/// The handler: `?` on every step that can fail.
fn on_readable(
    ev: &mut Context,
    fde: FdEvent<UnixStream>,
    conn: Ptr<()>,
    sum: Ptr<Sum>,
) -> Result<(), CallbackError> {
    let mut buf = [0u8; 1024];
    let n = ev.fd_io(fde)?.read(&mut buf)?; // an I/O error
    if n == 0 {
        ev.free(conn)?; // the peer is done
        return Ok(());
    }
    ev.heap_mut()
        .get_mut(sum)?
        .partial
        .extend_from_slice(&buf[..n]);
    loop {
        let line: Vec<u8> = {
            let s = ev.heap_mut().get_mut(sum)?;
            let Some(end) = s.partial.iter().position(|&b| b == b'\n') else {
                return Ok(()); // the rest of the line comes later
            };
            s.partial.drain(..=end).collect()
        };
        let text = std::str::from_utf8(&line)?; // a UTF-8 error
        let number: i64 = text.trim().parse()?; // a parse error
        let total = {
            let s = ev.heap_mut().get_mut(sum)?;
            s.total += number;
            s.lines += 1;
            s.total
        };
        ev.fd_io(fde)?
            .write_all(format!("total {total}\n").as_bytes())?; // an I/O error
    }
}

/// Frees a failed connection; what to log about it.
fn end_connection(ev: &mut Context, e: &ConnError) -> Result<String, tevent::Error> {
    // The handler may have freed it already before it failed.
    if ev.heap().contains(e.conn) {
        ev.free(e.conn)?;
    }
    Ok(e.cause.to_string())
}

/// Way 1, no hook: runs the loop until `done`; a connection's error comes
/// out of `loop_once`, and the caller ends that connection and goes on.
/// Any other error ends the loop.
fn run_without_hook(
    ev: &mut Context,
    limit: Duration,
    mut done: impl FnMut(&Context) -> bool,
) -> Result<Log, Box<dyn Error>> {
    let start = Instant::now();
    let mut log = Log::new();
    while !done(ev) {
        if start.elapsed() > limit {
            return Err("timed out".into());
        }
        match ev.loop_once() {
            Ok(()) => {}
            Err(tevent::Error::Callback(failure)) => {
                match failure.error().downcast_ref::<ConnError>() {
                    Some(e) => log.push((e.conn, end_connection(ev, e)?)),
                    None => return Err(tevent::Error::Callback(failure).into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(log)
}

/// Way 2: a hook that ends a failed connection inside the loop and logs it
/// into `log` (a heap object); other errors pass on.
fn install_hook(ev: &mut Context, log: Ptr<Log>) {
    ev.set_error_hook(move |ev, e| {
        let Some(failed) = e.downcast_ref::<ConnError>() else {
            return Err(e); // not a connection's: out of loop_once
        };
        let what = end_connection(ev, failed)?;
        ev.heap_mut().get_mut(log)?.push((failed.conn, what));
        Ok(()) // handled: the loop goes on
    });
}

/// Three clients: one that behaves, one that sends a word instead of a
/// number, one that hangs up before reading its answer.
struct Scenario {
    good: UnixStream,
    good_sum: Ptr<Sum>,
    wordy: UnixStream,
    wordy_conn: Ptr<()>,
    hangup_conn: Ptr<()>,
}

impl Scenario {
    fn start(ev: &mut Context) -> Result<Scenario, Box<dyn Error>> {
        let (mut good, theirs) = UnixStream::pair()?;
        let (_, good_sum) = add_conn(ev, theirs)?;
        let (mut wordy, theirs) = UnixStream::pair()?;
        let (wordy_conn, _) = add_conn(ev, theirs)?;
        let (mut hangup, theirs) = UnixStream::pair()?;
        let (hangup_conn, _) = add_conn(ev, theirs)?;
        good.write_all(b"1\n2\n3\n")?;
        wordy.write_all(b"4\nfive\n")?;
        hangup.write_all(b"6\n")?;
        drop(hangup); // its answer will hit a closed socket: EPIPE
        Ok(Scenario {
            good,
            good_sum,
            wordy,
            wordy_conn,
            hangup_conn,
        })
    }

    /// Both failed connections ended, the good one answered thrice.
    fn over(&self, ev: &Context) -> bool {
        !ev.heap().contains(self.wordy_conn)
            && !ev.heap().contains(self.hangup_conn)
            && ev.heap().get(self.good_sum).is_ok_and(|s| s.lines == 3)
    }

    /// What the two talking clients read back: all of it for the good one
    /// (still connected), up to the end of file for the wordy one.
    fn answers(mut self) -> Result<(String, String), Box<dyn Error>> {
        let mut good = vec![0u8; "total 1\ntotal 3\ntotal 6\n".len()];
        self.good.read_exact(&mut good)?;
        let mut wordy = String::new();
        self.wordy.read_to_string(&mut wordy)?;
        Ok((String::from_utf8(good)?, wordy))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    println!("way 1: errors come out of loop_once");
    let mut ev = Context::new()?;
    let s = Scenario::start(&mut ev)?;
    let log = run_without_hook(&mut ev, Duration::from_secs(5), |ev| s.over(ev))?;
    for (conn, what) in &log {
        println!("  ended {conn:?}: {what}");
    }
    println!("  answers: {:?}", s.answers()?);

    println!("way 2: an error hook ends the connection inside the loop");
    let mut ev = Context::new()?;
    let log = ev.heap_mut().alloc(None, Log::new())?;
    install_hook(&mut ev, log);
    let s = Scenario::start(&mut ev)?;
    ev.loop_until(|ev| s.over(ev))?; // no error comes out
    for (conn, what) in &ev.heap()[log] {
        println!("  ended {conn:?}: {what}");
    }
    println!("  answers: {:?}", s.answers()?);

    // An error that is not a connection's passes the hook.
    ev.add_timer(None, Duration::ZERO, |_, _, _| {
        Err("the configuration is broken".into())
    })?;
    match ev.loop_once() {
        Err(tevent::Error::Callback(failure)) => {
            println!("  passed on by the hook: {}", failure.error())
        }
        other => println!("  unexpected: {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::num::ParseIntError;

    const LIMIT: Duration = Duration::from_secs(2);

    fn new_loop() -> Context {
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(10));
        ev
    }

    /// The cause of a logged or returned connection error, by kind.
    fn is_parse_error(e: &ConnError) -> bool {
        e.cause.downcast_ref::<ParseIntError>().is_some()
    }

    #[test]
    fn an_error_comes_out_of_loop_once_and_the_loop_goes_on() {
        let mut ev = new_loop();
        let (mut client, theirs) = UnixStream::pair().unwrap();
        let (conn, sum) = add_conn(&mut ev, theirs).unwrap();
        client.write_all(b"forty-two\n").unwrap();

        let Err(tevent::Error::Callback(failure)) = ev.loop_once() else {
            panic!("the parse error should come out");
        };
        let e = failure.error().downcast_ref::<ConnError>().unwrap();
        assert_eq!(e.conn, conn);
        assert!(is_parse_error(e), "cause: {}", e.cause);
        // Nobody freed the connection: it is still there, and works.
        assert!(ev.heap().contains(conn));
        client.write_all(b"42\n").unwrap();
        ev.loop_once().unwrap();
        assert_eq!(ev.heap()[sum].total, 42);
        ev.free(conn).unwrap();
        assert!(!ev.has_events());
    }

    #[test]
    fn without_a_hook_the_caller_ends_the_failed_connections() {
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let s = Scenario::start(&mut ev).unwrap();
        let log = run_without_hook(&mut ev, LIMIT, |ev| s.over(ev)).unwrap();
        check(&log, &s);
        let good_conn = ev.heap().parent(s.good_sum).unwrap().unwrap();
        let (good, wordy) = s.answers().unwrap();
        assert_eq!(good, "total 1\ntotal 3\ntotal 6\n");
        assert_eq!(wordy, "total 4\n", "answered 4, failed on five, closed");
        ev.free(good_conn).unwrap();
        assert_eq!(ev.heap().live_objects(), baseline);
    }

    #[test]
    fn the_error_hook_ends_only_the_failed_connections() {
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let log = ev.heap_mut().alloc(None, Log::new()).unwrap();
        install_hook(&mut ev, log);
        let s = Scenario::start(&mut ev).unwrap();
        let start = Instant::now();
        ev.loop_until(|ev| s.over(ev) || start.elapsed() > LIMIT)
            .unwrap(); // the hook handled both: nothing came out
        assert!(s.over(&ev), "timed out");
        check(&ev.heap()[log], &s);
        let good_conn = ev.heap().parent(s.good_sum).unwrap().unwrap();
        assert!(ev.heap().contains(good_conn));
        let (good, wordy) = s.answers().unwrap();
        assert_eq!(good, "total 1\ntotal 3\ntotal 6\n");
        assert_eq!(wordy, "total 4\n");

        // Not a connection's error: the hook passes it on.
        ev.add_timer(None, Duration::ZERO, |_, _, _| {
            Err("not a connection's".into())
        })
        .unwrap();
        let Err(tevent::Error::Callback(failure)) = ev.loop_once() else {
            panic!("the hook should pass it on");
        };
        assert_eq!(failure.error().to_string(), "not a connection's");
        assert_eq!(ev.heap()[log].len(), 2);

        ev.free(good_conn).unwrap();
        ev.free(log).unwrap();
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
    }

    /// Two entries: the wordy connection's parse error and the hung-up
    /// one's broken pipe.
    fn check(log: &Log, s: &Scenario) {
        assert_eq!(log.len(), 2, "{log:?}");
        let wordy = log.iter().find(|(c, _)| *c == s.wordy_conn).unwrap();
        assert_eq!(wordy.1, "five".parse::<i64>().unwrap_err().to_string());
        let hangup = log.iter().find(|(c, _)| *c == s.hangup_conn).unwrap();
        let epipe = std::io::Error::from_raw_os_error(nix::libc::EPIPE);
        assert_eq!(epipe.kind(), ErrorKind::BrokenPipe);
        assert_eq!(hangup.1, epipe.to_string());
    }
}
