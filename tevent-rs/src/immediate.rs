//! Immediates: callbacks run "as soon as possible", one per `loop_once`,
//! strictly first in, first out (E5). An immediate is a reusable object: it
//! is not freed after it runs (E8), and scheduling it again moves it to the
//! tail of the queue.
//!
//! The queue is an intrusive doubly linked list through the registry's
//! entries, so cancel and reschedule are O(1).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use talloc::{AnyPtr, IntoParent, Ptr};

use crate::callback::HandlerResult;
use crate::registry::Registry;
use crate::slab::{Id, Linked, List, Slab, NIL};
use crate::trace::{self, EventTrace, TracedEvent};
use crate::{Context, Error};

/// A handle to an immediate event: a child, in the context's heap, of the
/// parent it was created under. Freeing it (or an ancestor) cancels it.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let mut ev = tevent::Context::new()?;
/// let im = ev.create_immediate(None)?;
/// let runs = Rc::new(Cell::new(0));
/// let r = runs.clone();
/// ev.schedule_immediate(im, move |ev, im| {
///     r.set(r.get() + 1);
///     if r.get() < 3 {
///         ev.reschedule_immediate(im).unwrap();   // same handler, at the tail
///     }
/// })?;
/// ev.loop_wait()?;
/// assert_eq!(runs.get(), 3);
/// assert!(ev.heap().contains(im.erase()));        // not freed after running
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Immediate {
    ptr: Ptr<ImmNode>,
    id: Id,
}

impl Immediate {
    pub(crate) fn id(self) -> Id {
        self.id
    }

    /// The type-erased heap handle, to free or steal the immediate.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// ev.schedule_immediate(im, |_, _| -> () { unreachable!() })?;
    /// ev.heap_mut().free(im.erase())?;       // cancels it
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

crate::handle_traits!(Immediate, "Immediate");

/// The heap object of an immediate; dropping it cancels the immediate.
pub(crate) struct ImmNode {
    id: Id,
    reg: Rc<RefCell<Registry>>,
}

impl Drop for ImmNode {
    fn drop(&mut self) {
        let (gone, traced) = {
            let mut reg = self.reg.borrow_mut();
            let queued = reg
                .imms
                .slab
                .get(self.id)
                .is_some_and(|e| e.queued || e.detach_owed);
            let gone = reg.imms.remove(self.id);
            if let Some(node) = gone.as_ref().and_then(|e| e.node) {
                reg.wrappers.unbind(node.erase());
            }
            (gone, reg.tracing.events && queued)
        };
        if let (true, Some(ptr)) = (traced, gone.as_ref().and_then(|e| e.node)) {
            let im = Immediate { ptr, id: self.id };
            trace::event(&self.reg, TracedEvent::Immediate(im), EventTrace::Detach);
        }
        drop(gone);
    }
}

/// A user immediate's handler.
pub(crate) type ImmHandler = Box<dyn FnMut(&mut Context, Immediate)>;

/// A one-shot closure without a heap object (from [`Remote`](crate::Remote)
/// or the request and queue code); its entry goes once it ran.
pub(crate) type OnceFn = Box<dyn FnOnce(&mut Context)>;

/// What the head of the queue runs.
pub(crate) enum Popped {
    /// A user immediate's handler; it stays for the next schedule.
    Handler(Immediate, ImmHandler),
    Once(OnceFn),
}

pub(crate) struct ImmEntry {
    node: Option<Ptr<ImmNode>>,
    /// Taken out while it runs.
    handler: Option<ImmHandler>,
    once: Option<OnceFn>,
    running: bool,
    /// It runs, traced, and its Detach is reported when the handler ends
    /// (or, sooner, when the handler reschedules, cancels or frees it), as
    /// in C.
    detach_owed: bool,
    queued: bool,
    prev: u32,
    next: u32,
    /// The caller's tag (`tevent_immediate_set_tag`).
    tag: u64,
}

impl ImmEntry {
    /// An entry on no queue, with no handler yet.
    fn idle(once: Option<OnceFn>) -> ImmEntry {
        ImmEntry {
            node: None,
            handler: None,
            once,
            running: false,
            detach_owed: false,
            queued: false,
            prev: NIL,
            next: NIL,
            tag: 0,
        }
    }
}

impl Linked for ImmEntry {
    #[inline(always)]
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.prev, &mut self.next)
    }
}

/// Every immediate of a context, and the FIFO queue of the scheduled ones.
#[derive(Default)]
pub(crate) struct Immediates {
    slab: Slab<ImmEntry>,
    queue: List,
    /// One-shot closures that found the slab full (see `push_once`).
    overflow: VecDeque<OnceFn>,
}

impl Immediates {
    /// Lets a test fill the store (see `Slab::set_capacity`).
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.slab.set_capacity(cap);
    }

    /// Number of immediates waiting to run.
    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len + self.overflow.len()
    }

    #[inline]
    fn unlink(&mut self, id: Id) {
        let Some(e) = self.slab.get_mut(id) else {
            return;
        };
        if !e.queued {
            return;
        }
        e.queued = false;
        let (prev, next) = (e.prev, e.next);
        self.queue.unlink(&mut self.slab, prev, next);
    }

    /// Queues an immediate at the tail (moving it there if it was queued).
    #[inline(always)]
    pub(crate) fn push_back(&mut self, id: Id) {
        self.unlink(id);
        let Some(e) = self.slab.get_mut(id) else {
            return;
        };
        e.queued = true;
        self.queue.push_back(&mut self.slab, id.idx);
    }

    /// Takes an immediate out (its node is going).
    pub(crate) fn remove(&mut self, id: Id) -> Option<ImmEntry> {
        self.unlink(id);
        self.slab.remove(id)
    }

    /// A one-shot closure, queued at the tail. If the slab is full it waits
    /// in the overflow queue, which runs once the main queue is empty: the
    /// library's own wake-ups (queues, remote work) are never lost.
    pub(crate) fn push_once(&mut self, f: OnceFn) {
        match self.slab.insert(ImmEntry::idle(Some(f))) {
            Ok(id) => self.push_back(id),
            Err(entry) => self.overflow.extend(entry.once),
        }
    }

    /// Dequeues the head and takes what it runs.
    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<Popped> {
        loop {
            if self.queue.head == NIL {
                return self.overflow.pop_front().map(Popped::Once);
            }
            let id = self.slab.id_at(self.queue.head);
            self.unlink(id);
            let e = self.slab.get_mut(id)?;
            if let Some(f) = e.once.take() {
                self.slab.remove(id);
                return Some(Popped::Once(f));
            }
            // A handler missing (queued while it runs) cannot happen outside
            // a nested loop, which is refused: skip it.
            if let (Some(ptr), Some(f)) = (e.node, e.handler.take()) {
                e.running = true;
                return Some(Popped::Handler(Immediate { ptr, id }, f));
            }
        }
    }

    /// Whether the running immediate `id` still owes its Detach trace
    /// point; it owes it no more.
    pub(crate) fn take_detach_owed(&mut self, id: Id) -> bool {
        self.slab
            .get_mut(id)
            .is_some_and(|e| std::mem::take(&mut e.detach_owed))
    }

    /// Marks the immediate `id`, about to run traced, as owing its Detach.
    pub(crate) fn owe_detach(&mut self, id: Id) {
        if let Some(e) = self.slab.get_mut(id) {
            e.detach_owed = true;
        }
    }

    /// Gives a handler back after it ran, unless the immediate was freed or
    /// got a new handler meanwhile (then the old one is returned, to be
    /// dropped by the caller outside the registry).
    #[inline]
    pub(crate) fn restore(&mut self, id: Id, f: ImmHandler) -> Option<ImmHandler> {
        match self.slab.get_mut(id) {
            Some(e) => {
                e.running = false;
                if e.handler.is_none() {
                    e.handler = Some(f);
                    None
                } else {
                    Some(f)
                }
            }
            None => Some(f),
        }
    }

    /// Drops every one-shot closure still queued (the context is going).
    pub(crate) fn take_all_once(&mut self) -> Vec<ImmEntry> {
        let ids: Vec<Id> = self
            .slab
            .iter()
            .filter(|(_, e)| e.node.is_none())
            .map(|(id, _)| id)
            .collect();
        let mut gone: Vec<ImmEntry> = ids.into_iter().filter_map(|id| self.remove(id)).collect();
        gone.extend(self.overflow.drain(..).map(|f| ImmEntry::idle(Some(f))));
        gone
    }
}

impl Context {
    /// Creates an immediate under `parent` and schedules it with `handler`
    /// in one call, as `add_timer` and `add_fd` do for theirs: C's
    /// `tevent_create_immediate` followed by `tevent_schedule_immediate`.
    /// The immediate stays after its handler ran (reschedule it, or free
    /// it, or its parent).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// let mut ev = tevent::Context::new()?;
    /// let ran = Rc::new(Cell::new(0));
    /// let r = ran.clone();
    /// let im = ev.add_immediate(None, move |_, _| r.set(r.get() + 1))?;
    /// ev.loop_once()?;
    /// ev.reschedule_immediate(im)?;      // the same handler again
    /// ev.loop_once()?;
    /// assert_eq!(ran.get(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_immediate<C, R>(
        &mut self,
        parent: impl IntoParent,
        handler: C,
    ) -> Result<Immediate, Error>
    where
        C: FnMut(&mut Context, Immediate) -> R + 'static,
        R: HandlerResult,
    {
        let im = self.create_immediate(parent)?;
        if let Err(e) = self.schedule_immediate(im, handler) {
            let _ = self.free(im);
            return Err(e);
        }
        Ok(im)
    }

    /// Creates an immediate, a child of `parent` in the heap, not yet
    /// scheduled (`tevent_create_immediate`); see
    /// [`add_immediate`](Context::add_immediate) to create and schedule at
    /// once.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// assert!(!ev.immediate_is_scheduled(im)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_immediate(&mut self, parent: impl IntoParent) -> Result<Immediate, Error> {
        let id = self
            .reg
            .borrow_mut()
            .imms
            .slab
            .insert(ImmEntry::idle(None))
            .map_err(|_| Error::TooManyEvents)?;
        let node = ImmNode {
            id,
            reg: self.reg.clone(),
        };
        let ptr = self.heap_mut().alloc_local(parent, node)?;
        if let Some(e) = self.reg.borrow_mut().imms.slab.get_mut(id) {
            e.node = Some(ptr);
        }
        Ok(Immediate { ptr, id })
    }

    /// Gives the immediate a handler and queues it at the tail
    /// (`tevent_schedule_immediate`); if it was queued, it moves to the tail
    /// and the old handler is dropped. The handler may schedule the
    /// immediate again, with [`reschedule_immediate`](Context::reschedule_immediate)
    /// (same handler) or with a new one.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// let mut ev = tevent::Context::new()?;
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let (a, b) = (ev.create_immediate(None)?, ev.create_immediate(None)?);
    /// for (im, name) in [(a, "a"), (b, "b")] {
    ///     let log = log.clone();
    ///     ev.schedule_immediate(im, move |_, _| log.borrow_mut().push(name))?;
    /// }
    /// ev.reschedule_immediate(a)?;          // a moves behind b
    /// ev.loop_wait()?;
    /// assert_eq!(*log.borrow(), ["b", "a"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule_immediate<C, R>(&mut self, im: Immediate, mut cb: C) -> Result<(), Error>
    where
        C: FnMut(&mut Context, Immediate) -> R + 'static,
        R: HandlerResult,
    {
        let (old, was_queued) = {
            let mut reg = self.reg.borrow_mut();
            match reg.imms.slab.get_mut(im.id) {
                Some(e) if e.node == Some(im.ptr) => {
                    let old = e.handler.replace(Box::new(move |ev, im| {
                        let r = cb(ev, im);
                        ev.handled(r)
                    }));
                    let was_queued = e.queued || std::mem::take(&mut e.detach_owed);
                    reg.imms.push_back(im.id);
                    reg.wrappers.bind(im.erase());
                    (old, was_queued)
                }
                _ => {
                    drop(reg);
                    return Err(self.stale(im.erase()));
                }
            }
        };
        drop(old);
        self.trace_queued(im, was_queued);
        Ok(())
    }

    /// Queues the immediate again with the handler it has, at the tail.
    /// Inside its own handler this is C's "reschedule myself".
    ///
    /// [`Error::NoHandler`] if it was never scheduled.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// assert_eq!(ev.reschedule_immediate(im), Err(tevent::Error::NoHandler));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reschedule_immediate(&mut self, im: Immediate) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let was_queued = match reg.imms.slab.get_mut(im.id) {
            Some(e) if e.node == Some(im.ptr) => {
                if e.handler.is_none() && !e.running {
                    return Err(Error::NoHandler);
                }
                let was_queued = e.queued || std::mem::take(&mut e.detach_owed);
                reg.imms.push_back(im.id);
                reg.wrappers.bind(im.erase());
                was_queued
            }
            _ => {
                drop(reg);
                return Err(self.stale(im.erase()));
            }
        };
        let traced = reg.tracing.events;
        drop(reg);
        if traced {
            self.trace_queued(im, was_queued);
        }
        Ok(())
    }

    /// Takes the immediate off the queue; it keeps its handler, so
    /// [`reschedule_immediate`](Context::reschedule_immediate) can queue it
    /// again.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// ev.schedule_immediate(im, |_, _| -> () { unreachable!() })?;
    /// ev.cancel_immediate(im)?;
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel_immediate(&mut self, im: Immediate) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let was_queued = match reg.imms.slab.get_mut(im.id) {
            Some(e) if e.node == Some(im.ptr) => {
                let q = e.queued || std::mem::take(&mut e.detach_owed);
                reg.imms.unlink(im.id);
                q
            }
            _ => {
                drop(reg);
                return Err(self.stale(im.erase()));
            }
        };
        drop(reg);
        if was_queued {
            self.trace_event(TracedEvent::Immediate(im), EventTrace::Detach);
        }
        Ok(())
    }

    /// Trace points of a (re)schedule: a queued immediate (or a running one
    /// that still owes its Detach) leaves its place first.
    #[cold]
    fn trace_queued(&self, im: Immediate, was_queued: bool) {
        if was_queued {
            self.trace_event(TracedEvent::Immediate(im), EventTrace::Detach);
        }
        self.trace_event(TracedEvent::Immediate(im), EventTrace::Attach);
    }

    /// The tag of an immediate (`tevent_immediate_get_tag`): the caller's number,
    /// 0 until [`set_immediate_tag`](Context::set_immediate_tag) sets it.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// ev.set_immediate_tag(im, 9)?;
    /// ev.schedule_immediate(im, |_, _| {})?;
    /// ev.loop_once()?;                              // ran; the tag stays
    /// assert_eq!(ev.immediate_tag(im)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn immediate_tag(&self, im: Immediate) -> Result<u64, Error> {
        let tag = self
            .reg
            .borrow()
            .imms
            .slab
            .get(im.id)
            .filter(|e| e.node == Some(im.ptr))
            .map(|e| e.tag);
        self.found_or_stale(tag, im.erase())
    }

    /// Sets the tag of an immediate (`tevent_immediate_set_tag`).
    /// The loop never reads it: it is there for the caller (and for trace
    /// callbacks) to tell events apart.
    pub fn set_immediate_tag(&mut self, im: Immediate, tag: u64) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let set = reg
            .imms
            .slab
            .get_mut(im.id)
            .filter(|e| e.node == Some(im.ptr))
            .map(|e| e.tag = tag);
        drop(reg);
        self.found_or_stale(set, im.erase())
    }

    /// Whether the immediate is queued.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let im = ev.create_immediate(None)?;
    /// ev.schedule_immediate(im, |_, _| {})?;
    /// assert!(ev.immediate_is_scheduled(im)?);
    /// ev.loop_once()?;
    /// assert!(!ev.immediate_is_scheduled(im)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn immediate_is_scheduled(&self, im: Immediate) -> Result<bool, Error> {
        let reg = self.reg.borrow();
        match reg.imms.slab.get(im.id) {
            Some(e) if e.node == Some(im.ptr) => Ok(e.queued),
            _ => {
                drop(reg);
                Err(self.stale(im.erase()))
            }
        }
    }
}
