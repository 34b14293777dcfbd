//! Recipe: shut a server down on SIGTERM.
//!
//! The server is one context in the heap: its listener's fd event, one
//! context per connection, and the SIGTERM handler itself are all in its
//! subtree. The handler says goodbye to each connection and frees the
//! server context: every connection, the listener and the handler go at
//! once, nothing is left registered, and `loop_wait` returns. (The last
//! SIGTERM handler gone, the signal's old action is back: a second
//! SIGTERM terminates the process as usual.)
//!
//! ```text
//! cargo run -p tevent-rs --example graceful_shutdown            # sends itself SIGTERM
//! cargo run -p tevent-rs --example graceful_shutdown -- --wait  # waits for `kill PID`
//! ```

use std::error::Error;
use std::io::{self, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use talloc::Ptr;
use tevent::{CallbackError, Context, FdEvent, FdFlags, SaFlags, Signal};

/// One connection's state: an object under the connection's context.
struct Session {
    sock: FdEvent<UnixStream>,
    lines: usize,
}

/// What the shutdown saw, kept outside the server (so it outlives it).
#[derive(Debug, Default)]
struct Shutdown {
    signal: Option<Signal>,
    count: u64,
    /// Connections open when the signal came.
    open: usize,
}

/// A server context with a listener and a SIGTERM handler, both in its
/// subtree.
fn start_server(
    ev: &mut Context,
    addr: &SocketAddr,
    record: Ptr<Shutdown>,
) -> Result<Ptr<()>, Box<dyn Error>> {
    let server = ev.heap_mut().new_context(None)?;
    ev.heap_mut().set_name_const(server, "server")?;
    // A blocking listener: one accept per readiness (the fd is readable,
    // so it does not block).
    let listener = UnixListener::bind_addr(addr)?;
    ev.add_fd(server, listener, FdFlags::READ, move |ev, fde, _| {
        let (sock, _) = ev.fd_io(fde)?.accept()?;
        add_connection(ev, server, sock)
    })?;
    ev.add_signal(
        server,
        Signal::SIGTERM,
        SaFlags::empty(),
        move |ev, _, delivery| {
            let open = say_goodbye(ev, server)?;
            let r = ev.heap_mut().get_mut(record)?;
            r.signal = Some(delivery.signal);
            r.count += delivery.count;
            r.open = open;
            // Connections, listener, this very handler: all in one free.
            ev.free(server)?;
            Ok(())
        },
    )?;
    Ok(server)
}

/// A connection: a context under the server with its session and its fd
/// event, an echo of whatever comes in.
fn add_connection(
    ev: &mut Context,
    server: Ptr<()>,
    sock: UnixStream,
) -> Result<(), CallbackError> {
    let conn = ev.heap_mut().new_context(server)?;
    let sock = ev.add_fd(conn, sock, FdFlags::READ, move |ev, fde, _| {
        // One read per readiness (a blocking socket that is readable does
        // not block); see the read_to_eof recipe for reading until
        // `WouldBlock`.
        let mut buf = [0u8; 4096];
        let n = ev.fd_io(fde)?.read(&mut buf)?;
        if n == 0 {
            ev.free(conn)?; // the peer hung up
            return Ok(());
        }
        ev.fd_io(fde)?.write_all(&buf[..n])?;
        if let Some(s) = ev.heap().children(conn)?.of_type::<Session>().next() {
            ev.heap_mut().get_mut(s)?.lines += 1;
        }
        Ok(())
    });
    match sock {
        Ok(sock) => {
            ev.heap_mut().alloc(conn, Session { sock, lines: 0 })?;
            Ok(())
        }
        Err(e) => {
            ev.free(conn)?;
            Err(e.into())
        }
    }
}

/// Tells every open connection the server is going; how many there were.
/// The sessions are found by their type in the server's subtree.
fn say_goodbye(ev: &mut Context, server: Ptr<()>) -> Result<usize, CallbackError> {
    let sessions: Vec<Ptr<Session>> = ev.heap().descendants(server)?.of_type().collect();
    for &s in &sessions {
        let sock = ev.heap().get(s)?.sock;
        // Best effort: a peer that is gone already is no reason to stop.
        let _ = ev.fd_io(sock)?.write_all(b"bye\n");
    }
    Ok(sessions.len())
}

fn unique_addr() -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("tevent-shutdown-{}", std::process::id()).as_bytes())
}

fn main() -> Result<(), Box<dyn Error>> {
    let wait = std::env::args().any(|a| a == "--wait");
    let mut ev = Context::new()?;
    let record = ev.heap_mut().alloc(None, Shutdown::default())?;
    let addr = unique_addr()?;
    let server = start_server(&mut ev, &addr, record)?;
    let mut clients = [
        UnixStream::connect_addr(&addr)?,
        UnixStream::connect_addr(&addr)?,
    ];
    if wait {
        println!(
            "serving on {addr:?}: stop me with `kill {}`",
            std::process::id()
        );
    } else {
        // As `kill` from another process would: a signal to the process.
        ev.add_timer(None, Duration::from_millis(200), |_, _, _| {
            println!("sending SIGTERM to myself");
            nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGTERM)?;
            Ok(())
        })?;
    }
    ev.loop_wait()?; // until the server is gone
    println!("{:?}", ev.heap()[record]);
    for (i, c) in clients.iter_mut().enumerate() {
        let mut said = String::new();
        c.read_to_string(&mut said)?; // up to the end of file
        println!("client {i} got {said:?} and then the end of file");
    }
    println!(
        "server in the heap: {}; events left: {}",
        ev.heap().contains(server),
        ev.has_events()
    );
    Ok(())
}

// Signal handlers are process-wide: this binary has a single test.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_frees_the_server_and_ends_the_loop() {
        const N: usize = 3;
        let limit = Some(Duration::from_secs(2));
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(10));
        let baseline = ev.heap().live_objects();
        let record = ev.heap_mut().alloc(None, Shutdown::default()).unwrap();
        let addr = unique_addr().unwrap();
        let server = start_server(&mut ev, &addr, record).unwrap();

        let mut clients = Vec::new();
        for i in 0..N {
            let mut c = UnixStream::connect_addr(&addr).unwrap();
            c.set_read_timeout(limit).unwrap();
            ev.loop_once().unwrap(); // accepts it
            let msg = format!("hello {i}\n");
            c.write_all(msg.as_bytes()).unwrap();
            ev.loop_once().unwrap(); // echoes it
            let mut back = vec![0u8; msg.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
            clients.push(c);
        }
        let sessions: Vec<Ptr<Session>> =
            ev.heap().descendants(server).unwrap().of_type().collect();
        assert_eq!(sessions.len(), N);
        assert!(sessions.iter().all(|&s| ev.heap()[s].lines == 1));

        nix::sys::signal::raise(nix::sys::signal::SIGTERM).unwrap();
        ev.loop_wait().unwrap(); // returns: the handler freed everything

        let r = ev.heap_mut().take(record).unwrap();
        assert_eq!(r.signal, Some(Signal::SIGTERM));
        assert_eq!(r.count, 1);
        assert_eq!(r.open, N);
        assert!(!ev.heap().contains(server));
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
        for mut c in clients {
            let mut said = String::new();
            c.read_to_string(&mut said).unwrap();
            assert_eq!(said, "bye\n", "a goodbye, then the end of file");
        }
    }
}
