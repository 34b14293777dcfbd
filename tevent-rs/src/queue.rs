//! Queues of requests (`tevent_queue`): first in, first out; the request at
//! the head is triggered (its trigger function runs, from an immediate)
//! while the queue runs.
//!
//! Each queue entry is a heap child of its request, so freeing the request
//! removes it; when the head goes, the next entry is triggered (E10). A
//! stopped queue triggers nothing until it is started again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use talloc::{AnyPtr, IntoParent, Ptr};

use crate::registry::Registry;
use crate::trace::{self, EventTrace, TracedEvent};
use crate::{Context, Error, Req};

type Trigger = Box<dyn FnMut(&mut Context)>;

struct Slot {
    key: u64,
    entry: QueueEntry,
    /// `None` while it runs, and for a pure blocker.
    trigger: Option<Trigger>,
    triggered: bool,
    /// The caller's tag (`tevent_queue_entry_set_tag`).
    tag: u64,
}

struct QueueState {
    name: String,
    running: bool,
    alive: bool,
    next_key: u64,
    entries: VecDeque<Slot>,
}

type Shared = Rc<RefCell<QueueState>>;

/// A handle to a named queue of requests, an object in the context's heap.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use tevent::{Context, Req};
/// let mut ev = Context::new()?;
/// let q = ev.queue_create(None, "writes")?;
/// let order = Rc::new(RefCell::new(Vec::new()));
/// for n in 0..3 {
///     let req: Req<u32> = ev.req_create(None, n)?;
///     let order = order.clone();
///     ev.queue_add(q, req, move |ev, req| {
///         order.borrow_mut().push(ev.heap()[req.state()]);
///         ev.free(req.erase()).unwrap();        // leaves the queue: the next one goes
///     })?;
/// }
/// assert_eq!(ev.queue_length(q)?, 3);
/// ev.loop_wait()?;
/// assert_eq!(*order.borrow(), [0, 1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Queue {
    ptr: Ptr<QueueNode>,
}

impl From<Queue> for AnyPtr {
    fn from(q: Queue) -> AnyPtr {
        q.ptr.erase()
    }
}
impl IntoParent for Queue {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.ptr.erase())
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Queue({:?})", self.ptr.erase())
    }
}

impl Queue {
    /// The type-erased heap handle of the queue.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// ev.free(q.erase())?;
    /// assert!(ev.queue_length(q).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

/// A handle to one request's place in a queue: a heap child of the request.
/// Freeing it (or the request) takes the request out of the queue.
///
/// ```
/// # let mut ev = tevent::Context::new()?;
/// let q = ev.queue_create(None, "q")?;
/// let req: tevent::Req<()> = ev.req_create(None, ())?;
/// let entry = ev.queue_add(q, req, |_, _| -> () { unreachable!() })?;
/// ev.free(entry.erase())?;
/// assert_eq!(ev.queue_length(q)?, 0);
/// # ev.loop_wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueEntry {
    ptr: Ptr<EntryNode>,
}

impl From<QueueEntry> for AnyPtr {
    fn from(e: QueueEntry) -> AnyPtr {
        e.ptr.erase()
    }
}

impl fmt::Debug for QueueEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueEntry({:?})", self.ptr.erase())
    }
}

impl QueueEntry {
    /// The type-erased heap handle of the entry.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let entry = ev.queue_add_blocker(q, req)?;
    /// // The entry is a heap child of its request.
    /// assert_eq!(ev.heap().parent(entry.erase())?, Some(req.erase()));
    /// # ev.free(req.erase())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

/// The heap object of a queue; dropping it empties the queue.
struct QueueNode {
    state: Shared,
}

impl Drop for QueueNode {
    fn drop(&mut self) {
        let entries = {
            let mut s = self.state.borrow_mut();
            s.alive = false;
            s.running = false;
            std::mem::take(&mut s.entries)
        };
        drop(entries);
    }
}

/// The heap object of a queue entry; dropping it leaves the queue, and the
/// next entry is triggered if this one was the head.
struct EntryNode {
    queue: Shared,
    key: u64,
    reg: Rc<RefCell<Registry>>,
}

impl EntryNode {
    fn traced(&self) -> bool {
        self.reg.borrow().tracing.events
    }
}

impl Drop for EntryNode {
    fn drop(&mut self) {
        let (slot, kick) = {
            let mut s = self.queue.borrow_mut();
            match s.entries.iter().position(|e| e.key == self.key) {
                Some(i) => {
                    let slot = s.entries.remove(i);
                    (slot, i == 0 && s.running && !s.entries.is_empty())
                }
                None => (None, false),
            }
        };
        if let (Some(s), true) = (&slot, self.traced()) {
            trace::event(
                &self.reg,
                TracedEvent::QueueEntry(s.entry),
                EventTrace::Detach,
            );
        }
        drop(slot);
        if kick {
            let q = self.queue.clone();
            self.reg
                .borrow_mut()
                .imms
                .push_once(Box::new(move |ev| trigger_head(ev, &q)));
        }
    }
}

/// Runs the head's trigger, if the queue runs and the head has not been
/// triggered yet.
fn trigger_head(ev: &mut Context, q: &Shared) {
    let (key, entry, f) = {
        let mut s = q.borrow_mut();
        if !s.alive || !s.running {
            return;
        }
        let Some(head) = s.entries.front_mut() else {
            return;
        };
        if head.triggered {
            return;
        }
        head.triggered = true;
        (head.key, head.entry, head.trigger.take())
    };
    // A blocker reports its turn too, as in C.
    ev.trace_event(TracedEvent::QueueEntry(entry), EventTrace::BeforeHandler);
    let Some(mut f) = f else {
        ev.trace_event(TracedEvent::QueueEntry(entry), EventTrace::AfterHandler);
        return;
    };
    f(ev);
    ev.trace_event(TracedEvent::QueueEntry(entry), EventTrace::AfterHandler);
    let mut s = q.borrow_mut();
    if let Some(slot) = s.entries.iter_mut().find(|e| e.key == key) {
        if slot.trigger.is_none() {
            slot.trigger = Some(f);
        }
    }
}

impl Context {
    fn queue_state(&self, q: Queue) -> Result<Shared, Error> {
        Ok(self.heap.get(q.ptr)?.state.clone())
    }

    /// Schedules a look at the queue's head.
    fn queue_kick(&mut self, q: Shared) {
        self.reg
            .borrow_mut()
            .imms
            .push_once(Box::new(move |ev| trigger_head(ev, &q)));
    }

    /// Creates a running, empty queue named `name` under `parent`
    /// (`tevent_queue_create`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "smb2 requests")?;
    /// assert_eq!(ev.queue_name(q)?, "smb2 requests");
    /// assert!(ev.queue_running(q)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_create(&mut self, parent: impl IntoParent, name: &str) -> Result<Queue, Error> {
        let state = Rc::new(RefCell::new(QueueState {
            name: name.to_string(),
            running: true,
            alive: true,
            next_key: 0,
            entries: VecDeque::new(),
        }));
        let ptr = self.heap.alloc_local(parent, QueueNode { state })?;
        Ok(Queue { ptr })
    }

    /// Adds an entry; `direct`: trigger it inside this call if it is at
    /// once the head of a running queue and the request has no callback
    /// yet (C's `allow_direct`).
    fn queue_add_slot<S: 'static, E: 'static>(
        &mut self,
        q: Queue,
        req: Req<S, E>,
        trigger: Option<Trigger>,
        direct: bool,
    ) -> Result<QueueEntry, Error> {
        let state = self.queue_state(q)?;
        let direct = direct && !self.req_has_callback(req)?;
        let key = {
            let mut s = state.borrow_mut();
            s.next_key += 1;
            s.next_key
        };
        let node = EntryNode {
            queue: state.clone(),
            key,
            reg: self.reg.clone(),
        };
        // Allocated first: on failure the node drops before its slot exists.
        let ptr = self.heap.alloc_local(req.erase(), node)?;
        let entry = QueueEntry { ptr };
        let head = {
            let mut s = state.borrow_mut();
            s.entries.push_back(Slot {
                key,
                entry,
                trigger,
                triggered: false,
                tag: 0,
            });
            s.entries.len() == 1 && s.running
        };
        self.trace_event(TracedEvent::QueueEntry(entry), EventTrace::Attach);
        match (head, direct) {
            (true, true) => trigger_head(self, &state),
            (true, false) => self.queue_kick(state),
            (false, _) => {}
        }
        Ok(entry)
    }

    /// Adds a request at the tail of the queue (`tevent_queue_add_entry`).
    /// When it reaches the head of a running queue, `trigger` runs from an
    /// immediate with the request; the request keeps the head until it is
    /// freed (or the entry is). The entry is a heap child of the request.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let req: tevent::Req<u32> = ev.req_create(None, 42)?;
    /// let got = Rc::new(Cell::new(0));
    /// let g = got.clone();
    /// ev.queue_add(q, req, move |ev, req| {
    ///     g.set(ev.heap()[req.state()]);
    ///     ev.req_done(req).unwrap();
    /// })?;
    /// assert_eq!(got.get(), 0);       // triggered from the loop, not at once
    /// ev.loop_once()?;
    /// assert_eq!(got.get(), 42);
    /// assert_eq!(ev.req_recv(req), Ok(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_add<S: 'static, E: 'static>(
        &mut self,
        q: Queue,
        req: Req<S, E>,
        mut trigger: impl FnMut(&mut Context, Req<S, E>) + 'static,
    ) -> Result<QueueEntry, Error> {
        self.queue_add_slot(q, req, Some(Box::new(move |ev| trigger(ev, req))), false)
    }

    /// Like [`queue_add`](Context::queue_add), but when the queue runs, is
    /// empty, and the request has no callback yet, `trigger` runs inside
    /// this call instead of from the loop
    /// (`tevent_queue_add_optimize_empty`): the common case of an idle
    /// queue costs no loop pass.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let ran = Rc::new(Cell::new(0));
    /// let r = ran.clone();
    /// let first: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.queue_add_optimize_empty(q, first, move |_, _| r.set(r.get() + 1))?;
    /// assert_eq!(ran.get(), 1);                 // at once: the queue was empty
    /// let r = ran.clone();
    /// let second: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.queue_add_optimize_empty(q, second, move |_, _| r.set(r.get() + 1))?;
    /// ev.free(first.erase())?;
    /// assert_eq!(ran.get(), 1);                 // queued behind it: from the loop
    /// ev.loop_once()?;
    /// assert_eq!(ran.get(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_add_optimize_empty<S: 'static, E: 'static>(
        &mut self,
        q: Queue,
        req: Req<S, E>,
        mut trigger: impl FnMut(&mut Context, Req<S, E>) + 'static,
    ) -> Result<QueueEntry, Error> {
        self.queue_add_slot(q, req, Some(Box::new(move |ev| trigger(ev, req))), true)
    }

    /// Adds a request with no trigger: a pure blocker, which holds the
    /// queue while it is at the head (C's `NULL` trigger).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let blocker: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.queue_add_blocker(q, blocker)?;
    /// let waiter = ev.queue_wait_send(None, q)?;
    /// ev.loop_once()?;
    /// assert!(ev.req_is_in_progress(waiter)?);    // blocked
    /// ev.free(blocker.erase())?;
    /// ev.req_poll(waiter)?;                       // now it reaches the head
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_add_blocker<S: 'static, E: 'static>(
        &mut self,
        q: Queue,
        req: Req<S, E>,
    ) -> Result<QueueEntry, Error> {
        self.queue_add_slot(q, req, None, false)
    }

    /// Starts the queue (`tevent_queue_start`): the head is triggered, if it
    /// was not.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// ev.queue_stop(q)?;
    /// let w = ev.queue_wait_send(None, q)?;
    /// ev.loop_once()?;
    /// assert!(ev.req_is_in_progress(w)?);
    /// ev.queue_start(q)?;
    /// ev.req_poll(w)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_start(&mut self, q: Queue) -> Result<(), Error> {
        let state = self.queue_state(q)?;
        let kick = {
            let mut s = state.borrow_mut();
            s.running = true;
            !s.entries.is_empty()
        };
        if kick {
            self.queue_kick(state);
        }
        Ok(())
    }

    /// Stops the queue (`tevent_queue_stop`): nothing more is triggered.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// ev.queue_stop(q)?;
    /// assert!(!ev.queue_running(q)?);
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let entry = ev.queue_add(q, req, |_, _| -> () { unreachable!("the queue is stopped") })?;
    /// ev.loop_once()?;
    /// assert!(!ev.queue_entry_triggered(entry)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_stop(&mut self, q: Queue) -> Result<(), Error> {
        self.queue_state(q)?.borrow_mut().running = false;
        Ok(())
    }

    /// Whether the queue runs (`tevent_queue_running`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// assert!(ev.queue_running(q)?);  // a new queue runs
    /// ev.queue_stop(q)?;
    /// assert!(!ev.queue_running(q)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_running(&self, q: Queue) -> Result<bool, Error> {
        Ok(self.queue_state(q)?.borrow().running)
    }

    /// The number of entries (`tevent_queue_length`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let a: tevent::Req<()> = ev.req_create(None, ())?;
    /// let b: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.queue_add_blocker(q, a)?;
    /// ev.queue_add_blocker(q, b)?;
    /// assert_eq!(ev.queue_length(q)?, 2);
    /// ev.free(a.erase())?;                  // freeing a request leaves the queue
    /// assert_eq!(ev.queue_length(q)?, 1);
    /// # ev.free(b.erase())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_length(&self, q: Queue) -> Result<usize, Error> {
        Ok(self.queue_state(q)?.borrow().entries.len())
    }

    /// The queue's name.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "outgoing")?;
    /// assert_eq!(ev.queue_name(q)?, "outgoing");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_name(&self, q: Queue) -> Result<String, Error> {
        Ok(self.queue_state(q)?.borrow().name.clone())
    }

    /// Re-arms a triggered entry (`tevent_queue_entry_untrigger`), so that
    /// its trigger runs again when the queue starts. The queue must be
    /// stopped ([`Error::QueueRunning`]; C aborts).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let runs = Rc::new(Cell::new(0));
    /// let r = runs.clone();
    /// let e = ev.queue_add(q, req, move |_, _| r.set(r.get() + 1))?;
    /// ev.loop_once()?;
    /// assert_eq!(ev.queue_entry_untrigger(e), Err(tevent::Error::QueueRunning));
    /// ev.queue_stop(q)?;
    /// ev.queue_entry_untrigger(e)?;
    /// ev.queue_start(q)?;
    /// ev.loop_once()?;
    /// assert_eq!(runs.get(), 2);
    /// # ev.free(req.erase())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_entry_untrigger(&mut self, entry: QueueEntry) -> Result<(), Error> {
        let node = self.heap.get(entry.ptr)?;
        let mut s = node.queue.borrow_mut();
        if s.running {
            return Err(Error::QueueRunning);
        }
        if let Some(slot) = s.entries.iter_mut().find(|e| e.key == node.key) {
            slot.triggered = false;
        }
        Ok(())
    }

    /// Whether the entry's trigger has run (it is, or was, at the head).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let e = ev.queue_add_blocker(q, req)?;
    /// assert!(!ev.queue_entry_triggered(e)?);
    /// ev.loop_once()?;
    /// assert!(ev.queue_entry_triggered(e)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_entry_triggered(&self, entry: QueueEntry) -> Result<bool, Error> {
        let node = self.heap.get(entry.ptr)?;
        let s = node.queue.borrow();
        Ok(s.entries
            .iter()
            .find(|e| e.key == node.key)
            .is_some_and(|e| e.triggered))
    }

    /// The tag of a queue entry (`tevent_queue_entry_get_tag`): the caller's
    /// number, 0 until [`set_queue_entry_tag`](Context::set_queue_entry_tag)
    /// sets it.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let e = ev.queue_add_blocker(q, req)?;
    /// assert_eq!(ev.queue_entry_tag(e)?, 0);
    /// ev.set_queue_entry_tag(e, 9)?;
    /// assert_eq!(ev.queue_entry_tag(e)?, 9);
    /// ev.free(req.erase())?;
    /// assert!(ev.queue_entry_tag(e).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_entry_tag(&self, entry: QueueEntry) -> Result<u64, Error> {
        let node = self.heap.get(entry.ptr)?;
        let s = node.queue.borrow();
        let tag = s.entries.iter().find(|e| e.key == node.key).map(|e| e.tag);
        self.found_or_stale(tag, entry.erase())
    }

    /// Sets the tag of a queue entry (`tevent_queue_entry_set_tag`). The
    /// queue never reads it.
    pub fn set_queue_entry_tag(&mut self, entry: QueueEntry, tag: u64) -> Result<(), Error> {
        let node = self.heap.get(entry.ptr)?;
        let mut s = node.queue.borrow_mut();
        let set = s
            .entries
            .iter_mut()
            .find(|e| e.key == node.key)
            .map(|e| e.tag = tag);
        drop(s);
        self.found_or_stale(set, entry.erase())
    }

    /// A request that finishes when it reaches the head of the queue
    /// (`tevent_queue_wait_send`); free it to let the queue go on.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let q = ev.queue_create(None, "q")?;
    /// let first = ev.queue_wait_send(None, q)?;
    /// let second = ev.queue_wait_send(None, q)?;
    /// ev.req_poll(first)?;                        // at the head: done
    /// assert!(ev.req_is_in_progress(second)?);    // waits behind it
    /// ev.free(first.erase())?;
    /// ev.req_poll(second)?;
    /// assert_eq!(ev.req_recv(second), Ok(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queue_wait_send(&mut self, parent: impl IntoParent, q: Queue) -> Result<Req<()>, Error> {
        let req: Req<()> = self.req_create(parent, ())?;
        if let Err(e) = self.queue_add(q, req, |ev, req| {
            let _ = ev.req_done(req);
        }) {
            let _ = self.heap.free(req.erase());
            return Err(e);
        }
        Ok(req)
    }
}
