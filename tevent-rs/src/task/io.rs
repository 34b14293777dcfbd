//! [`Async`]: an I/O object watched by the loop, read and written from a
//! task with `.await`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::lend::{try_with, with, with_task};
use crate::{CallbackError, FdEvent, FdFlags};

/// Who waits for what on one fd.
#[derive(Default)]
struct Waiters {
    read: Option<Waker>,
    write: Option<Waker>,
    /// Readiness seen and not consumed yet.
    ready: FdFlags,
}

impl Waiters {
    /// The flags the fd event should watch: what someone waits for.
    fn interest(&self) -> FdFlags {
        let mut f = FdFlags::empty();
        if self.read.is_some() {
            f |= FdFlags::READ;
        }
        if self.write.is_some() {
            f |= FdFlags::WRITE;
        }
        f
    }
}

/// An I/O object on the loop, for tasks: an fd event under the task that
/// made it (freeing the task takes it off the loop), watched only while
/// someone awaits it. The object should be non-blocking: `read` and
/// `write` retry after each `WouldBlock`, once the loop says the fd is
/// ready.
///
/// ```
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// let mut ev = tevent::Context::new()?;
/// let (ours, mut theirs) = UnixStream::pair()?;
/// ours.set_nonblocking(true)?;
/// let got = ev.block_on(async move {
///     let sock = tevent::Async::new(ours)?;
///     std::thread::spawn(move || theirs.write_all(b"hello"));
///     let mut buf = [0u8; 5];
///     let mut n = 0;
///     while n < 5 {
///         n += sock.read(&mut buf[n..]).await?;
///     }
///     Ok::<_, std::io::Error>(buf)
/// })??;
/// assert_eq!(&got, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Async<F: AsFd + 'static> {
    fde: FdEvent<F>,
    waiters: Rc<RefCell<Waiters>>,
}

impl<F: AsFd + 'static> fmt::Debug for Async<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Async").field(&self.fde).finish()
    }
}

impl<F: AsFd + 'static> Async<F> {
    /// Puts `io` on the loop of the current task, as a child of the task.
    ///
    /// # Panics
    /// Outside a task of a tevent loop.
    pub fn new(io: F) -> io::Result<Async<F>> {
        let waiters: Rc<RefCell<Waiters>> = Rc::default();
        let w = waiters.clone();
        let fde = with_task(|ev, task| {
            ev.add_fd(
                task,
                io,
                FdFlags::empty(),
                move |ev, fde, flags| -> Result<(), CallbackError> {
                    let mut w = w.borrow_mut();
                    w.ready |= flags;
                    // A hang-up or an error wakes both sides: the next call
                    // reads the error (or the end of the stream).
                    let both = flags.contains(FdFlags::ERROR);
                    if flags.contains(FdFlags::READ) || both {
                        if let Some(r) = w.read.take() {
                            r.wake();
                        }
                    }
                    if flags.contains(FdFlags::WRITE) || both {
                        if let Some(r) = w.write.take() {
                            r.wake();
                        }
                    }
                    let interest = w.interest();
                    drop(w);
                    ev.set_fd_flags(fde, interest)?;
                    Ok(())
                },
            )
        })
        .map_err(|e| io::Error::other(e.into_parts().0))?;
        Ok(Async { fde, waiters })
    }

    /// The fd event (a child of the task that made it).
    pub fn event(&self) -> FdEvent<F> {
        self.fde
    }

    /// Waits until the fd is readable (or at its end, or in error).
    pub fn readable(&self) -> Ready<'_, F> {
        Ready {
            io: self,
            want: FdFlags::READ,
        }
    }

    /// Waits until the fd is writable.
    pub fn writable(&self) -> Ready<'_, F> {
        Ready {
            io: self,
            want: FdFlags::WRITE,
        }
    }

    /// Runs `op` on the I/O object until it does not say `WouldBlock`,
    /// waiting for `want` between tries.
    async fn retry<R>(
        &self,
        want: FdFlags,
        mut op: impl FnMut(&mut F) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let r = with(|ev| match ev.fd_io_mut(self.fde) {
                Ok(io) => op(io),
                Err(e) => Err(io::Error::other(e)),
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            Ready { io: self, want }.await?;
        }
    }

    /// Reads into `buf`, waiting for data: the number of bytes read, 0 at
    /// the end of the stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize>
    where
        F: Read,
    {
        self.retry(FdFlags::READ, |io| io.read(buf)).await
    }

    /// Writes from `buf`, waiting for room: the number of bytes written.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize>
    where
        F: Write,
    {
        self.retry(FdFlags::WRITE, |io| io.write(buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()>
    where
        F: Write,
    {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Takes the object off the loop and gives it back.
    pub fn into_inner(self) -> io::Result<F> {
        let fde = self.fde;
        std::mem::forget(self);
        with(|ev| ev.take_fd_io(fde)).map_err(io::Error::other)
    }
}

impl<F: AsFd + 'static> Drop for Async<F> {
    fn drop(&mut self) {
        // Outside a poll the task is going, and its fd event with it.
        let fde = self.fde;
        let _ = try_with(|ev| ev.free(fde));
    }
}

/// The future [`Async::readable`] and [`Async::writable`] give.
#[must_use = "futures do nothing unless awaited"]
pub struct Ready<'a, F: AsFd + 'static> {
    io: &'a Async<F>,
    want: FdFlags,
}

impl<F: AsFd + 'static> fmt::Debug for Ready<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready").field("want", &self.want).finish()
    }
}

impl<F: AsFd + 'static> Future for Ready<'_, F> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let mut w = self.io.waiters.borrow_mut();
        let seen = w.ready & (self.want | FdFlags::ERROR);
        if !seen.is_empty() {
            w.ready &= !self.want;
            return Poll::Ready(Ok(()));
        }
        let slot = if self.want == FdFlags::READ {
            &mut w.read
        } else {
            &mut w.write
        };
        *slot = Some(cx.waker().clone());
        let interest = w.interest();
        drop(w);
        let fde = self.io.fde;
        match with(|ev| ev.set_fd_flags(fde, interest)) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }
}
