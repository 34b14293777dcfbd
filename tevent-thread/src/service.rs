//! [`Service`]: typed request and reply between loops, the pair of proxies
//! of C's master/worker pattern behind two calls.
//!
//! The serving loop makes a [`Service`] with the function that serves; any
//! thread gets a [`Client`] from it. [`Client::call`] sends a request
//! value from the caller's own loop and names the callback that gets the
//! reply there. Underneath, each call makes a reply proxy on the caller's
//! loop, a child of the parent the caller names: freeing that parent
//! cancels the call (the reply, if it still comes, is dropped on arrival),
//! and a request that the server drops without answering, or that dies
//! with the server's loop, comes back as [`CallError::NoReply`]. No reply
//! is lost without a word and no callback runs twice.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use talloc::{IntoParent, Ptr};
use tevent::{CallbackError, Context, HandlerResult};

use crate::{ProxySender, SendValueError, ThreadProxy};

/// The serving function as it is kept in the serving loop's heap.
type ServeFn<Q, A> = Box<dyn FnMut(&mut Context, Q, Responder<A>) -> Result<(), CallbackError>>;

/// The caller's reply callback, kept in the caller's heap.
type ReplyFn<A> = Box<dyn FnOnce(&mut Context, Result<A, CallError>) -> Result<(), CallbackError>>;

/// The serving function's heap object (a child of the service's proxy).
struct Server<Q, A: 'static>(Option<ServeFn<Q, A>>);

/// The reply callback's heap object (a child of the call's reply proxy).
struct Waiting<A>(Option<ReplyFn<A>>);

/// A service on a loop: requests of type `Q` come in, replies of type `A`
/// go back. It is an object in the serving loop's heap (a thread proxy,
/// with the serving function under it); freeing it, or an ancestor, or the
/// loop, closes it.
///
/// ```
/// use tevent::Context;
/// use tevent_thread::Service;
///
/// let mut server = Context::new()?;
/// let squares = Service::new(&mut server, None, |_, n: u64, reply| {
///     reply.send(n * n)?;                                 // or keep `reply`, answer later
///     Ok(())
/// })?;
/// let client = squares.client(&server)?;
///
/// let worker = std::thread::spawn(move || -> Result<u64, String> {
///     let mut ev = Context::new().map_err(|e| e.to_string())?;
///     let got = std::rc::Rc::new(std::cell::Cell::new(0));
///     let g = got.clone();
///     client
///         .call(&mut ev, None, 12, move |_, answer| {
///             g.set(answer?);
///             Ok(())
///         })
///         .map_err(|e| e.to_string())?;
///     while got.get() == 0 {
///         ev.loop_once().map_err(|e| e.to_string())?;
///     }
///     Ok(got.get())
/// });
/// while !worker.is_finished() {
///     server.loop_once()?;                               // serves the request
/// }
/// assert_eq!(worker.join().unwrap()?, 144);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Service<Q: 'static, A: 'static> {
    proxy: ThreadProxy,
    server: Ptr<Server<Q, A>>,
}

impl<Q: 'static, A: 'static> Clone for Service<Q, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Q: 'static, A: 'static> Copy for Service<Q, A> {}

impl<Q: 'static, A: 'static> fmt::Debug for Service<Q, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("request", &std::any::type_name::<Q>())
            .field("reply", &std::any::type_name::<A>())
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// The service is its proxy object's handle: `ev.free(service)` closes it.
impl<Q: 'static, A: 'static> From<Service<Q, A>> for talloc::AnyPtr {
    fn from(s: Service<Q, A>) -> talloc::AnyPtr {
        s.proxy.erase()
    }
}

impl<Q: 'static, A: 'static> IntoParent for Service<Q, A> {
    fn into_parent(self) -> Option<talloc::AnyPtr> {
        Some(self.proxy.erase())
    }
}

impl<Q: Send + 'static, A: Send + 'static> Service<Q, A> {
    /// A service on `ev`'s loop, a child of `parent`, that runs `serve`
    /// for each request: it gets the request and a [`Responder`] to answer
    /// with, at once or later (keep it in the heap, answer from a timer).
    /// `serve` may fail like any callback: its error comes out of `ev`'s
    /// `loop_once`.
    pub fn new<F, R>(
        ev: &mut Context,
        parent: impl IntoParent,
        mut serve: F,
    ) -> Result<Self, tevent::Error>
    where
        F: FnMut(&mut Context, Q, Responder<A>) -> R + 'static,
        R: HandlerResult,
    {
        let proxy = ThreadProxy::new(ev, parent)?;
        let boxed: ServeFn<Q, A> =
            Box::new(move |ev, q, responder| serve(ev, q, responder).into_result());
        match ev.heap_mut().alloc_local(proxy, Server(Some(boxed))) {
            Ok(server) => Ok(Service { proxy, server }),
            Err(e) => {
                let _ = ev.free(proxy);
                Err(e.into())
            }
        }
    }

    /// A handle for callers, for any thread (`Send`, `Sync`, `Clone`).
    pub fn client(&self, ev: &Context) -> Result<Client<Q, A>, tevent::Error> {
        Ok(Client {
            to_server: self.proxy.sender(ev)?,
            server: self.server,
        })
    }

    /// The service's proxy object in the serving heap (free it to close
    /// the service).
    pub fn erase(self) -> talloc::AnyPtr {
        self.proxy.erase()
    }
}

/// A caller's handle on a [`Service`]: sends requests to it from any
/// thread's loop.
pub struct Client<Q: 'static, A: 'static> {
    to_server: ProxySender,
    server: Ptr<Server<Q, A>>,
}

impl<Q: 'static, A: 'static> Clone for Client<Q, A> {
    fn clone(&self) -> Self {
        Client {
            to_server: self.to_server.clone(),
            server: self.server,
        }
    }
}

impl<Q: 'static, A: 'static> fmt::Debug for Client<Q, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("alive", &self.to_server.is_alive())
            .finish()
    }
}

impl<Q: Send + 'static, A: Send + 'static> Client<Q, A> {
    /// Sends `request` to the service and runs `on_reply` on `ev`'s loop
    /// (the caller's) with the answer, or with [`CallError::NoReply`] if
    /// the service dropped the request unanswered or its loop went away
    /// first. The call lives under `parent` in the caller's heap: freeing
    /// it cancels the call, and `on_reply` never runs. If the service is
    /// gone already, the request comes back at once.
    pub fn call<H, R>(
        &self,
        ev: &mut Context,
        parent: impl IntoParent,
        request: Q,
        on_reply: H,
    ) -> Result<(), SendValueError<Q>>
    where
        H: FnOnce(&mut Context, Result<A, CallError>) -> R + 'static,
        R: HandlerResult,
    {
        let reply_proxy = match ThreadProxy::new(ev, parent) {
            Ok(p) => p,
            Err(e) => return Err(SendValueError::Failed(e, request)),
        };
        let boxed: ReplyFn<A> = Box::new(move |ev, answer| on_reply(ev, answer).into_result());
        let made = ev
            .heap_mut()
            .alloc_local(reply_proxy, Waiting(Some(boxed)))
            .map_err(tevent::Error::from)
            .and_then(|waiting| Ok((waiting, reply_proxy.sender(ev)?)));
        let (waiting, reply_to) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = ev.free(reply_proxy);
                return Err(SendValueError::Failed(e, request));
            }
        };
        let responder = Responder {
            reply_to: Some(reply_to),
            waiting,
            reply_proxy,
        };
        let server = self.server;
        let sent = self
            .to_server
            .send_value(request, move |ev, q| -> Result<(), CallbackError> {
                let q = ev.heap_mut().take(q)?;
                serve(ev, server, q, responder)
            });
        if sent.is_err() {
            // Nothing went out: the call is over before it began.
            let _ = ev.free(reply_proxy);
        }
        sent
    }
}

impl<Q: Send + 'static, A: Send + 'static> Client<Q, A> {
    /// [`call`](Client::call) as a future, for a task on the caller's loop:
    /// the answer, or why there is none. The call lives under the awaiting
    /// task: freeing the task cancels it, and so does dropping the future.
    ///
    /// # Panics
    /// When polled outside a task of a tevent loop.
    ///
    /// ```
    /// use tevent::Context;
    /// use tevent_thread::Service;
    /// let mut server = Context::new()?;
    /// let double = Service::new(&mut server, None, |_, n: u32, reply| {
    ///     reply.send(2 * n)?;
    ///     Ok(())
    /// })?;
    /// let client = double.client(&server)?;
    /// let caller = std::thread::spawn(move || {
    ///     let mut ev = Context::new().unwrap();
    ///     ev.block_on(async move { client.ask(21).await }).unwrap()
    /// });
    /// while !caller.is_finished() {
    ///     server.loop_once()?;
    /// }
    /// assert_eq!(caller.join().unwrap(), Ok(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ask(&self, request: Q) -> Ask<Q, A> {
        Ask {
            client: self.clone(),
            request: Some(request),
            call: None,
            slot: Rc::default(),
        }
    }
}

/// The future [`Client::ask`] gives.
#[must_use = "futures do nothing unless awaited"]
pub struct Ask<Q: 'static, A: 'static> {
    client: Client<Q, A>,
    /// Until the first poll sends it.
    request: Option<Q>,
    /// The call's own context under the task (freed when the future goes).
    call: Option<talloc::AnyPtr>,
    slot: Rc<RefCell<AskSlot<A>>>,
}

struct AskSlot<A> {
    answer: Option<Result<A, CallError>>,
    waker: Option<Waker>,
}

impl<A> Default for AskSlot<A> {
    fn default() -> Self {
        AskSlot {
            answer: None,
            waker: None,
        }
    }
}

impl<Q, A> fmt::Debug for Ask<Q, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("sent", &self.request.is_none())
            .finish()
    }
}

// Nothing in an `Ask` is pinned: the request is moved out on the first
// poll, never polled in place.
impl<Q, A> Unpin for Ask<Q, A> {}

impl<Q: Send + 'static, A: Send + 'static> Future for Ask<Q, A> {
    type Output = Result<A, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(answer) = this.slot.borrow_mut().answer.take() {
            return Poll::Ready(answer);
        }
        this.slot.borrow_mut().waker = Some(cx.waker().clone());
        if let Some(request) = this.request.take() {
            let (client, slot) = (this.client.clone(), this.slot.clone());
            let sent = tevent::with_task(|ev, task| {
                let call = ev.heap_mut().new_context(task).map_err(|e| e.to_string())?;
                let sent = client.call(ev, call, request, move |_, answer| {
                    let mut s = slot.borrow_mut();
                    s.answer = Some(answer);
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                });
                match sent {
                    Ok(()) => Ok(call),
                    Err(e) => {
                        let _ = ev.free(call);
                        Err(e.to_string())
                    }
                }
            });
            match sent {
                Ok(call) => this.call = Some(call.erase()),
                Err(_) => return Poll::Ready(Err(CallError::Gone)),
            }
        }
        Poll::Pending
    }
}

impl<Q: 'static, A: 'static> Drop for Ask<Q, A> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            // Outside a poll the task is going, and the call with it.
            let _ = tevent::try_with(|ev| ev.free(call));
        }
    }
}

/// Runs the serving function on one request (on the serving loop).
fn serve<Q: 'static, A: 'static>(
    ev: &mut Context,
    server: Ptr<Server<Q, A>>,
    q: Q,
    responder: Responder<A>,
) -> Result<(), CallbackError> {
    // Out of its object while it runs, so that it gets `&mut Context`.
    let Some(mut f) = ev.heap_mut().get_mut(server)?.0.take() else {
        return Err("the service's function is already running".into());
    };
    let r = f(ev, q, responder);
    if let Ok(slot) = ev.heap_mut().get_mut(server) {
        slot.0.get_or_insert(f);
    }
    r
}

/// The serving side's handle on one call: answer it with
/// [`send`](Responder::send), once. Dropping it unanswered tells the
/// caller [`CallError::NoReply`]. It is `Send`: it may be kept anywhere,
/// even sent on to another thread that answers.
pub struct Responder<A: 'static> {
    /// Taken by the answer; still here on drop means no answer went.
    reply_to: Option<ProxySender>,
    /// The caller's callback, in the caller's heap.
    waiting: Ptr<Waiting<A>>,
    /// The call's reply proxy, in the caller's heap.
    reply_proxy: ThreadProxy,
}

impl<A: 'static> fmt::Debug for Responder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("answered", &self.reply_to.is_none())
            .finish()
    }
}

impl<A: Send + 'static> Responder<A> {
    /// Sends the answer to the caller's loop. A caller that is gone (it
    /// freed the call, or its loop ended) cancelled the call: that is not
    /// an error, and the answer is dropped, so `reply.send(v)?` in a serving
    /// function stops only on a real failure (the answer could not be
    /// packed). [`try_send`](Responder::try_send) gives the answer back
    /// instead.
    pub fn send(self, answer: A) -> Result<(), SendValueError<A>> {
        match self.try_send(answer) {
            Err(SendValueError::Gone(_)) => Ok(()),
            r => r,
        }
    }

    /// [`send`](Responder::send), but a caller that is gone is
    /// [`SendValueError::Gone`], with the answer back.
    pub fn try_send(mut self, answer: A) -> Result<(), SendValueError<A>> {
        let reply_to = self.reply_to.take().expect("a responder answers once");
        let (waiting, proxy) = (self.waiting, self.reply_proxy);
        reply_to.send_value(answer, move |ev, a| -> Result<(), CallbackError> {
            let a = ev.heap_mut().take(a)?;
            deliver(ev, waiting, proxy, Ok(a))
        })
    }

    /// Whether the caller still waits (it may stop a moment later).
    pub fn is_alive(&self) -> bool {
        self.reply_to.as_ref().is_some_and(ProxySender::is_alive)
    }
}

impl<A: 'static> Drop for Responder<A> {
    fn drop(&mut self) {
        let Some(reply_to) = self.reply_to.take() else {
            return;
        };
        let (waiting, proxy) = (self.waiting, self.reply_proxy);
        // The caller may be gone too: then nobody is left to tell.
        let _ = reply_to.send_value((), move |ev, _| -> Result<(), CallbackError> {
            deliver::<A>(ev, waiting, proxy, Err(CallError::NoReply))
        });
    }
}

/// Runs the caller's callback with the outcome (on the caller's loop) and
/// ends the call: its reply proxy goes.
fn deliver<A: 'static>(
    ev: &mut Context,
    waiting: Ptr<Waiting<A>>,
    proxy: ThreadProxy,
    outcome: Result<A, CallError>,
) -> Result<(), CallbackError> {
    let f = ev.heap_mut().get_mut(waiting).ok().and_then(|w| w.0.take());
    let _ = ev.free(proxy);
    match f {
        Some(f) => f(ev, outcome),
        None => Ok(()),
    }
}

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The service dropped the request without answering, or its loop
    /// went away before it answered.
    NoReply,
    /// The service was gone when the request was to be sent
    /// ([`Client::ask`]; [`Client::call`] hands the request back instead).
    Gone,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoReply => f.write_str("the service did not answer"),
            CallError::Gone => f.write_str("the service is gone"),
        }
    }
}

impl std::error::Error for CallError {}

// Both handles only name objects and proxies: they cross threads whatever
// `Q` and `A` are (the values themselves must be `Send` to be sent).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client<(), ()>>();
    send_sync::<Responder<()>>();
};
