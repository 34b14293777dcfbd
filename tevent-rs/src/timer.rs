//! Timers: one-shot callbacks at a deadline, freed after they fire (E8).
//!
//! Pending timers are ordered by (deadline, insertion sequence), so equal
//! deadlines fire in the order they were set (E5). They sit in two places:
//! a run of timers added in deadline order (a doubly linked list threaded
//! through their entries, as in C: O(1) to add at its end, to take from its
//! front and to unlink, the common case of "now + a constant"), and a binary
//! heap for the others (O(log n)); the next timer is the earlier of the two
//! fronts. A timer freed or rescheduled out of the heap leaves a dead item
//! behind; dead items are skipped when they reach the front, and the heap is
//! rebuilt once dead items outnumber live ones.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use talloc::{AnyPtr, IntoParent};

use crate::callback::{HandlerResult, TimerAction, TimerResult};
use crate::registry::Registry;
use crate::slab::{Id, Linked, List, Slab, NIL};
use crate::trace::{self, EventTrace, TracedEvent};
use crate::{Context, Error};

/// Fires a timer: takes the callback out of its node (where it lives
/// inline, with no allocation of its own) and calls it. One function per
/// callback type.
/// Runs a timer's callback; `Some(deadline)` to fire again then (a
/// repeating timer), `None` to free it.
pub(crate) type FireFn = fn(&mut Context, TimerEvent, Instant) -> Option<Instant>;

/// A handle to a timer event: a child, in the context's heap, of the parent
/// it was added under.
///
/// Freeing it (or any ancestor) before it fires cancels it. After it fires,
/// it is freed with its subtree once the callback returns (C's rule E8);
/// its handle then reads [`Error::Stale`].
///
/// ```
/// use std::time::Duration;
/// let mut ev = tevent::Context::new()?;
/// let t = ev.add_timer(None, Duration::ZERO, |_, _, _| println!("fired"))?;
/// ev.loop_once()?;
/// assert!(!ev.heap().contains(t.erase()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TimerEvent {
    ptr: AnyPtr,
    id: Id,
}

impl TimerEvent {
    /// The type-erased heap handle, to free or steal the timer (and to
    /// allocate children under it).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let owner = ev.heap_mut().new_context(None)?;
    /// let t = ev.add_timer(None, Duration::from_secs(60), |_, _, _| {})?;
    /// ev.heap_mut().steal_any(owner, t.erase())?;
    /// ev.heap_mut().free(owner)?;            // cancels the timer
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr
    }
}

crate::handle_traits!(TimerEvent, "TimerEvent");

/// The heap object of a timer, holding its callback; dropping it takes the
/// timer off the loop.
pub(crate) struct TimerNode<C> {
    id: Id,
    reg: Rc<RefCell<Registry>>,
    cb: Option<C>,
}

impl<C> Drop for TimerNode<C> {
    fn drop(&mut self) {
        let (gone, traced) = {
            let mut reg = self.reg.borrow_mut();
            let gone = reg.timers.remove(self.id).flatten();
            if let Some(ptr) = gone {
                reg.wrappers.unbind(ptr);
            }
            (gone, reg.tracing.events)
        };
        if let (true, Some(ptr)) = (traced, gone) {
            let t = TimerEvent { ptr, id: self.id };
            trace::event(&self.reg, TracedEvent::Timer(t), EventTrace::Detach);
        }
    }
}

/// When a timer fires: an absolute [`Instant`], or a [`Duration`] from now.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tevent::When;
/// let now = Instant::now();
/// assert_eq!(When::from(now).deadline(now), now);
/// assert_eq!(When::from(Duration::from_secs(1)).deadline(now), now + Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// At this instant (C's absolute `struct timeval`).
    At(Instant),
    /// This long after the call (C's `tevent_timeval_current_ofs`).
    After(Duration),
}

impl When {
    /// The deadline, taking `now` as the present.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tevent::When;
    /// let now = Instant::now();
    /// let soon = When::After(Duration::from_millis(250));
    /// assert_eq!(soon.deadline(now) - now, Duration::from_millis(250));
    /// // An absolute deadline ignores `now`, even one in the past.
    /// assert_eq!(When::At(now).deadline(now + Duration::from_secs(9)), now);
    /// ```
    pub fn deadline(self, now: Instant) -> Instant {
        match self {
            When::At(t) => t,
            When::After(d) => now
                .checked_add(d)
                .unwrap_or(now + Duration::from_secs(1 << 40)),
        }
    }
}

impl From<Instant> for When {
    fn from(t: Instant) -> When {
        When::At(t)
    }
}

impl From<Duration> for When {
    fn from(d: Duration) -> When {
        When::After(d)
    }
}

pub(crate) struct TimerEntry {
    node: Option<AnyPtr>,
    deadline: Instant,
    /// The sequence number of its live queue item; 0 when not queued.
    seq: u64,
    fire: FireFn,
    /// Its callback runs (it is freed once it returns).
    firing: bool,
    /// It is linked into the run (else, if queued, it is in the heap).
    in_run: bool,
    /// Its neighbours in the run, by slab index ([`NIL`]: none).
    prev: u32,
    next: u32,
    /// The caller's tag (`tevent_timer_set_tag`).
    tag: u64,
}

/// One timer queued in the heap, which is a max-heap, so the order is
/// reversed.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Item {
    deadline: Instant,
    seq: u64,
    id: Id,
}

impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .cmp(&self.deadline)
            .then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Linked for TimerEntry {
    #[inline(always)]
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.prev, &mut self.next)
    }
}

/// Every timer of a context.
pub(crate) struct Timers {
    slab: Slab<TimerEntry>,
    /// The timers added in deadline order: the run, in (deadline,
    /// sequence) order.
    run: List,
    heap: BinaryHeap<Item>,
    next_seq: u64,
    queued: usize,
}

impl Timers {
    /// Lets a test fill the store (see `Slab::set_capacity`).
    #[cfg(test)]
    pub(crate) fn set_capacity(&mut self, cap: u32) {
        self.slab.set_capacity(cap);
    }

    pub(crate) fn new() -> Timers {
        Timers {
            slab: Slab::default(),
            run: List::default(),
            heap: BinaryHeap::new(),
            next_seq: 1,
            queued: 0,
        }
    }

    /// Number of timers waiting to fire.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// (Re)queues a timer at a deadline, behind every timer already queued
    /// for the same deadline.
    fn schedule(&mut self, id: Id, deadline: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(e) = self.slab.get_mut(id) else {
            return;
        };
        let was_queued = e.seq != 0;
        let unlink = e.in_run.then_some((e.prev, e.next));
        e.seq = seq;
        e.deadline = deadline;
        if !was_queued {
            self.queued += 1;
        }
        if let Some((prev, next)) = unlink {
            self.run.unlink(&mut self.slab, prev, next);
        }
        let tail = self.run.tail;
        if tail != NIL && self.slab.at(tail).deadline > deadline {
            let e = self.slab.at_mut(id.idx);
            e.in_run = false;
            self.heap.push(Item { deadline, seq, id });
        } else {
            self.slab.at_mut(id.idx).in_run = true;
            self.run.push_back(&mut self.slab, id.idx);
        }
        self.compact();
    }

    /// Takes a timer out (its node is going); its node, if it had one.
    #[inline]
    pub(crate) fn remove(&mut self, id: Id) -> Option<Option<AnyPtr>> {
        let (node, queued, unlink) = self.slab.remove_with(id, |e| {
            (e.node, e.seq != 0, e.in_run.then_some((e.prev, e.next)))
        })?;
        if queued {
            self.queued -= 1;
            match unlink {
                Some((prev, next)) => self.run.unlink(&mut self.slab, prev, next),
                None => self.compact(),
            }
        }
        Some(node)
    }

    /// Rebuilds the heap when dead items outnumber live ones, so that
    /// cancelled timers cannot pile up.
    #[inline]
    fn compact(&mut self) {
        let items = self.heap.len();
        if items > 64 && items > 2 * (self.queued - self.run.len) {
            let slab = &self.slab;
            let live = |it: &Item| slab.get(it.id).is_some_and(|e| e.seq == it.seq);
            self.heap.retain(live);
        }
    }

    fn live(&self, it: &Item) -> bool {
        self.slab.get(it.id).is_some_and(|e| e.seq == it.seq)
    }

    /// Drops dead items from the front of the heap; whether the next timer
    /// is at the front of the run (else the heap), if there is one.
    #[inline]
    fn front(&mut self) -> Option<bool> {
        while let Some(it) = self.heap.peek() {
            if self.live(it) {
                break;
            }
            self.heap.pop();
        }
        let run = (self.run.head != NIL).then(|| {
            let e = self.slab.at(self.run.head);
            (e.deadline, e.seq)
        });
        match (run, self.heap.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(r), Some(h)) => Some(r < (h.deadline, h.seq)),
        }
    }

    /// The next timer: whether it is at the front of the run (else of the
    /// heap), and its deadline.
    #[inline]
    pub(crate) fn first(&mut self) -> Option<(bool, Instant)> {
        let in_run = self.front()?;
        let deadline = if in_run {
            self.slab.at(self.run.head).deadline
        } else {
            // A live item's deadline is its entry's.
            self.heap.peek()?.deadline
        };
        Some((in_run, deadline))
    }

    /// Dequeues the timer [`first`](Timers::first) just returned, for
    /// firing.
    #[inline]
    pub(crate) fn take_first(&mut self, in_run: bool) -> Option<(FireFn, TimerEvent, Instant)> {
        let id = if in_run {
            let idx = self.run.head;
            if idx == NIL {
                return None;
            }
            let next = self.slab.at(idx).next;
            self.run.unlink(&mut self.slab, NIL, next);
            self.slab.id_at(idx)
        } else {
            self.heap.pop()?.id
        };
        let e = self.slab.get_mut(id)?;
        e.seq = 0;
        e.in_run = false;
        e.firing = true;
        self.queued -= 1;
        Some((e.fire, TimerEvent { ptr: e.node?, id }, e.deadline))
    }
}

/// The [`FireFn`] of callback type `C`.
fn fire<C, R>(ev: &mut Context, timer: TimerEvent, deadline: Instant) -> Option<Instant>
where
    C: FnOnce(&mut Context, TimerEvent, Instant) -> R + 'static,
    R: HandlerResult,
{
    let cb = ev
        .heap
        .downcast::<TimerNode<C>>(timer.ptr)
        .ok()
        .and_then(|p| ev.heap.get_mut(p).ok())
        .and_then(|n| n.cb.take());
    if let Some(cb) = cb {
        let r = cb(ev, timer, deadline);
        ev.handled(r);
    }
    None
}

/// The [`FireFn`] of a repeating timer's callback type `C`: the callback
/// goes back into its node when it asks to fire again. (After a panic it is
/// dropped, and the timer freed, as after any firing.)
fn fire_repeating<C, R>(ev: &mut Context, timer: TimerEvent, deadline: Instant) -> Option<Instant>
where
    C: FnMut(&mut Context, TimerEvent, Instant) -> R + 'static,
    R: TimerResult,
{
    let node = ev.heap.downcast::<TimerNode<C>>(timer.ptr).ok()?;
    let mut cb = ev.heap.get_mut(node).ok()?.cb.take()?;
    match cb(ev, timer, deadline).into_action() {
        Ok(TimerAction::Again(when)) => {
            let n = ev.heap.get_mut(node).ok()?;
            n.cb.get_or_insert(cb);
            Some(ev.deadline(when))
        }
        Ok(TimerAction::Done) => None,
        Err(e) => {
            ev.callback_failed(e);
            None
        }
    }
}

impl Context {
    /// Adds a one-shot timer, a child of `parent` in the heap (`None`: top
    /// level), that fires at `when`: an [`Instant`], or a [`Duration`] from
    /// now. The callback gets the context, the timer's handle and the
    /// deadline it was set for (not the current time).
    ///
    /// Timers with equal deadlines fire in the order they were added. A
    /// timer is freed, with its subtree, after its callback returns
    /// (C's rule E8).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use std::{cell::RefCell, rc::Rc};
    /// let mut ev = tevent::Context::new()?;
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// let at = Instant::now();
    /// for n in 0..3 {
    ///     let order = order.clone();
    ///     ev.add_timer(None, at, move |_, _, deadline| {
    ///         assert_eq!(deadline, at);
    ///         order.borrow_mut().push(n);
    ///     })?;
    /// }
    /// ev.loop_wait()?;
    /// assert_eq!(*order.borrow(), [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The callback may return `()` or `Result<(), CallbackError>` (see
    /// [`HandlerResult`]): an error comes out of the `loop_once` that fired
    /// the timer.
    pub fn add_timer<C, R>(
        &mut self,
        parent: impl IntoParent,
        when: impl Into<When>,
        cb: C,
    ) -> Result<TimerEvent, Error>
    where
        C: FnOnce(&mut Context, TimerEvent, Instant) -> R + 'static,
        R: HandlerResult,
    {
        self.insert_timer(parent, when.into(), cb, fire::<C, R>)
    }

    /// Adds a timer that may fire more than once: its callback returns
    /// [`TimerAction::Again`] with the next deadline to keep the timer (the
    /// same handle, its children untouched) or [`TimerAction::Done`] to
    /// free it, as a one-shot timer is freed. Re-adding a timer in each
    /// callback, as C code does, also works, but costs a new heap object
    /// and handle each time.
    ///
    /// The callback may also return `Result<TimerAction, CallbackError>`:
    /// an error frees the timer and comes out of `loop_once`.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::{Duration, Instant}};
    /// use tevent::TimerAction;
    /// let mut ev = tevent::Context::new()?;
    /// let ticks = Rc::new(Cell::new(0));
    /// let t = ticks.clone();
    /// let timer = ev.add_repeating_timer(None, Duration::ZERO, move |_, _, deadline| {
    ///     t.set(t.get() + 1);
    ///     if t.get() == 3 {
    ///         return TimerAction::Done;
    ///     }
    ///     TimerAction::after(deadline, Duration::from_millis(1))  // no drift
    /// })?;
    /// ev.loop_wait()?;
    /// assert_eq!(ticks.get(), 3);
    /// assert!(!ev.heap().contains(timer));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_repeating_timer<C, R>(
        &mut self,
        parent: impl IntoParent,
        when: impl Into<When>,
        cb: C,
    ) -> Result<TimerEvent, Error>
    where
        C: FnMut(&mut Context, TimerEvent, Instant) -> R + 'static,
        R: TimerResult,
    {
        self.insert_timer(parent, when.into(), cb, fire_repeating::<C, R>)
    }

    /// A timer node under `parent` holding `cb`, run by `fire`, and its
    /// entry, due at `when`.
    fn insert_timer<C: 'static>(
        &mut self,
        parent: impl IntoParent,
        when: When,
        cb: C,
        fire: FireFn,
    ) -> Result<TimerEvent, Error> {
        let deadline = self.deadline(when);
        // The node takes the id its entry will get; if the allocation
        // fails, the node is dropped before the entry exists.
        let id = self
            .reg
            .borrow()
            .timers
            .slab
            .vacant_id()
            .ok_or(Error::TooManyEvents)?;
        let node = TimerNode {
            id,
            reg: self.reg.clone(),
            cb: Some(cb),
        };
        let ptr = self.heap_mut().alloc_local(parent, node)?.erase();
        let mut reg = self.reg.borrow_mut();
        let got = reg.timers.slab.insert(TimerEntry {
            node: Some(ptr),
            deadline,
            seq: 0,
            fire,
            firing: false,
            in_run: false,
            prev: NIL,
            next: NIL,
            tag: 0,
        });
        // `vacant_id` found room above, and nothing since took it.
        debug_assert_eq!(got.ok(), Some(id));
        reg.timers.schedule(id, deadline);
        reg.wrappers.bind(ptr);
        drop(reg);
        let t = TimerEvent { ptr, id };
        self.trace_event(TracedEvent::Timer(t), EventTrace::Attach);
        Ok(t)
    }

    /// Puts a timer whose callback asked to fire again back in the queue
    /// (it is not firing any more). False if the timer is gone.
    pub(crate) fn rearm_timer(&mut self, timer: TimerEvent, deadline: Instant) -> bool {
        let mut reg = self.reg.borrow_mut();
        match reg.timers.slab.get_mut(timer.id) {
            Some(e) if e.node == Some(timer.ptr) => e.firing = false,
            _ => return false,
        }
        reg.timers.schedule(timer.id, deadline);
        true
    }

    /// Moves a pending timer to a new deadline (`tevent_update_timer`); it
    /// goes behind the timers already set for that deadline.
    ///
    /// A timer whose callback is running gives [`Error::TimerFiring`]: it is
    /// freed when the callback returns.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut ev = tevent::Context::new()?;
    /// let t = ev.add_timer(None, Duration::from_secs(3600), |_, _, _| {})?;
    /// let soon = Instant::now();
    /// ev.update_timer(t, soon)?;
    /// assert_eq!(ev.timer_deadline(t)?, soon);
    /// ev.loop_once()?;                    // fires now, not in an hour
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update_timer(&mut self, timer: TimerEvent, when: impl Into<When>) -> Result<(), Error> {
        let deadline = self.deadline(when.into());
        let mut reg = self.reg.borrow_mut();
        match reg.timers.slab.get(timer.id) {
            Some(e) if e.node == Some(timer.ptr) => {
                if e.firing {
                    return Err(Error::TimerFiring);
                }
            }
            _ => {
                drop(reg);
                return Err(self.stale(timer.erase()));
            }
        }
        reg.timers.schedule(timer.id, deadline);
        drop(reg);
        // C takes the timer out and puts it back in.
        self.trace_event(TracedEvent::Timer(timer), EventTrace::Detach);
        self.trace_event(TracedEvent::Timer(timer), EventTrace::Attach);
        Ok(())
    }

    /// The tag of a timer (`tevent_timer_get_tag`): the caller's number,
    /// 0 until [`set_timer_tag`](Context::set_timer_tag) sets it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let t = ev.add_timer(None, Duration::from_secs(1), |_, _, _| {})?;
    /// ev.set_timer_tag(t, 42)?;
    /// ev.update_timer(t, Duration::from_secs(2))?;   // the tag stays
    /// assert_eq!(ev.timer_tag(t)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timer_tag(&self, timer: TimerEvent) -> Result<u64, Error> {
        let tag = self
            .reg
            .borrow()
            .timers
            .slab
            .get(timer.id)
            .filter(|e| e.node == Some(timer.ptr))
            .map(|e| e.tag);
        self.found_or_stale(tag, timer.erase())
    }

    /// Sets the tag of a timer (`tevent_timer_set_tag`).
    /// The loop never reads it: it is there for the caller (and for trace
    /// callbacks) to tell events apart.
    pub fn set_timer_tag(&mut self, timer: TimerEvent, tag: u64) -> Result<(), Error> {
        let mut reg = self.reg.borrow_mut();
        let set = reg
            .timers
            .slab
            .get_mut(timer.id)
            .filter(|e| e.node == Some(timer.ptr))
            .map(|e| e.tag = tag);
        drop(reg);
        self.found_or_stale(set, timer.erase())
    }

    /// The deadline a timer is set for.
    ///
    /// ```
    /// use std::time::Instant;
    /// # let mut ev = tevent::Context::new()?;
    /// let at = Instant::now();
    /// let t = ev.add_timer(None, at, |_, _, _| {})?;
    /// assert_eq!(ev.timer_deadline(t)?, at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timer_deadline(&self, timer: TimerEvent) -> Result<Instant, Error> {
        let reg = self.reg.borrow();
        match reg.timers.slab.get(timer.id) {
            Some(e) if e.node == Some(timer.ptr) => Ok(e.deadline),
            _ => {
                drop(reg);
                Err(self.stale(timer.erase()))
            }
        }
    }

    /// The absolute deadline of `when`, reading the clock for a relative one.
    #[inline]
    fn deadline(&mut self, when: When) -> Instant {
        match when {
            When::At(t) => t,
            When::After(d) => {
                let now = Instant::now();
                self.now = now;
                When::After(d).deadline(now)
            }
        }
    }
}

impl fmt::Debug for TimerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerEntry")
            .field("deadline", &self.deadline)
            .field("queued", &(self.seq != 0))
            .finish()
    }
}
