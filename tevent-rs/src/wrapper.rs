//! Wrappers (`tevent_context_wrapper_create`): hooks that run around the
//! handlers of the events created through them, and around code that uses
//! them, such as Samba's "become this user" before a handler and "become
//! root again" after it.
//!
//! C makes a wrapper a second `tevent_context` that shares the main loop;
//! events added on it are wrapped. Here the wrapper is a handle, and
//! [`Context::use_wrapper`] runs a closure "on" it (C's
//! `tevent_context_push_use` / `pop_use`): fd events, timers and signal
//! events added inside, and immediates scheduled inside, are wrapped. A
//! wrapped handler runs on its wrapper too, so what it adds is wrapped as
//! well. Freeing the wrapper frees the events created through it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use talloc::{AnyPtr, IntoParent, Ptr};

use crate::registry::Registry;
use crate::slab::{Id, Slab};
use crate::{Context, Delivery, Error, FdFlags, Immediate, SignalEvent, TimerEvent};

/// What a wrapper does around its events' handlers (C's
/// `struct tevent_wrapper_ops`; the wrapper's own data is `self`). Every
/// method has a default that does nothing.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use tevent::{Context, Wrapped, WrapperHooks};
///
/// struct AsUser { name: &'static str, log: Rc<RefCell<Vec<String>>> }
///
/// impl WrapperHooks for AsUser {
///     fn before_handler(&mut self, _: &Wrapped) {
///         self.log.borrow_mut().push(format!("become {}", self.name));
///     }
///     fn after_handler(&mut self, _: &Wrapped) {
///         self.log.borrow_mut().push("become root".into());
///     }
/// }
///
/// let mut ev = Context::new()?;
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let w = ev.wrapper_create(None, AsUser { name: "alice", log: log.clone() })?;
/// let l = log.clone();
/// ev.use_wrapper(w, |ev| {
///     ev.add_timer(None, Duration::ZERO, move |_, _, _| l.borrow_mut().push("handler".into()))
/// })??;
/// ev.loop_once()?;
/// assert_eq!(*log.borrow(), ["become alice", "handler", "become root"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait WrapperHooks {
    /// Before [`use_wrapper`](Context::use_wrapper) runs its closure;
    /// `false` refuses ([`Error::WrapperRefused`]) and the closure does not
    /// run.
    fn before_use(&mut self) -> bool {
        true
    }

    /// After the closure of [`use_wrapper`](Context::use_wrapper).
    fn after_use(&mut self) {}

    /// Before the handler of one of the wrapper's events.
    fn before_handler(&mut self, event: &Wrapped) {
        let _ = event;
    }

    /// After that handler (also when it panicked).
    fn after_handler(&mut self, event: &Wrapped) {
        let _ = event;
    }
}

/// The handler a [`WrapperHooks`] call is around, with what C passes to
/// its per-kind hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapped {
    /// An fd event (its heap handle) and the flags it is told.
    Fd {
        /// The event.
        event: AnyPtr,
        /// What is ready.
        flags: FdFlags,
    },
    /// A timer and the deadline it was set for.
    Timer {
        /// The timer.
        event: TimerEvent,
        /// When it was due.
        deadline: Instant,
    },
    /// An immediate.
    Immediate(Immediate),
    /// A signal event and its delivery.
    Signal {
        /// The event.
        event: SignalEvent,
        /// The delivery.
        delivery: Delivery,
    },
}

/// A handle to a wrapper: an object in the context's heap, a child of the
/// parent it was created under. Freeing it frees the events created
/// through it.
pub struct Wrapper {
    ptr: Ptr<WrapperNode>,
    id: Id,
}

impl Wrapper {
    /// The type-erased heap handle, to free or steal the wrapper.
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// struct Nothing;
    /// impl tevent::WrapperHooks for Nothing {}
    /// let w = ev.wrapper_create(None, Nothing)?;
    /// ev.free(w.erase())?;
    /// assert_eq!(ev.use_wrapper(w, |_| ()), Err(tevent::Error::Stale));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.ptr.erase()
    }
}

crate::handle_traits!(Wrapper, "Wrapper");

/// The heap object of a wrapper; dropping it drops the hooks (or, while
/// they run, leaves them to be dropped when they are done).
struct WrapperNode {
    id: Id,
    reg: Rc<RefCell<Registry>>,
}

impl Drop for WrapperNode {
    fn drop(&mut self) {
        let gone = self.reg.borrow_mut().wrappers.slab.remove(self.id);
        drop(gone);
    }
}

struct WrapperEntry {
    /// Taken out while they run (the wrapper is busy).
    hooks: Option<Box<dyn WrapperHooks>>,
    node: Option<Ptr<WrapperNode>>,
}

/// A context's wrappers and which events are theirs.
#[derive(Default)]
pub(crate) struct Wrappers {
    slab: Slab<WrapperEntry>,
    /// The events created (immediates: scheduled) through a wrapper.
    bound: HashMap<AnyPtr, Id>,
    /// The wrapper in use: new events are its events.
    current: Option<Id>,
}

impl Wrappers {
    /// The wrapper of the event `p`, if it has one (cheap when no event
    /// has).
    #[inline(always)]
    pub(crate) fn of(&self, p: AnyPtr) -> Option<Id> {
        if self.bound.is_empty() {
            return None;
        }
        self.bound.get(&p).copied()
    }

    /// A new event (or an immediate just scheduled) joins the wrapper in
    /// use, if any; an immediate scheduled outside any leaves its old one.
    #[inline(always)]
    pub(crate) fn bind(&mut self, p: AnyPtr) {
        match self.current {
            Some(w) => {
                self.bound.insert(p, w);
            }
            None => self.unbind(p),
        }
    }

    /// The event `p` is gone.
    #[inline(always)]
    pub(crate) fn unbind(&mut self, p: AnyPtr) {
        if !self.bound.is_empty() {
            self.bound.remove(&p);
        }
    }

    /// Takes out the events of wrapper `w`.
    fn take_events(&mut self, w: Id) -> Vec<AnyPtr> {
        let mine: Vec<AnyPtr> = self
            .bound
            .iter()
            .filter(|(_, id)| **id == w)
            .map(|(p, _)| *p)
            .collect();
        for p in &mine {
            self.bound.remove(p);
        }
        mine
    }
}

/// Puts the wrapper `w` back in use as it was before, and its hooks back,
/// when dropped (even by a panic).
struct InUse {
    reg: Rc<RefCell<Registry>>,
    w: Id,
    previous: Option<Id>,
    hooks: Option<Box<dyn WrapperHooks>>,
}

impl InUse {
    fn hooks(&mut self) -> &mut dyn WrapperHooks {
        self.hooks.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let hooks = self.hooks.take();
        let mut reg = self.reg.borrow_mut();
        reg.wrappers.current = self.previous;
        // The wrapper may have been freed meanwhile: then its hooks go.
        let back = match reg.wrappers.slab.get_mut(self.w) {
            Some(e) if e.hooks.is_none() => {
                e.hooks = hooks;
                None
            }
            _ => hooks,
        };
        drop(reg);
        drop(back);
    }
}

impl Context {
    /// Creates a wrapper with `hooks`, a child of `parent` in the heap
    /// (`tevent_context_wrapper_create`). See [`WrapperHooks`].
    #[doc(alias = "tevent_context_wrapper_create")]
    pub fn wrapper_create(
        &mut self,
        parent: impl IntoParent,
        hooks: impl WrapperHooks + 'static,
    ) -> Result<Wrapper, Error> {
        let id = self
            .reg
            .borrow_mut()
            .wrappers
            .slab
            .insert(WrapperEntry {
                hooks: None,
                node: None,
            })
            .map_err(|_| Error::TooManyEvents)?;
        let node = WrapperNode {
            id,
            reg: self.reg.clone(),
        };
        let ptr = self.heap.alloc_local(parent, node)?;
        let reg = self.reg.clone();
        // Freeing the wrapper frees its events: a destructor, which runs
        // with the heap, before the node goes.
        let set = self.heap.set_destructor(ptr, move |heap, _| {
            let events = reg.borrow_mut().wrappers.take_events(id);
            for e in events {
                let _ = heap.free(e);
            }
            Ok(())
        });
        if let Err(e) = set {
            let _ = self.heap.free(ptr);
            return Err(e.into());
        }
        if let Some(e) = self.reg.borrow_mut().wrappers.slab.get_mut(id) {
            e.hooks = Some(Box::new(hooks));
            e.node = Some(ptr);
        }
        Ok(Wrapper { ptr, id })
    }

    /// Runs `f` on the wrapper (`tevent_context_push_use` ... `pop_use`):
    /// `before_use` first (its `false` is [`Error::WrapperRefused`], and
    /// `f` does not run), `after_use` after. The fd events, timers and
    /// signal events `f` adds, and the immediates it schedules, are the
    /// wrapper's. A wrapper already in use (inside `f`, or inside one of its
    /// handlers) is [`Error::WrapperBusy`]; another wrapper may be used
    /// inside, and its events are its own.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// struct Count(Rc<Cell<u32>>);
    /// impl tevent::WrapperHooks for Count {
    ///     fn before_use(&mut self) -> bool { self.0.set(self.0.get() + 1); true }
    /// }
    /// # let mut ev = tevent::Context::new()?;
    /// let uses = Rc::new(Cell::new(0));
    /// let w = ev.wrapper_create(None, Count(uses.clone()))?;
    /// let inner = ev.use_wrapper(w, |ev| ev.use_wrapper(w, |_| ()))?;
    /// assert_eq!(inner, Err(tevent::Error::WrapperBusy));
    /// assert_eq!(uses.get(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_context_push_use")]
    #[doc(alias = "tevent_context_pop_use")]
    pub fn use_wrapper<R>(
        &mut self,
        w: Wrapper,
        f: impl FnOnce(&mut Context) -> R,
    ) -> Result<R, Error> {
        let mut guard = self.enter_wrapper(w)?;
        if !guard.hooks().before_use() {
            return Err(Error::WrapperRefused);
        }
        let r = self.call(f);
        guard.hooks().after_use();
        drop(guard);
        match r {
            Ok(r) => Ok(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The wrapper in use, if any (C's `tevent_context_is_wrapper` on the
    /// context a handler was given).
    ///
    /// ```
    /// # let mut ev = tevent::Context::new()?;
    /// # struct Nothing;
    /// # impl tevent::WrapperHooks for Nothing {}
    /// let w = ev.wrapper_create(None, Nothing)?;
    /// assert_eq!(ev.current_wrapper(), None);
    /// assert_eq!(ev.use_wrapper(w, |ev| ev.current_wrapper())?, Some(w));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "tevent_context_is_wrapper")]
    pub fn current_wrapper(&self) -> Option<Wrapper> {
        let id = self.reg.borrow().wrappers.current?;
        self.wrapper_handle(id)
    }

    /// The handle of the live wrapper `id`.
    fn wrapper_handle(&self, id: Id) -> Option<Wrapper> {
        let ptr = self.reg.borrow().wrappers.slab.get(id)?.node?;
        Some(Wrapper { ptr, id })
    }

    /// Makes `w` the wrapper in use, its hooks taken out, until the guard
    /// drops.
    fn enter_wrapper(&mut self, w: Wrapper) -> Result<InUse, Error> {
        self.heap.get(w.ptr)?;
        let mut reg = self.reg.borrow_mut();
        let entry = reg.wrappers.slab.get_mut(w.id).ok_or(Error::Stale)?;
        let hooks = entry.hooks.take().ok_or(Error::WrapperBusy)?;
        let previous = reg.wrappers.current.replace(w.id);
        Ok(InUse {
            reg: self.reg.clone(),
            w: w.id,
            previous,
            hooks: Some(hooks),
        })
    }

    /// Runs the handler `f` of `event`: inside its wrapper's hooks if it has
    /// one, else as [`call`](Context::call) does.
    #[inline(always)]
    pub(crate) fn call_handler<R>(
        &mut self,
        event: AnyPtr,
        what: impl FnOnce() -> Wrapped,
        f: impl FnOnce(&mut Context) -> R,
    ) -> Result<R, Box<dyn std::any::Any + Send>> {
        let w = self.reg.borrow().wrappers.of(event);
        match w {
            None => self.call(f),
            Some(w) => self.call_wrapped(w, what(), f),
        }
    }

    /// Runs an event's handler `f` inside its wrapper's hooks, if it has
    /// a wrapper that is not busy (a busy one runs the handler bare, as
    /// C's nested use would abort). Catches a panic of `f` as
    /// [`call`](Context::call) does, after the after-hook ran.
    fn call_wrapped<R>(
        &mut self,
        w: Id,
        what: Wrapped,
        f: impl FnOnce(&mut Context) -> R,
    ) -> Result<R, Box<dyn std::any::Any + Send>> {
        let handle = self.wrapper_handle(w);
        let guard = handle.and_then(|w| self.enter_wrapper(w).ok());
        let Some(mut guard) = guard else {
            return self.call(f);
        };
        guard.hooks().before_handler(&what);
        let r = self.call(f);
        guard.hooks().after_handler(&what);
        r
    }
}
