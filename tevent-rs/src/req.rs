//! Async requests (`tevent_req`): a computation that finishes later, with a
//! typed state, a typed error and a completion callback.
//!
//! A request is an object in the heap with its state as a child. Freeing
//! the request frees its state and everything under it: its timeout timer,
//! its trigger immediate, its queue entries, its sub-requests if they were
//! created under it. The cleanup function runs at most once per state: when
//! the request finishes, and when it is received or freed (rule E10).
//!
//! The C conventions carry over: a `_send` function creates the request,
//! starts the work, and returns it; on an early result it finishes it and
//! [`req_post`](Context::req_post)s it so that the caller's callback runs
//! later, from the loop; the caller sets a callback, and in it calls a
//! `_recv` function, which reads the state and
//! [`req_recv`](Context::req_recv)s the result.

use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::Location;

use talloc::{AnyPtr, IntoParent, Ptr, Talloc};

use crate::callback::HandlerResult;
use crate::profile::{self, ReqProfile};
use crate::{Context, Error, Immediate, TimerEvent, When};

/// Where a request is in its life (C's `enum tevent_req_state`, without
/// `INIT`).
///
/// ```
/// use tevent::ReqState;
/// assert!(ReqState::TimedOut.is_finished());
/// assert!(!ReqState::InProgress.is_finished());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReqState {
    /// Not finished.
    InProgress,
    /// Finished with success.
    Done,
    /// Finished with the caller's error value.
    Error,
    /// Finished because its end time passed.
    TimedOut,
    /// Finished for lack of memory (a heap allocation failed).
    NoMemory,
    /// Its result was taken; its state is gone.
    Received,
}

impl ReqState {
    /// Done, failed, timed out or out of memory (not yet received).
    ///
    /// ```
    /// assert!(tevent::ReqState::Done.is_finished());
    /// ```
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ReqState::Done | ReqState::Error | ReqState::TimedOut | ReqState::NoMemory
        )
    }
}

/// Why a request did not succeed, as [`req_recv`](Context::req_recv) tells.
///
/// ```
/// use tevent::ReqError;
/// let e: ReqError<&str> = ReqError::Failed("disk full");
/// assert_eq!(e.to_string(), "disk full"); // the request's own error, as it is
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqError<E> {
    /// It finished with this error ([`req_error`](Context::req_error)).
    Failed(E),
    /// Its end time passed.
    TimedOut,
    /// A heap allocation failed.
    NoMemory,
    /// It has not finished yet.
    InProgress,
    /// Its result was already received.
    Received,
    /// The request was freed, or belongs to another context.
    Gone(Error),
}

impl<E: fmt::Display> fmt::Display for ReqError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReqError::Failed(e) => e.fmt(f),
            ReqError::TimedOut => f.write_str("request timed out"),
            ReqError::NoMemory => f.write_str("request ran out of memory"),
            ReqError::InProgress => f.write_str("request still in progress"),
            ReqError::Received => f.write_str("request result already received"),
            ReqError::Gone(_) => f.write_str("the request is gone"),
        }
    }
}

/// `Failed` shows the request's own error (it is the request's result, not
/// a cause of ours); `Gone` gives the handle error as its `source`.
impl<E: fmt::Debug + fmt::Display> std::error::Error for ReqError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReqError::Gone(e) => Some(e),
            _ => None,
        }
    }
}

/// A handle to a request whose state is an `S` and whose error is an `E`.
///
/// ```
/// use tevent::{Context, Req};
/// let mut ev = Context::new()?;
/// let req: Req<u32, String> = ev.req_create(None, 0u32)?;
/// ev.heap_mut()[req.state()] += 1;
/// ev.req_done(req)?;
/// assert_eq!(ev.req_recv(req), Ok(1));        // the state, moved out
/// ev.free(req.erase())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Req<S, E = Infallible> {
    node: Ptr<ReqNode<S, E>>,
    state: Ptr<S>,
}

impl<S, E> Req<S, E> {
    /// The handle of the request's state, a child of the request.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<Vec<u8>> = ev.req_create(None, Vec::new())?;
    /// ev.heap_mut()[req.state()].push(7);
    /// assert_eq!(ev.heap().parent(req.state())?, Some(req.erase()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(self) -> Ptr<S> {
        self.state
    }

    /// The type-erased heap handle of the request, to free or steal it (or
    /// to allocate sub-requests under it).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let outer: tevent::Req<()> = ev.req_create(None, ())?;
    /// let inner: tevent::Req<()> = ev.req_create(outer.erase(), ())?;   // a sub-request
    /// ev.free(outer.erase())?;                                          // frees both
    /// assert!(!ev.heap().contains(inner.erase()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.node.erase()
    }
}

impl<S, E> Clone for Req<S, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S, E> Copy for Req<S, E> {}
impl<S, E> PartialEq for Req<S, E> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}
impl<S, E> Eq for Req<S, E> {}
impl<S, E> Hash for Req<S, E> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.hash(state)
    }
}
impl<S, E> From<Req<S, E>> for AnyPtr {
    fn from(r: Req<S, E>) -> AnyPtr {
        r.node.erase()
    }
}
impl<S, E> IntoParent for Req<S, E> {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.node.erase())
    }
}
impl<S, E> fmt::Debug for Req<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Req({:?})", self.node.erase())
    }
}

type Callback<S, E> = Box<dyn FnOnce(&mut Context, Req<S, E>)>;
type CancelFn<S, E> = Box<dyn FnMut(&mut Context, Req<S, E>) -> bool>;
type CleanupFn<S, E> = Box<dyn FnMut(&mut Talloc, Req<S, E>, ReqState)>;
type PrintFn<S, E> = Box<dyn Fn(&Context, Req<S, E>) -> String>;

enum Status<E> {
    InProgress,
    Done,
    Failed(E),
    TimedOut,
    NoMemory,
    Received,
}

impl<E> Status<E> {
    fn state(&self) -> ReqState {
        match self {
            Status::InProgress => ReqState::InProgress,
            Status::Done => ReqState::Done,
            Status::Failed(_) => ReqState::Error,
            Status::TimedOut => ReqState::TimedOut,
            Status::NoMemory => ReqState::NoMemory,
            Status::Received => ReqState::Received,
        }
    }
}

/// The heap object of a request.
struct ReqNode<S, E> {
    status: Status<E>,
    callback: Option<Callback<S, E>>,
    cancel: Option<CancelFn<S, E>>,
    cleanup: Option<CleanupFn<S, E>>,
    /// The last state the cleanup function ran for.
    cleaned: Option<ReqState>,
    endtime: Option<TimerEvent>,
    trigger: Option<Immediate>,
    defer: bool,
    /// Where it was created and where it finished (for profiles and
    /// [`req_print`](Context::req_print)).
    created_at: &'static Location<'static>,
    finished_at: Option<&'static Location<'static>>,
    print: Option<PrintFn<S, E>>,
    /// The profile of the request it was created under, to which its own
    /// profile goes when it finishes.
    parent_profile: Option<Ptr<ReqProfile>>,
}

/// Runs a request's cleanup function for `state`, unless it already ran for
/// it (or there is none).
fn cleanup<S: 'static, E: 'static>(heap: &mut Talloc, req: Req<S, E>, state: ReqState) {
    let Ok(n) = heap.get_mut(req.node) else {
        return;
    };
    if n.cleaned == Some(state) {
        return;
    }
    let Some(mut f) = n.cleanup.take() else {
        return;
    };
    n.cleaned = Some(state);
    f(heap, req, state);
    if state != ReqState::Received {
        if let Ok(n) = heap.get_mut(req.node) {
            if n.cleanup.is_none() {
                n.cleanup = Some(f);
            }
        }
    }
}

impl Context {
    /// Creates a request under `parent` with `state` as its state, a child
    /// of the request (`tevent_req_create`). It starts in progress.
    ///
    /// ```
    /// use tevent::{Req, ReqState};
    /// # let mut ev = tevent::Context::new()?;
    /// let conn = ev.heap_mut().new_context(None)?;
    /// let req: Req<Vec<u8>> = ev.req_create(conn, Vec::new())?;
    /// assert_eq!(ev.req_state(req)?, ReqState::InProgress);
    /// assert_eq!(ev.heap().parent(req.erase())?, Some(conn.erase()));
    /// ev.heap_mut().free(conn)?;                  // the request goes with its parent
    /// assert!(ev.req_state(req).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_create<S: 'static, E: 'static>(
        &mut self,
        parent: impl IntoParent,
        state: S,
    ) -> Result<Req<S, E>, Error> {
        let parent = parent.into_parent();
        let parent_profile = self.inherited_profile(parent);
        let node = self.heap.alloc_local(
            parent,
            ReqNode::<S, E> {
                status: Status::InProgress,
                callback: None,
                cancel: None,
                cleanup: None,
                cleaned: None,
                endtime: None,
                trigger: None,
                defer: false,
                created_at: Location::caller(),
                finished_at: None,
                print: None,
                parent_profile,
            },
        )?;
        let state = match self.heap.alloc_local(node, state) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.heap.free(node);
                return Err(e.into());
            }
        };
        let req = Req { node, state };
        // Freeing the request is receiving it: the cleanup function runs
        // with `Received` before the state goes (E10).
        self.heap.set_destructor(node, move |heap, _| {
            cleanup(heap, req, ReqState::Received);
            Ok(())
        })?;
        // Created under a profiled request's state: profiled too.
        if parent_profile.is_some() {
            if let Err(e) = self.req_set_profile(req) {
                let _ = self.heap.free(node);
                return Err(e);
            }
        }
        Ok(req)
    }

    /// Where the request was created (and whether it is live).
    pub(crate) fn req_created_at<S: 'static, E: 'static>(
        &self,
        req: Req<S, E>,
    ) -> Result<&'static Location<'static>, Error> {
        Ok(self.heap.get(req.node)?.created_at)
    }

    fn req_node<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
    ) -> Result<&mut ReqNode<S, E>, Error> {
        Ok(self.heap.get_mut(req.node)?)
    }

    /// Sets the function called once the request finishes
    /// (`tevent_req_set_callback`), with the context and the request.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let called = Rc::new(Cell::new(false));
    /// let c = called.clone();
    /// ev.req_set_callback(req, move |ev, req| {
    ///     ev.req_recv(req).unwrap();
    ///     c.set(true);
    /// })?;
    /// ev.req_done(req)?;
    /// assert!(called.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_set_callback<S: 'static, E: 'static, R: HandlerResult>(
        &mut self,
        req: Req<S, E>,
        cb: impl FnOnce(&mut Context, Req<S, E>) -> R + 'static,
    ) -> Result<(), Error> {
        self.req_node(req)?.callback = Some(Box::new(move |ev, req| {
            let r = cb(ev, req);
            ev.handled(r)
        }));
        Ok(())
    }

    /// Whether the request has a completion callback (queues call a
    /// trigger directly only before it has one).
    pub(crate) fn req_has_callback<S: 'static, E: 'static>(
        &self,
        req: Req<S, E>,
    ) -> Result<bool, Error> {
        Ok(self.heap.get(req.node)?.callback.is_some())
    }

    /// Makes the next notification go through an immediate
    /// (`tevent_req_defer_callback`): the callback runs from the loop, not
    /// inside the call that finished the request.
    ///
    /// ```
    /// # use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let called = Rc::new(Cell::new(false));
    /// let c = called.clone();
    /// ev.req_set_callback(req, move |_, _| c.set(true))?;
    /// ev.req_defer_callback(req)?;
    /// ev.req_done(req)?;
    /// assert!(!called.get());
    /// ev.loop_once()?;
    /// assert!(called.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_defer_callback<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
    ) -> Result<(), Error> {
        self.req_node(req)?.defer = true;
        Ok(())
    }

    /// Finishes the request with success (`tevent_req_done`) and notifies:
    /// the cleanup function runs, then the callback.
    /// [`Error::NotInProgress`] if it had finished.
    ///
    /// ```
    /// use tevent::{Error, ReqState};
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.req_done(req)?;
    /// assert_eq!(ev.req_state(req)?, ReqState::Done);
    /// assert_eq!(ev.req_done(req), Err(Error::NotInProgress));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_done<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        self.req_finish(req, Status::Done, Location::caller())
    }

    /// Finishes the request with an error value (`tevent_req_error`).
    ///
    /// ```
    /// use tevent::ReqError;
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<(), &str> = ev.req_create(None, ())?;
    /// ev.req_error(req, "no such user")?;
    /// assert_eq!(ev.req_recv(req), Err(ReqError::Failed("no such user")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_error<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        error: E,
    ) -> Result<(), Error> {
        self.req_finish(req, Status::Failed(error), Location::caller())
    }

    /// Finishes the request as out of memory (`tevent_req_oom`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.req_oom(req)?;
    /// assert_eq!(ev.req_recv(req), Err(tevent::ReqError::NoMemory));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_oom<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        self.req_finish(req, Status::NoMemory, Location::caller())
    }

    /// C's `tevent_req_nomem`: the value of a heap result, or, when the
    /// allocation failed, `None` with the request finished as out of memory.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let r = ev.heap_mut().alloc_str(req.state(), "buffer");
    /// let Some(buf) = ev.req_nomem(req, r) else { return Ok(()) };
    /// # let _ = buf;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_nomem<S: 'static, E: 'static, T>(
        &mut self,
        req: Req<S, E>,
        r: Result<T, talloc::Error>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(_) => {
                let _ = self.req_oom(req);
                None
            }
        }
    }

    fn req_finish<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        status: Status<E>,
        at: &'static Location<'static>,
    ) -> Result<(), Error> {
        let n = self.req_node(req)?;
        if !matches!(n.status, Status::InProgress) {
            return Err(Error::NotInProgress);
        }
        let state = status.state();
        n.status = status;
        n.finished_at = Some(at);
        let parent_profile = n.parent_profile;
        if let Some(t) = n.endtime.take() {
            let _ = self.heap.free(t.erase());
        }
        self.finish_profile(req, parent_profile, state, at);
        cleanup(&mut self.heap, req, state);
        self.req_notify(req);
        Ok(())
    }

    /// Calls the callback now, or through the trigger immediate when the
    /// request defers it.
    fn req_notify<S: 'static, E: 'static>(&mut self, req: Req<S, E>) {
        let Ok(n) = self.heap.get_mut(req.node) else {
            return;
        };
        if n.defer {
            let _ = self.req_post(req);
        } else if let Some(cb) = n.callback.take() {
            cb(self, req);
        }
    }

    /// Delivers a finished request's result through an immediate
    /// (`tevent_req_post`), so that a `_send` function that finished early
    /// can return the request first; the callback set meanwhile runs from
    /// the loop.
    ///
    /// ```
    /// # use std::{cell::Cell, rc::Rc};
    /// # let mut ev = tevent::Context::new()?;
    /// fn send(ev: &mut tevent::Context) -> tevent::Req<(), String> {
    ///     let req = ev.req_create(None, ()).unwrap();
    ///     ev.req_error(req, "bad argument".to_string()).unwrap(); // no callback yet
    ///     ev.req_post(req).unwrap();
    ///     req
    /// }
    /// let req = send(&mut ev);
    /// let got = Rc::new(Cell::new(false));
    /// let g = got.clone();
    /// ev.req_set_callback(req, move |ev, req| {
    ///     assert!(ev.req_recv(req).is_err());
    ///     g.set(true);
    /// })?;
    /// ev.loop_once()?;
    /// assert!(got.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_post<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        let current = self.req_node(req)?.trigger;
        let trigger = match current {
            Some(im) if self.heap.contains(im.erase()) => im,
            _ => {
                let im = self.create_immediate(req.node)?;
                self.req_node(req)?.trigger = Some(im);
                im
            }
        };
        self.schedule_immediate(trigger, move |ev, _| {
            if let Ok(n) = ev.heap.get_mut(req.node) {
                n.defer = false;
                if let Some(cb) = n.callback.take() {
                    cb(ev, req);
                }
            }
        })
    }

    /// What state the request is in.
    ///
    /// ```
    /// use tevent::ReqState;
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// assert_eq!(ev.req_state(req)?, ReqState::InProgress);
    /// ev.req_done(req)?;
    /// assert_eq!(ev.req_state(req)?, ReqState::Done);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_state<S: 'static, E: 'static>(&self, req: Req<S, E>) -> Result<ReqState, Error> {
        Ok(self.heap.get(req.node)?.status.state())
    }

    /// Whether the request has not finished (`tevent_req_is_in_progress`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// assert!(ev.req_is_in_progress(req)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_is_in_progress<S: 'static, E: 'static>(
        &self,
        req: Req<S, E>,
    ) -> Result<bool, Error> {
        Ok(self.req_state(req)? == ReqState::InProgress)
    }

    /// The error value of a failed request, without taking it
    /// (`tevent_req_is_error`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<(), i32> = ev.req_create(None, ())?;
    /// ev.req_error(req, 5)?;
    /// assert_eq!(ev.req_error_value(req)?, Some(&5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_error_value<S: 'static, E: 'static>(
        &self,
        req: Req<S, E>,
    ) -> Result<Option<&E>, Error> {
        Ok(match &self.heap.get(req.node)?.status {
            Status::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// Runs the loop until the request finishes (`tevent_req_poll`). Like
    /// any `loop_once`, refused with [`Error::Nested`] inside a callback.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let req = ev.wakeup_send(None, Duration::from_millis(1))?;
    /// ev.req_poll(req)?;
    /// assert_eq!(ev.req_recv(req), Ok(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_poll<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        while self.req_is_in_progress(req)? {
            self.loop_once()?;
        }
        Ok(())
    }

    /// Finishes the request as timed out at `when`, unless it finishes
    /// first (`tevent_req_set_endtime`); a new end time replaces the old.
    /// The timer is a child of the request.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.req_set_endtime(req, Duration::from_millis(1))?;
    /// ev.req_poll(req)?;
    /// assert_eq!(ev.req_recv(req), Err(tevent::ReqError::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn req_set_endtime<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        when: impl Into<When>,
    ) -> Result<(), Error> {
        self.req_reset_endtime(req)?;
        let at = Location::caller();
        let t = self.add_timer(req.node, when, move |ev, _, _| {
            let _ = ev.req_finish(req, Status::TimedOut, at);
        })?;
        self.req_node(req)?.endtime = Some(t);
        Ok(())
    }

    /// Removes the end time (`tevent_req_reset_endtime`).
    ///
    /// ```
    /// use std::time::Duration;
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.req_set_endtime(req, Duration::from_secs(1))?;
    /// ev.req_reset_endtime(req)?;
    /// assert!(!ev.has_events());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_reset_endtime<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
    ) -> Result<(), Error> {
        if let Some(t) = self.req_node(req)?.endtime.take() {
            let _ = self.heap.free(t.erase());
        }
        Ok(())
    }

    /// Sets the function that [`req_cancel`](Context::req_cancel) calls
    /// (`tevent_req_set_cancel_fn`); it says whether cancelling started.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<(), &str> = ev.req_create(None, ())?;
    /// assert!(!ev.req_cancel(req)?);                 // no cancel function
    /// ev.req_set_cancel_fn(req, |ev, req| ev.req_error(req, "cancelled").is_ok())?;
    /// assert!(ev.req_cancel(req)?);
    /// assert_eq!(ev.req_recv(req), Err(tevent::ReqError::Failed("cancelled")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_set_cancel_fn<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        f: impl FnMut(&mut Context, Req<S, E>) -> bool + 'static,
    ) -> Result<(), Error> {
        self.req_node(req)?.cancel = Some(Box::new(f));
        Ok(())
    }

    /// Asks the request to cancel (`tevent_req_cancel`): false when it has
    /// no cancel function, else what the function says.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// assert!(!ev.req_cancel(req)?);                 // no cancel function
    /// ev.req_set_cancel_fn(req, |_, _| false)?;      // one that cannot cancel now
    /// assert!(!ev.req_cancel(req)?);
    /// assert!(ev.req_is_in_progress(req)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_cancel<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<bool, Error> {
        let Some(mut f) = self.req_node(req)?.cancel.take() else {
            return Ok(false);
        };
        let r = f(self, req);
        if let Ok(n) = self.heap.get_mut(req.node) {
            if n.cancel.is_none() && !matches!(n.status, Status::Received) {
                n.cancel = Some(f);
            }
        }
        Ok(r)
    }

    /// Sets the cleanup function (`tevent_req_set_cleanup_fn`): it runs with
    /// the heap, the request and the new state when the request finishes,
    /// and when it is received or freed; at most once per state. The state
    /// is still there when it runs.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tevent::ReqState;
    /// # let mut ev = tevent::Context::new()?;
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let s = seen.clone();
    /// ev.req_set_cleanup_fn(req, move |heap, req, state| {
    ///     assert!(heap.contains(req.state()));
    ///     s.borrow_mut().push(state);
    /// })?;
    /// ev.req_done(req)?;
    /// ev.free(req.erase())?;
    /// assert_eq!(*seen.borrow(), [ReqState::Done, ReqState::Received]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_set_cleanup_fn<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        f: impl FnMut(&mut Talloc, Req<S, E>, ReqState) + 'static,
    ) -> Result<(), Error> {
        self.req_node(req)?.cleanup = Some(Box::new(f));
        Ok(())
    }

    /// Marks the result as taken (`tevent_req_received`): frees the state,
    /// the end-time timer and the trigger, drops the callbacks, and runs the
    /// cleanup function with `Received`. The request object stays until it
    /// is freed.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<String> = ev.req_create(None, String::from("big"))?;
    /// ev.req_done(req)?;
    /// ev.req_received(req)?;
    /// assert!(!ev.heap().contains(req.state()));
    /// assert_eq!(ev.req_state(req)?, tevent::ReqState::Received);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_received<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        self.mark_received(req)?;
        let _ = self.heap.free(req.state);
        Ok(())
    }

    /// [`req_received`](Context::req_received) but for freeing the state.
    fn mark_received<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<(), Error> {
        let n = self.req_node(req)?;
        n.status = Status::Received;
        n.callback = None;
        n.cancel = None;
        n.print = None;
        let (t, im) = (n.endtime.take(), n.trigger.take());
        for p in [t.map(TimerEvent::erase), im.map(Immediate::erase)]
            .into_iter()
            .flatten()
        {
            let _ = self.heap.free(p);
        }
        cleanup(&mut self.heap, req, ReqState::Received);
        Ok(())
    }

    /// A one-line description of the request (`tevent_req_print`): what
    /// the function set by [`req_set_print_fn`](Context::req_set_print_fn)
    /// says, or by default its handle and creation place, its state, its
    /// state's type and handle, its end-time timer and where it finished.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<u32> = ev.req_create(None, 0)?;
    /// let line = ev.req_print(req)?;
    /// assert!(line.starts_with("Req["), "{line}");
    /// assert!(line.contains("InProgress") && line.contains("u32"), "{line}");
    /// ev.req_set_print_fn(req, |ev, req| format!("counter at {}", ev.heap()[req.state()]))?;
    /// assert_eq!(ev.req_print(req)?, "counter at 0");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_req_print")]
    #[doc(alias = "tevent_req_default_print")]
    pub fn req_print<S: 'static, E: 'static>(&self, req: Req<S, E>) -> Result<String, Error> {
        let n = self.heap.get(req.node)?;
        if let Some(f) = &n.print {
            return Ok(f(self, req));
        }
        let finished = n
            .finished_at
            .map_or_else(|| "-".to_string(), profile::place);
        Ok(format!(
            "Req[{:?} created at {}]: {:?}, state {} {:?}, timer {:?}, finished at {}",
            req.node.erase(),
            profile::place(n.created_at),
            n.status.state(),
            std::any::type_name::<S>(),
            req.state.erase(),
            n.endtime,
            finished,
        ))
    }

    /// Sets the function [`req_print`](Context::req_print) calls
    /// (`tevent_req_set_print_fn`); receiving the request drops it, as in C.
    #[doc(alias = "tevent_req_set_print_fn")]
    pub fn req_set_print_fn<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        f: impl Fn(&Context, Req<S, E>) -> String + 'static,
    ) -> Result<(), Error> {
        self.req_node(req)?.print = Some(Box::new(f));
        Ok(())
    }

    /// The result of a finished request, taken (C's `_recv` pattern, as
    /// `tevent_req_simple_recv`): the request's state if it is done, else
    /// why not. A finished request is marked received (see
    /// [`req_received`](Context::req_received)): its cleanup function runs
    /// with `Received` first, then the state's children are freed (C frees
    /// them with the state) and the state moves out of the heap to the
    /// caller. On an error the state is freed, as in C.
    ///
    /// A request whose state or a child of it refuses to go (a destructor)
    /// reads [`ReqError::Gone`] with the heap's error; the refusing objects
    /// stay, as after a refused free.
    ///
    /// ```
    /// use tevent::ReqError;
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<u32, String> = ev.req_create(None, 0)?;
    /// assert_eq!(ev.req_recv(req), Err(ReqError::InProgress));
    /// ev.heap_mut()[req.state()] = 7;
    /// ev.req_done(req)?;
    /// assert_eq!(ev.req_recv(req), Ok(7));         // the state, moved out
    /// assert!(!ev.heap().contains(req.state()));
    /// assert_eq!(ev.req_recv(req), Err(ReqError::Received));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn req_recv<S: 'static, E: 'static>(&mut self, req: Req<S, E>) -> Result<S, ReqError<E>> {
        let n = self.req_node(req).map_err(ReqError::Gone)?;
        let failed = match std::mem::replace(&mut n.status, Status::Received) {
            Status::Done => None,
            Status::Failed(e) => Some(ReqError::Failed(e)),
            Status::TimedOut => Some(ReqError::TimedOut),
            Status::NoMemory => Some(ReqError::NoMemory),
            Status::InProgress => {
                n.status = Status::InProgress;
                return Err(ReqError::InProgress);
            }
            Status::Received => return Err(ReqError::Received),
        };
        if let Some(e) = failed {
            let _ = self.req_received(req);
            return Err(e);
        }
        let _ = self.mark_received(req);
        let gone = |e: talloc::Error| ReqError::Gone(e.into());
        self.heap.free_children(req.state).map_err(gone)?;
        self.heap.take(req.state).map_err(gone)
    }

    /// A request that finishes at `when` (`tevent_wakeup_send`); receive it
    /// with [`req_recv`](Context::req_recv).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// # let mut ev = tevent::Context::new()?;
    /// let t0 = Instant::now();
    /// let req = ev.wakeup_send(None, Duration::from_millis(5))?;
    /// ev.req_poll(req)?;
    /// assert!(t0.elapsed() >= Duration::from_millis(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wakeup_send(
        &mut self,
        parent: impl IntoParent,
        when: impl Into<When>,
    ) -> Result<Req<(), Infallible>, Error> {
        let req = self.req_create(parent, ())?;
        self.add_timer(req.node, when, move |ev, _, _| {
            let _ = ev.req_done(req);
        })?;
        Ok(req)
    }
}
