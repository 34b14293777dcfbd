//! Request profiles (`tevent_req_profile`): where and when a request
//! started and finished, and the same for its sub-requests.
//!
//! A profile is an object in the heap, a child of its request, so it goes
//! with the request unless it is moved out. A request created under the
//! state of a profiled request is profiled too; when it finishes, its
//! profile moves under the parent's profile, as a subprofile that outlives
//! the sub-request.
//!
//! The registry indexes profiles by their request's state, so that creating
//! or finishing a request looks up one map (nothing at all while no request
//! is profiled) instead of searching the heap.

use std::collections::HashMap;
use std::panic::Location;
use std::time::SystemTime;

use talloc::{AnyPtr, IntoParent, Ptr, Talloc};

use crate::{Context, Error, Req, ReqState};

/// What a profiled request recorded (C's `struct tevent_req_profile`).
/// The fields are public: a profile read from another process can be
/// written into one, as C's `tevent_req_profile_set_*` calls do.
///
/// ```
/// # let mut ev = tevent::Context::new()?;
/// let req: tevent::Req<u32> = ev.req_create(None, 0)?;
/// let p = ev.req_set_profile(req)?;
/// ev.req_done(req)?;
/// let profile = &ev.heap()[p];
/// assert_eq!(profile.name, "u32");
/// assert_eq!(profile.state, tevent::ReqState::Done);
/// assert!(profile.stop_time >= Some(profile.start_time));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReqProfile {
    /// The request's state type (C: the state's talloc name).
    pub name: String,
    /// The process that ran the request (C leaves it 0 unless set).
    pub pid: u32,
    /// Where the request was created, `file:line`.
    pub start_location: String,
    /// When the profile started.
    pub start_time: SystemTime,
    /// Where the request finished, `file:line`; empty while in progress.
    pub stop_location: String,
    /// When it finished.
    pub stop_time: Option<SystemTime>,
    /// How it finished (`InProgress` until then).
    pub state: ReqState,
}

impl ReqProfile {
    /// A profile named `name`, started now at `start_location`, in
    /// progress (`tevent_req_profile_create` and its setters).
    ///
    /// ```
    /// let p = tevent::ReqProfile::new("smb2_read", "remote.c:10");
    /// assert_eq!(p.state, tevent::ReqState::InProgress);
    /// assert_eq!(p.pid, std::process::id());
    /// ```
    pub fn new(name: impl Into<String>, start_location: impl Into<String>) -> ReqProfile {
        ReqProfile {
            name: name.into(),
            pid: std::process::id(),
            start_location: start_location.into(),
            start_time: SystemTime::now(),
            stop_location: String::new(),
            stop_time: None,
            state: ReqState::InProgress,
        }
    }
}

/// `file:line` of a caller.
pub(crate) fn place(at: &Location<'_>) -> String {
    format!("{}:{}", at.file(), at.line())
}

/// The profiles of the context's requests, by the handle of each
/// request's state. An entry holds while the profile is still a child of
/// that request; one that no longer does is ignored, and dropped when the
/// index is pruned.
#[derive(Default)]
pub(crate) struct Profiles {
    by_state: HashMap<AnyPtr, Ptr<ReqProfile>>,
    /// Entries after which the next insertion prunes the dead ones.
    prune_at: usize,
}

/// Records a request's end in its profile `p`, and hands the profile to
/// the parent's, if that one is alive. Whether it moved.
fn finish(
    heap: &mut Talloc,
    p: Ptr<ReqProfile>,
    parent: Option<Ptr<ReqProfile>>,
    state: ReqState,
    at: &Location<'_>,
) -> bool {
    if let Ok(profile) = heap.get_mut(p) {
        profile.stop_location = place(at);
        profile.stop_time = Some(SystemTime::now());
        profile.state = state;
    }
    parent
        .filter(|&pp| heap.contains(pp))
        .is_some_and(|pp| heap.steal(pp, p).is_ok())
}

impl Context {
    /// The profile of the request whose state is `state` and whose node is
    /// `node`, if it has one.
    fn profile_at(&self, state: AnyPtr, node: AnyPtr) -> Option<Ptr<ReqProfile>> {
        let p = *self.reg.borrow().profiles.by_state.get(&state)?;
        (self.heap.parent(p).ok()? == Some(node)).then_some(p)
    }

    /// The profile a request created under `parent` reports to: that of the
    /// request whose state `parent` is.
    pub(crate) fn inherited_profile(&self, parent: Option<AnyPtr>) -> Option<Ptr<ReqProfile>> {
        let state = parent?;
        if self.reg.borrow().profiles.by_state.is_empty() {
            return None;
        }
        let owner = self.heap.parent(state).ok()??;
        self.profile_at(state, owner)
    }

    /// A request finished: its profile (if any) records it and moves to
    /// the parent's.
    pub(crate) fn finish_profile<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        parent: Option<Ptr<ReqProfile>>,
        state: ReqState,
        at: &Location<'_>,
    ) {
        let key = req.state().erase();
        let Some(p) = self.profile_at(key, req.erase()) else {
            return;
        };
        if finish(&mut self.heap, p, parent, state, at) {
            self.reg.borrow_mut().profiles.by_state.remove(&key);
        }
    }

    /// Starts profiling the request (`tevent_req_set_profile`): a
    /// [`ReqProfile`] child of the request, named after its state type and
    /// started at its creation place. Sub-requests created under its state
    /// from now on are profiled too.
    ///
    /// [`Error::AlreadyProfiled`] if it has a profile (C fails the request).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// let p = ev.req_set_profile(req)?;
    /// assert_eq!(ev.req_profile(req)?, Some(p));
    /// assert_eq!(ev.req_set_profile(req), Err(tevent::Error::AlreadyProfiled));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_req_set_profile")]
    pub fn req_set_profile<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
    ) -> Result<Ptr<ReqProfile>, Error> {
        let created = self.req_created_at(req)?;
        if self.profile_at(req.state().erase(), req.erase()).is_some() {
            return Err(Error::AlreadyProfiled);
        }
        let profile = ReqProfile::new(std::any::type_name::<S>(), place(created));
        let p = self.heap.alloc(req.erase(), profile)?;
        let mut reg = self.reg.borrow_mut();
        let index = &mut reg.profiles;
        if index.by_state.len() >= index.prune_at {
            let heap = &self.heap;
            index.by_state.retain(|_, p| heap.contains(*p));
            index.prune_at = (2 * index.by_state.len()).max(64);
        }
        index.by_state.insert(req.state().erase(), p);
        Ok(p)
    }

    /// The request's profile, if it has one (`tevent_req_get_profile`).
    /// A finished sub-request has none: its profile moved to its parent's.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// assert_eq!(ev.req_profile(req)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_req_get_profile")]
    pub fn req_profile<S: 'static, E: 'static>(
        &self,
        req: Req<S, E>,
    ) -> Result<Option<Ptr<ReqProfile>>, Error> {
        self.req_created_at(req)?;
        Ok(self.profile_at(req.state().erase(), req.erase()))
    }

    /// Moves the request's profile under `parent`, so that it outlives the
    /// request (`tevent_req_move_profile`, meant for a `_recv` function).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let req: tevent::Req<()> = ev.req_create(None, ())?;
    /// ev.req_set_profile(req)?;
    /// ev.req_done(req)?;
    /// let kept = ev.req_move_profile(req, None)?.expect("profiled");
    /// ev.free(req.erase())?;
    /// assert_eq!(ev.heap()[kept].state, tevent::ReqState::Done);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_req_move_profile")]
    pub fn req_move_profile<S: 'static, E: 'static>(
        &mut self,
        req: Req<S, E>,
        parent: impl IntoParent,
    ) -> Result<Option<Ptr<ReqProfile>>, Error> {
        let Some(p) = self.req_profile(req)? else {
            return Ok(None);
        };
        self.heap.steal(parent, p)?;
        self.reg
            .borrow_mut()
            .profiles
            .by_state
            .remove(&req.state().erase());
        Ok(Some(p))
    }

    /// The subprofiles of a profile, in the order the sub-requests finished
    /// (`tevent_req_profile_get_subprofiles` and `tevent_req_profile_next`).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// let outer: tevent::Req<()> = ev.req_create(None, ())?;
    /// let p = ev.req_set_profile(outer)?;
    /// let inner: tevent::Req<u8> = ev.req_create(outer.state(), 0)?;  // under the state
    /// ev.req_done(inner)?;
    /// let subs = ev.profile_subprofiles(p)?;
    /// assert_eq!(subs.len(), 1);
    /// assert_eq!(ev.heap()[subs[0]].name, "u8");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_req_profile_get_subprofiles")]
    #[doc(alias = "tevent_req_profile_next")]
    pub fn profile_subprofiles(&self, p: Ptr<ReqProfile>) -> Result<Vec<Ptr<ReqProfile>>, Error> {
        let mut subs: Vec<_> = self
            .heap
            .children(p)?
            .filter_map(|c| self.heap.downcast::<ReqProfile>(c).ok())
            .collect();
        // Children come newest first.
        subs.reverse();
        Ok(subs)
    }
}
