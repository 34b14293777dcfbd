//! Recipe: read a stream to end of file in an fd handler.
//!
//! The bytes gather in one heap object, `Received`. Under it is the fd
//! event that reads (it owns the stream), and under that a deadline timer.
//! Each time the fd is readable, the handler reads until the read would
//! block; a read of 0 bytes is the end of file, and the handler frees its
//! own event: that closes the stream and cancels the deadline, and
//! `loop_wait` returns, since nothing is left to wait for. The bytes stay
//! in `Received` until the caller takes them out.
//!
//! ```text
//! cargo run -p tevent-rs --example read_to_eof [-- BYTES]
//! ```

use std::error::Error;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use talloc::{IntoParent, Ptr};
use tevent::{Context, FdEvent, FdFlags};

/// What arrived: an object in the loop's heap.
#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    /// How many reads returned data.
    reads: usize,
    eof: bool,
}

/// Makes reads of `io` return `WouldBlock` instead of waiting: the loop
/// waits, not the handler.
fn set_nonblocking(io: &impl AsFd) -> nix::Result<()> {
    let fd = io.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Starts reading `io` to its end. The result object is a child of
/// `parent`; the fd event reading `io` is a child of the result, and a
/// timer that gives up after `limit` is a child of the fd event. Freeing
/// the result (or `parent`) before the end cancels the read.
fn read_to_eof<F>(
    ev: &mut Context,
    parent: impl IntoParent,
    io: F,
    limit: Duration,
) -> Result<(Ptr<Received>, FdEvent<F>), Box<dyn Error>>
where
    F: Read + AsFd + 'static,
{
    set_nonblocking(&io)?;
    let received = ev.heap_mut().alloc(parent, Received::default())?;
    let fde = ev.add_fd(received, io, FdFlags::READ, move |ev, fde, _flags| {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match ev.fd_io_mut(fde)?.read(&mut chunk) {
                Ok(0) => {
                    // End of file: this event's work is done. Freeing it
                    // closes the stream and takes the deadline with it.
                    ev.heap_mut().get_mut(received)?.eof = true;
                    ev.free(fde)?;
                    return Ok(());
                }
                Ok(n) => {
                    let r = ev.heap_mut().get_mut(received)?;
                    r.bytes.extend_from_slice(&chunk[..n]);
                    r.reads += 1;
                }
                // All there is for now: back to the loop until more comes.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    });
    let fde = match fde {
        Ok(fde) => fde,
        Err(e) => {
            ev.free(received)?;
            return Err(e.into());
        }
    };
    ev.add_timer(fde, limit, move |ev, _, _| {
        ev.free(received)?; // the fd event goes too
        Err("no end of file in time".into())
    })?;
    Ok((received, fde))
}

/// `len` bytes of a pattern a test can check.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Writes `data` into `out` from another thread, in small pieces, then
/// closes it: the reader sees the end of file.
fn write_in_pieces(
    mut out: impl Write + Send + 'static,
    data: Vec<u8>,
) -> std::thread::JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        for piece in data.chunks(4096) {
            out.write_all(piece)?;
        }
        Ok(()) // `out` dropped: end of file
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let len: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1 << 20);
    let mut ev = Context::new()?;
    let (ours, theirs) = UnixStream::pair()?;
    let data = pattern(len);
    let writer = write_in_pieces(theirs, data.clone());

    let (received, _fde) = read_to_eof(&mut ev, None, ours, Duration::from_secs(10))?;
    ev.loop_wait()?; // returns once the fd event freed itself
    writer.join().map_err(|_| "the writer panicked")??;

    let got = ev.heap_mut().take(received)?; // the bytes, out of the heap
    println!(
        "read {} bytes in {} reads; end of file: {}; as sent: {}",
        got.bytes.len(),
        got.reads,
        got.eof,
        got.bytes == data
    );
    println!(
        "events left: {}, objects left: {}",
        ev.has_events(),
        ev.heap().live_objects()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn new_loop() -> Context {
        let mut ev = Context::new().unwrap();
        ev.set_wait_timeout(Duration::from_millis(10));
        ev
    }

    #[test]
    fn every_byte_of_a_socket_arrives() {
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let data = pattern(300_000); // more than a socket buffer holds
        let writer = write_in_pieces(theirs, data.clone());
        let (received, fde) = read_to_eof(&mut ev, None, ours, Duration::from_secs(2)).unwrap();

        ev.loop_wait().unwrap();
        writer.join().unwrap().unwrap();
        assert!(!ev.heap().contains(fde), "the event freed itself at EOF");
        assert!(!ev.has_events(), "the deadline went with it");
        let got = ev.heap_mut().take(received).unwrap();
        assert!(got.eof);
        assert_eq!(got.bytes.len(), data.len());
        assert!(got.bytes == data, "the bytes differ");
        assert_eq!(ev.heap().live_objects(), baseline);
    }

    #[test]
    fn a_pipe_reads_the_same_way() {
        let mut ev = new_loop();
        let (r, w) = nix::unistd::pipe().unwrap();
        let data = pattern(100_000);
        let writer = write_in_pieces(File::from(w), data.clone());
        let (received, _) =
            read_to_eof(&mut ev, None, File::from(r), Duration::from_secs(2)).unwrap();
        ev.loop_wait().unwrap();
        writer.join().unwrap().unwrap();
        assert!(ev.heap()[received].eof);
        assert!(ev.heap()[received].bytes == data);
    }

    #[test]
    fn a_writer_that_never_finishes_hits_the_deadline() {
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"half a message").unwrap(); // and never closes
        let (received, fde) = read_to_eof(&mut ev, None, ours, Duration::from_millis(20)).unwrap();

        let Err(tevent::Error::Callback(failure)) = ev.loop_wait() else {
            panic!("the deadline should fail the loop");
        };
        assert_eq!(failure.error().to_string(), "no end of file in time");
        assert!(!ev.heap().contains(received));
        assert!(!ev.heap().contains(fde));
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
        drop(theirs);
    }

    #[test]
    fn freeing_the_owner_cancels_the_read() {
        let mut ev = new_loop();
        let baseline = ev.heap().live_objects();
        let owner = ev.heap_mut().new_context(None).unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (_, fde) = read_to_eof(&mut ev, owner, ours, Duration::from_secs(60)).unwrap();
        assert!(ev.has_events());
        ev.free(owner).unwrap();
        assert!(!ev.heap().contains(fde));
        assert!(!ev.has_events());
        assert_eq!(ev.heap().live_objects(), baseline);
        // Our end was closed with the event.
        assert_eq!(
            theirs.write_all(b"x").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
