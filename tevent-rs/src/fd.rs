//! fd events: a callback when an fd is readable, writable or in error.
//!
//! The event owns its I/O object (an `OwnedFd`, a `UnixStream`, anything
//! `AsFd`), so the fd cannot be closed while the loop watches it (C's bug
//! 11141 cannot happen). Freeing the event drops the object, which closes the
//! fd (C's auto-close); a close function set with
//! [`set_fd_close_fn`](Context::set_fd_close_fn) gets the object instead, and
//! [`take_fd_io`](Context::take_fd_io) gives it back to the caller.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;

use talloc::{AnyPtr, IntoParent, Ptr, Talloc};

use crate::backend::FdEntry;
use crate::callback::HandlerResult;
use crate::registry::Registry;
use crate::slab::Id;
use crate::trace::{self, EventTrace, TracedEvent};
use crate::{AddFdError, Context, Error, FdFlags};

/// A handle to an fd event that owns an I/O object of type `F`: a child, in
/// the context's heap, of the parent it was added under.
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use tevent::{Context, FdFlags};
/// let mut ev = Context::new()?;
/// let (a, mut b) = UnixStream::pair()?;
/// let fde = ev.add_fd(None, a, FdFlags::READ, |ev, fde, flags| {
///     assert_eq!(flags, FdFlags::READ);
///     let mut buf = [0u8; 5];
///     ev.fd_io(fde).unwrap().read_exact(&mut buf).unwrap();
///     assert_eq!(&buf, b"hello");
///     ev.heap_mut().free(fde.erase()).unwrap();  // done: closes `a`
/// })?;
/// b.write_all(b"hello")?;
/// ev.loop_wait()?;
/// assert!(!ev.heap().contains(fde.erase()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FdEvent<F> {
    ptr: Ptr<FdNode<F>>,
    id: Id,
    _io: PhantomData<fn() -> F>,
}

impl<F> FdEvent<F> {
    /// The type-erased heap handle, to free or steal the event.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// # let (a, _b) = UnixStream::pair()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// ev.heap_mut().free(fde.erase())?;
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

impl<F> Clone for FdEvent<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for FdEvent<F> {}
impl<F> PartialEq for FdEvent<F> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}
impl<F> Eq for FdEvent<F> {}
impl<F> Hash for FdEvent<F> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ptr.hash(state)
    }
}
impl<F> From<FdEvent<F>> for AnyPtr {
    fn from(h: FdEvent<F>) -> AnyPtr {
        h.ptr.erase()
    }
}
impl<F> IntoParent for FdEvent<F> {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.ptr.erase())
    }
}
impl<F> fmt::Debug for FdEvent<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FdEvent({:?})", self.ptr.erase())
    }
}

type CloseFn<F> = Box<dyn FnOnce(F)>;

/// The heap object of an fd event: it holds the I/O object. Dropping it
/// takes the fd off the loop first, then closes it (or hands it to the
/// close function).
pub(crate) struct FdNode<F> {
    id: Id,
    reg: Rc<RefCell<Registry>>,
    io: Option<F>,
    /// `F::as_fd` (the struct needs no `AsFd` bound, so neither do handles).
    as_fd: fn(&F) -> BorrowedFd<'_>,
    close_fn: Option<CloseFn<F>>,
}

impl<F> Drop for FdNode<F> {
    fn drop(&mut self) {
        let as_fd = self.as_fd;
        let (entry, traced) = {
            let mut reg = self.reg.borrow_mut();
            let entry = reg.remove_fd(self.id, self.io.as_ref().map(as_fd));
            if let Some(node) = entry.as_ref().and_then(|e| e.node) {
                reg.wrappers.unbind(node);
            }
            (entry, reg.tracing.events)
        };
        if let (true, Some(node)) = (traced, entry.as_ref().and_then(|e| e.node)) {
            trace::event(&self.reg, TracedEvent::Fd(node), EventTrace::Detach);
        }
        drop(entry);
        if let (Some(io), Some(close)) = (self.io.take(), self.close_fn.take()) {
            close(io);
        }
    }
}

/// The fd of an event's I/O object, found through the heap.
fn borrow_fd<F: AsFd + 'static>(heap: &Talloc, p: AnyPtr) -> Option<BorrowedFd<'_>> {
    let ptr = heap.downcast::<FdNode<F>>(p).ok()?;
    heap.get(ptr).ok()?.io.as_ref().map(|io| io.as_fd())
}

impl Registry {
    /// Takes an fd event out of the set and the backend.
    pub(crate) fn remove_fd(&mut self, id: Id, fd: Option<BorrowedFd<'_>>) -> Option<FdEntry> {
        let entry = self.fds.remove(id)?;
        self.backend.removed(id);
        if let Some(fd) = fd {
            let _ = self.backend.sync(&mut self.fds, fd);
        }
        Some(entry)
    }
}

impl Context {
    /// Watches an I/O object's fd for `flags` (`tevent_add_fd`). The event is
    /// a child of `parent` in the heap and owns `io`; the callback gets the
    /// context, the event's handle and the ready flags (masked to what the
    /// event asks for).
    ///
    /// A closed or invalid fd gives [`Error::BadFd`]; the error hands `io`
    /// back. One fd may have any number of events (through objects that
    /// share it, such as an `Rc<UnixStream>`); each readiness report goes
    /// to one of them, in turn.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::{cell::Cell, rc::Rc};
    /// use tevent::{Context, FdFlags};
    /// let mut ev = Context::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// ev.add_fd(None, a, FdFlags::WRITE, move |ev, fde, flags| {
    ///     assert_eq!(flags, FdFlags::WRITE);
    ///     f.set(true);
    ///     ev.set_fd_flags(fde, FdFlags::empty()).unwrap();  // silent, still there
    /// })?;
    /// ev.loop_once()?;
    /// assert!(fired.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_fd<F, C, R>(
        &mut self,
        parent: impl IntoParent,
        io: F,
        flags: FdFlags,
        mut cb: C,
    ) -> Result<FdEvent<F>, AddFdError<F>>
    where
        F: AsFd + 'static,
        C: FnMut(&mut Context, FdEvent<F>, FdFlags) -> R + 'static,
        R: HandlerResult,
    {
        let raw = io.as_fd().as_raw_fd();
        if let Err(errno) = nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_GETFD) {
            let errno = crate::error::errno(errno);
            return Err(AddFdError::new(Error::BadFd { fd: raw, errno }, io));
        }
        let parent = parent.into_parent();
        // The node first, without the I/O object: a failure drops only it.
        let inserted = self.reg.borrow_mut().fds.insert(FdEntry {
            fd: raw,
            flags,
            node: None,
            borrow: borrow_fd::<F>,
            cb: None,
            tag: 0,
        });
        let id = match inserted {
            Ok(id) => id,
            Err(e) => return Err(AddFdError::new(e, io)),
        };
        let node = FdNode {
            id,
            reg: self.reg.clone(),
            io: None,
            as_fd: F::as_fd,
            close_fn: None,
        };
        let ptr = match self.heap_mut().alloc_local(parent, node) {
            Ok(p) => p,
            Err(e) => return Err(AddFdError::new(e.into(), io)),
        };
        let fde = FdEvent {
            ptr,
            id,
            _io: PhantomData,
        };
        let synced = {
            let mut reg = self.reg.borrow_mut();
            let reg = &mut *reg;
            if let Some(e) = reg.fds.get_mut(id) {
                e.node = Some(ptr.erase());
            }
            reg.backend.inserted(id);
            reg.backend.sync(&mut reg.fds, io.as_fd())
        };
        if let Err(e) = synced {
            // The node has no I/O object yet: freeing it only deregisters.
            let _ = self.heap_mut().free(ptr);
            return Err(AddFdError::new(e, io));
        }
        if let Ok(n) = self.heap_mut().get_mut(ptr) {
            n.io = Some(io);
        }
        let handler: crate::backend::FdCallback = Box::new(move |ev, flags| {
            let r = cb(ev, fde, flags);
            ev.handled(r)
        });
        {
            let mut reg = self.reg.borrow_mut();
            if let Some(e) = reg.fds.get_mut(id) {
                e.cb = Some(handler);
            }
            reg.wrappers.bind(fde.erase());
        }
        self.trace_event(TracedEvent::Fd(fde.erase()), EventTrace::Attach);
        Ok(fde)
    }

    /// The tag of an fd event (`tevent_fd_get_tag`): the caller's number,
    /// 0 until [`set_fd_tag`](Context::set_fd_tag) sets it.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// # let (a, _b) = UnixStream::pair()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// assert_eq!(ev.fd_tag(fde)?, 0);
    /// ev.set_fd_tag(fde, 7)?;
    /// assert_eq!(ev.fd_tag(fde)?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fd_tag<F: AsFd + 'static>(&self, fde: FdEvent<F>) -> Result<u64, Error> {
        let tag = self
            .reg
            .borrow()
            .fds
            .get(fde.id)
            .filter(|e| e.node == Some(fde.erase()))
            .map(|e| e.tag);
        self.found_or_stale(tag, fde.erase())
    }

    /// Sets the tag of an fd event (`tevent_fd_set_tag`).
    /// The loop never reads it: it is there for the caller (and for trace
    /// callbacks) to tell events apart.
    pub fn set_fd_tag<F: AsFd + 'static>(
        &mut self,
        fde: FdEvent<F>,
        tag: u64,
    ) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let set = reg
            .fds
            .get_mut(fde.id)
            .filter(|e| e.node == Some(fde.erase()))
            .map(|e| e.tag = tag);
        drop(reg);
        self.found_or_stale(set, fde.erase())
    }

    /// The conditions the event watches for (`tevent_fd_get_flags`).
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// # let (a, _b) = UnixStream::pair()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// assert_eq!(ev.fd_flags(fde)?, FdFlags::READ);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fd_flags<F: AsFd + 'static>(&self, fde: FdEvent<F>) -> Result<FdFlags, Error> {
        let reg = self.reg.borrow();
        match reg.fds.get(fde.id) {
            Some(e) if e.node == Some(fde.erase()) => Ok(e.flags),
            _ => {
                drop(reg);
                Err(self.stale(fde.erase()))
            }
        }
    }

    /// Changes what the event watches for (`tevent_fd_set_flags`). Empty
    /// flags keep the event registered but silent.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// # let (a, _b) = UnixStream::pair()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// ev.set_fd_flags(fde, FdFlags::READ | FdFlags::WRITE)?;
    /// assert_eq!(ev.fd_flags(fde)?, FdFlags::READ | FdFlags::WRITE);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_fd_flags<F: AsFd + 'static>(
        &mut self,
        fde: FdEvent<F>,
        flags: FdFlags,
    ) -> Result<(), Error> {
        let node = self.heap.get(fde.ptr)?;
        let id = node.id;
        let Some(io) = node.io.as_ref() else {
            return Err(Error::Stale);
        };
        let mut reg = self.reg.borrow_mut();
        let reg = &mut *reg;
        let e = reg.fds.get_mut(id).ok_or(Error::Stale)?;
        let old = std::mem::replace(&mut e.flags, flags);
        if let Err(err) = reg.backend.sync(&mut reg.fds, io.as_fd()) {
            if let Some(e) = reg.fds.get_mut(id) {
                e.flags = old;
            }
            return Err(err);
        }
        Ok(())
    }

    /// The event's I/O object. Many I/O types read and write through a shared
    /// reference (`&UnixStream`, `&TcpStream`, `&File`).
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// let local = a.local_addr()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// assert_eq!(format!("{:?}", ev.fd_io(fde)?.local_addr()?), format!("{local:?}"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fd_io<F: AsFd + 'static>(&self, fde: FdEvent<F>) -> Result<&F, Error> {
        self.heap().get(fde.ptr)?.io.as_ref().ok_or(Error::Stale)
    }

    /// The event's I/O object, mutably: for types that read or write through
    /// `&mut self` (a `BufReader`, a TLS stream, a codec wrapper of your
    /// own that implements `AsFd`).
    ///
    /// The loop keeps watching the fd the event was added with: replacing
    /// the object by one on another fd (with `std::mem::replace`, say) is a
    /// logic error. Nothing unsafe follows, but readiness then refers to
    /// the old fd; to change fds, free the event and add a new one.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Write};
    /// use std::os::fd::{AsFd, BorrowedFd};
    /// use std::os::unix::net::UnixStream;
    /// use tevent::FdFlags;
    ///
    /// /// A line reader the loop can watch.
    /// struct Lines(BufReader<UnixStream>);
    /// impl AsFd for Lines {
    ///     fn as_fd(&self) -> BorrowedFd<'_> {
    ///         self.0.get_ref().as_fd()
    ///     }
    /// }
    ///
    /// let mut ev = tevent::Context::new()?;
    /// let (a, mut b) = UnixStream::pair()?;
    /// b.write_all(b"hello\n")?;
    /// let fde = ev.add_fd(None, Lines(BufReader::new(a)), FdFlags::READ, |ev, fde, _| {
    ///     let mut line = String::new();
    ///     ev.fd_io_mut(fde)?.0.read_line(&mut line)?;
    ///     assert_eq!(line, "hello\n");
    ///     ev.free(fde)?;
    ///     Ok(())
    /// })?;
    /// ev.loop_once()?;
    /// assert!(!ev.heap().contains(fde));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fd_io_mut<F: AsFd + 'static>(&mut self, fde: FdEvent<F>) -> Result<&mut F, Error> {
        self.heap.get_mut(fde.ptr)?.io.as_mut().ok_or(Error::Stale)
    }

    /// The fd number the event watches.
    ///
    /// ```
    /// # use std::os::{fd::AsRawFd, unix::net::UnixStream};
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// let raw = a.as_raw_fd();
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// assert_eq!(ev.fd_number(fde)?, raw);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fd_number<F: AsFd + 'static>(&self, fde: FdEvent<F>) -> Result<RawFd, Error> {
        Ok(self.fd_io(fde)?.as_fd().as_raw_fd())
    }

    /// Takes the event off the loop, frees it (with its subtree) and gives
    /// the I/O object back instead of closing it. No close function runs.
    ///
    /// ```
    /// # use std::os::unix::net::UnixStream;
    /// # use tevent::FdFlags;
    /// # let mut ev = tevent::Context::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// let a: UnixStream = ev.take_fd_io(fde)?;   // still open, no longer watched
    /// assert!(!ev.has_events());
    /// # drop(a);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_fd_io<F: AsFd + 'static>(&mut self, fde: FdEvent<F>) -> Result<F, Error> {
        let node = self.heap.get_mut(fde.ptr)?;
        let id = node.id;
        let io = node.io.take().ok_or(Error::Stale)?;
        node.close_fn = None;
        let entry = self.reg.borrow_mut().remove_fd(id, Some(io.as_fd()));
        drop(entry);
        self.heap.free(fde.ptr)?;
        Ok(io)
    }

    /// Sets what happens to the I/O object when the event is freed: `close`
    /// gets it (C's `tevent_fd_set_close_fn`), instead of it being dropped.
    /// It runs after the fd left the loop, also when the whole context is
    /// dropped (E3).
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::{cell::Cell, rc::Rc};
    /// use tevent::FdFlags;
    /// let mut ev = tevent::Context::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// let closed = Rc::new(Cell::new(false));
    /// let fde = ev.add_fd(None, a, FdFlags::READ, |_, _, _| {})?;
    /// let c = closed.clone();
    /// ev.set_fd_close_fn(fde, move |sock: UnixStream| { c.set(true); drop(sock) })?;
    /// drop(ev);
    /// assert!(closed.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_fd_close_fn<F, C>(&mut self, fde: FdEvent<F>, close: C) -> Result<(), Error>
    where
        F: AsFd + 'static,
        C: FnOnce(F) + 'static,
    {
        let old = self
            .heap
            .get_mut(fde.ptr)?
            .close_fn
            .replace(Box::new(close));
        drop(old);
        Ok(())
    }
}
