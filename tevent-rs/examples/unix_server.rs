//! Recipe: a Unix-socket echo server with many connections.
//!
//! The server is a context in the loop's heap. Under it: its books
//! (`Stats`), the listener's fd event, and one context per connection.
//! Each connection context owns the connection's buffers, its idle timer
//! and its fd event (which owns the socket). Whatever ends a connection
//! (the peer hanging up, the idle timer, an I/O error) does one thing:
//! it frees the connection context, and the fd event, the timer and the
//! buffers go with it, the socket closed.
//!
//! ```text
//! cargo run -p tevent-rs --example unix_server [-- CLIENTS]
//! ```

use std::error::Error;
use std::io::{self, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use talloc::Ptr;
use tevent::{CallbackError, Context, FdEvent, FdFlags, TimerEvent};

/// Stop reading from a peer that does not read its echo back once this
/// much is waiting to be written.
const MAX_PENDING: usize = 64 * 1024;

/// The server's books: an object under the server context.
#[derive(Debug, Default)]
struct Stats {
    accepted: usize,
    closed_by_peer: usize,
    timed_out: usize,
    /// Bytes written back.
    echoed: usize,
    /// Every connection context, in the order of accept. A handle is a
    /// number, not a reference: it stays safe to ask about after its
    /// object is freed (`contains` says false).
    conns: Vec<Ptr<()>>,
}

/// One connection's buffers: an object under the connection context.
#[derive(Debug, Default)]
struct Buffers {
    /// Read, not yet written back.
    pending: Vec<u8>,
    received: usize,
}

/// What the handlers of one connection need: handles only (`Copy`).
#[derive(Clone, Copy)]
struct Conn {
    ctx: Ptr<()>,
    bufs: Ptr<Buffers>,
    idle_timer: TimerEvent,
    idle: Duration,
    stats: Ptr<Stats>,
}

/// The server's handles.
struct Server {
    ctx: Ptr<()>,
    stats: Ptr<Stats>,
    listener: FdEvent<UnixListener>,
}

/// An address of Linux's abstract namespace: no file to clean up, no port
/// to collide with another test.
fn unique_addr() -> io::Result<SocketAddr> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "tevent-recipe-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// Listens on `addr`: the server context, its books and the listener's fd
/// event, which accepts every pending connection when it fires.
fn start_server(
    ev: &mut Context,
    addr: &SocketAddr,
    idle: Duration,
) -> Result<Server, Box<dyn Error>> {
    let listener = UnixListener::bind_addr(addr)?;
    listener.set_nonblocking(true)?;
    let ctx = ev.heap_mut().new_context(None)?;
    ev.heap_mut().set_name_const(ctx, "server")?;
    let stats = ev.heap_mut().alloc(ctx, Stats::default())?;
    let listener = ev.add_fd(ctx, listener, FdFlags::READ, move |ev, fde, _| {
        accept_all(ev, fde, ctx, stats, idle)
    })?;
    Ok(Server {
        ctx,
        stats,
        listener,
    })
}

/// The listener is readable: accept until `WouldBlock`.
fn accept_all(
    ev: &mut Context,
    listener: FdEvent<UnixListener>,
    server: Ptr<()>,
    stats: Ptr<Stats>,
    idle: Duration,
) -> Result<(), CallbackError> {
    loop {
        let stream = match ev.fd_io(listener)?.accept() {
            Ok((stream, _addr)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let conn = add_connection(ev, server, stream, stats, idle)?;
        let books = ev.heap_mut().get_mut(stats)?;
        books.accepted += 1;
        books.conns.push(conn);
    }
}

/// A connection: a context under the server that owns its buffers, its
/// idle timer and its fd event. Nothing is left behind if a step fails.
fn add_connection(
    ev: &mut Context,
    server: Ptr<()>,
    stream: UnixStream,
    stats: Ptr<Stats>,
    idle: Duration,
) -> Result<Ptr<()>, CallbackError> {
    stream.set_nonblocking(true)?;
    let ctx = ev.heap_mut().new_context(server)?;
    ev.heap_mut().set_name_const(ctx, "connection")?;
    let parts = |ev: &mut Context| -> Result<(), CallbackError> {
        let bufs = ev.heap_mut().alloc(ctx, Buffers::default())?;
        let idle_timer = ev.add_timer(ctx, idle, move |ev, _, _| {
            ev.heap_mut().get_mut(stats)?.timed_out += 1;
            ev.free(ctx)?; // the fd event (closing the socket) and the buffers go too
            Ok(())
        })?;
        // Event objects are named after their types; a name of our own
        // reads better in a heap report.
        ev.heap_mut().set_name_const(idle_timer, "idle timer")?;
        let conn = Conn {
            ctx,
            bufs,
            idle_timer,
            idle,
            stats,
        };
        ev.add_fd(ctx, stream, FdFlags::READ, move |ev, fde, flags| {
            on_ready(ev, fde, flags, conn)
        })?;
        Ok(())
    };
    match parts(ev) {
        Ok(()) => Ok(ctx),
        Err(e) => {
            ev.free(ctx)?;
            Err(e)
        }
    }
}

/// The peer went away under a read or a write.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A connection's socket is ready: read what there is, write back what we
/// can, and watch for what is needed next.
fn on_ready(
    ev: &mut Context,
    fde: FdEvent<UnixStream>,
    flags: FdFlags,
    conn: Conn,
) -> Result<(), CallbackError> {
    if flags.contains(FdFlags::READ) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match ev.fd_io(fde)?.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_disconnect(&e) => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                // End of file: the peer hung up. One free ends everything.
                ev.heap_mut().get_mut(conn.stats)?.closed_by_peer += 1;
                ev.free(conn.ctx)?;
                return Ok(());
            }
            let bufs = ev.heap_mut().get_mut(conn.bufs)?;
            bufs.pending.extend_from_slice(&chunk[..n]);
            bufs.received += n;
            if bufs.pending.len() >= MAX_PENDING {
                break;
            }
        }
        // Activity: the idle clock starts over.
        ev.update_timer(conn.idle_timer, conn.idle)?;
    }
    // Write back until the socket is full or nothing is left.
    loop {
        let written = {
            let pending = &ev.heap().get(conn.bufs)?.pending;
            if pending.is_empty() {
                break;
            }
            match ev.fd_io(fde)?.write(pending) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_disconnect(&e) => {
                    ev.heap_mut().get_mut(conn.stats)?.closed_by_peer += 1;
                    ev.free(conn.ctx)?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        };
        ev.heap_mut().get_mut(conn.bufs)?.pending.drain(..written);
        ev.heap_mut().get_mut(conn.stats)?.echoed += written;
    }
    // Read while there is room; write while something waits.
    let pending = ev.heap().get(conn.bufs)?.pending.len();
    let mut want = FdFlags::empty();
    if pending < MAX_PENDING {
        want |= FdFlags::READ;
    }
    if pending > 0 {
        want |= FdFlags::WRITE;
    }
    if ev.fd_flags(fde)? != want {
        ev.set_fd_flags(fde, want)?;
    }
    Ok(())
}

/// Runs the loop until `done`, or fails after `limit`.
fn run_until(
    ev: &mut Context,
    limit: Duration,
    mut done: impl FnMut(&Context) -> bool,
) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    ev.loop_until(|ev| done(ev) || start.elapsed() > limit)?;
    if done(ev) {
        Ok(())
    } else {
        Err("timed out".into())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let clients: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    let mut ev = Context::new()?;
    ev.set_wait_timeout(Duration::from_millis(100));
    let addr = unique_addr()?;
    let server = start_server(&mut ev, &addr, Duration::from_millis(300))?;
    println!(
        "listening on {addr:?} (fd {})",
        ev.fd_number(server.listener)?
    );

    // The clients are plain blocking sockets of this same thread: the
    // loop runs in between.
    let mut socks = Vec::new();
    for _ in 0..clients {
        socks.push(UnixStream::connect_addr(&addr)?);
    }
    run_until(&mut ev, Duration::from_secs(5), |ev| {
        ev.heap()[server.stats].accepted == clients
    })?;
    let mut sent = 0;
    for (i, sock) in socks.iter_mut().enumerate() {
        let line = format!("hello from client {i}\n");
        sock.write_all(line.as_bytes())?;
        sent += line.len();
    }
    run_until(&mut ev, Duration::from_secs(5), |ev| {
        ev.heap()[server.stats].echoed == sent
    })?;
    for sock in &mut socks {
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(&*sock), &mut line)?;
        print!("echo: {line}");
    }
    println!("the server's heap with {clients} connections:");
    print!("{}", ev.heap().report_full(server.ctx)?);

    drop(socks.remove(0));
    println!("client 0 hung up; the others go quiet and time out...");
    run_until(&mut ev, Duration::from_secs(5), |ev| {
        ev.heap()[server.stats]
            .conns
            .iter()
            .all(|&c| !ev.heap().contains(c))
    })?;
    println!("{:?}", ev.heap()[server.stats]);
    ev.free(server.ctx)?;
    println!(
        "server freed: events left: {}, objects left: {}",
        ev.has_events(),
        ev.heap().live_objects()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    fn new_loop() -> Context {
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(10));
        ev
    }

    /// Objects of one connection: its context, buffers, timer, fd event.
    const PER_CONN: usize = 4;
    /// Objects of the server: its context, books, listener.
    const PER_SERVER: usize = 3;

    #[test]
    fn each_connection_is_a_subtree_that_goes_in_one_free() {
        const N: usize = 6;
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let addr = unique_addr().unwrap();
        let server = start_server(&mut ev, &addr, Duration::from_millis(300)).unwrap();
        let stats = server.stats;

        let mut clients: Vec<UnixStream> = (0..N)
            .map(|_| UnixStream::connect_addr(&addr).unwrap())
            .collect();
        run_until(&mut ev, LIMIT, |ev| ev.heap()[stats].accepted == N).unwrap();
        let conns = ev.heap()[stats].conns.clone();
        for &c in &conns {
            // buffers, timer, fd event
            assert_eq!(ev.heap().children(c).unwrap().count(), 3);
            assert_eq!(ev.heap().parent(c).unwrap(), Some(server.ctx.erase()));
        }
        assert_eq!(
            ev.heap().live_objects(),
            baseline + PER_SERVER + N * PER_CONN
        );

        // Every client gets its own bytes back.
        let mut sent = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("message {i}");
            c.write_all(msg.as_bytes()).unwrap();
            sent += msg.len();
        }
        run_until(&mut ev, LIMIT, |ev| ev.heap()[stats].echoed == sent).unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Some(LIMIT)).unwrap();
            let mut buf = vec![0u8; format!("message {i}").len()];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(buf, format!("message {i}").as_bytes());
        }

        // Client 0 hangs up: end of file frees its whole subtree at once.
        drop(clients.remove(0));
        run_until(&mut ev, LIMIT, |ev| ev.heap()[stats].closed_by_peer == 1).unwrap();
        assert!(!ev.heap().contains(conns[0]));
        assert!(conns[1..].iter().all(|&c| ev.heap().contains(c)));
        assert_eq!(
            ev.heap().live_objects(),
            baseline + PER_SERVER + (N - 1) * PER_CONN
        );

        // The others stay quiet: their idle timers free them.
        run_until(&mut ev, LIMIT, |ev| ev.heap()[stats].timed_out == N - 1).unwrap();
        assert!(conns.iter().all(|&c| !ev.heap().contains(c)));
        assert_eq!(ev.heap().live_objects(), baseline + PER_SERVER);
        for mut c in clients {
            let mut buf = [0u8; 1];
            assert_eq!(c.read(&mut buf).unwrap(), 0, "the server closed the socket");
        }

        // Only the listener is left; freeing the server takes it too.
        assert!(ev.has_events());
        assert!(ev.heap().contains(server.listener));
        ev.free(server.ctx).unwrap();
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
    }

    #[test]
    fn freeing_the_server_closes_every_connection() {
        const N: usize = 4;
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let addr = unique_addr().unwrap();
        let server = start_server(&mut ev, &addr, Duration::from_secs(60)).unwrap();
        let mut clients: Vec<UnixStream> = (0..N)
            .map(|_| UnixStream::connect_addr(&addr).unwrap())
            .collect();
        run_until(&mut ev, LIMIT, |ev| ev.heap()[server.stats].accepted == N).unwrap();

        ev.free(server.ctx).unwrap();
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
        ev.loop_wait().unwrap(); // nothing left: returns at once
        for c in &mut clients {
            c.set_read_timeout(Some(LIMIT)).unwrap();
            assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
        }
    }

    #[test]
    fn a_large_echo_goes_through_partial_writes() {
        const SIZE: usize = 512 * 1024;
        let mut ev = new_loop();
        let addr = unique_addr().unwrap();
        let server = start_server(&mut ev, &addr, Duration::from_secs(60)).unwrap();
        let client = UnixStream::connect_addr(&addr).unwrap();
        client.set_write_timeout(Some(LIMIT)).unwrap();
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();

        // More than the socket buffers hold: the client writes from a
        // thread while this one runs the loop and reads.
        let mut writer = client.try_clone().unwrap();
        let out = data.clone();
        let writing = std::thread::spawn(move || writer.write_all(&out));
        // (Not `set_nonblocking`: the clone shares the file description,
        // and the writer must block. A short receive timeout instead.)
        let mut reader = client;
        reader
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut back = Vec::with_capacity(SIZE);
        let start = Instant::now();
        while back.len() < SIZE {
            assert!(start.elapsed() < LIMIT, "echo stalled at {}", back.len());
            ev.loop_once().unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match reader.read(&mut chunk) {
                Ok(n) => back.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}"),
            }
        }
        writing.join().unwrap().unwrap();
        assert!(back == data, "the echo differs");
        assert_eq!(ev.heap()[server.stats].echoed, SIZE);
    }
}
