//! [`ThreadProxy`]: send a subtree and a handler to another thread's loop.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use talloc::{AnyPtr, DetachError, IntoParent, Parcel, Ptr, Talloc};
use tevent::{CallbackError, Context, HandlerResult, Immediate, Remote, RemoteTask};

use crate::{DeliveryError, SendError, SendValueError};

/// What the destination and every sender share.
struct Shared {
    remote: Remote,
    /// Cleared when the proxy object is freed on the destination.
    open: AtomicBool,
}

/// The proxy's object in the destination heap: freeing it (or an ancestor,
/// or the whole context) closes the proxy.
struct ProxyNode {
    shared: Arc<Shared>,
}

impl Drop for ProxyNode {
    fn drop(&mut self) {
        self.shared.open.store(false, Ordering::Release);
    }
}

/// A thread proxy (`tevent_thread_proxy_create`): the destination side, an
/// object in the destination loop's heap, child of the parent it was created
/// under. Other threads reach it through [`ProxySender`]s.
///
/// Freeing the proxy object stops delivery: messages already queued and not
/// yet delivered are then freed on the destination (their handlers do not
/// run), and later sends fail with [`SendError::Gone`], data handed back.
///
/// ```
/// use tevent::Context;
/// use tevent_thread::{SendError, ThreadProxy};
/// let mut ev = Context::new()?;
/// let proxy = ThreadProxy::new(&mut ev, None)?;
/// let sender = proxy.sender(&ev)?;
/// ev.free(proxy)?;                     // closes the proxy
/// let mut heap = talloc::Talloc::new();
/// let data = heap.alloc_str(None, "x")?;
/// match sender.send(&mut heap, data, |_, _| ()) {
///     Err(SendError::Gone { data: back }) => assert_eq!(&heap[back], "x"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadProxy(Ptr<ProxyNode>);

impl fmt::Debug for ThreadProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadProxy({:?})", self.0.erase())
    }
}

/// The proxy is its heap object's handle: free it, steal it, or name it as
/// a parent with no `erase()`, like tevent's event handles.
impl From<ThreadProxy> for AnyPtr {
    fn from(p: ThreadProxy) -> AnyPtr {
        p.0.erase()
    }
}

impl IntoParent for ThreadProxy {
    fn into_parent(self) -> Option<AnyPtr> {
        Some(self.0.erase())
    }
}

impl ThreadProxy {
    /// Creates a proxy on the destination loop `ev`, a child of `parent` in
    /// its heap (`None`: top level).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let owner = ev.heap_mut().new_context(None)?;
    /// let proxy = tevent_thread::ThreadProxy::new(&mut ev, owner)?;
    /// assert_eq!(ev.heap().parent(proxy.erase())?, Some(owner.erase()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(ev: &mut Context, parent: impl IntoParent) -> Result<ThreadProxy, tevent::Error> {
        let shared = Arc::new(Shared {
            remote: ev.remote()?,
            open: AtomicBool::new(true),
        });
        let node = ev.heap_mut().alloc_local(parent, ProxyNode { shared })?;
        ev.heap_mut().set_name_const(node, "tevent_thread_proxy")?;
        Ok(ThreadProxy(node))
    }

    /// A handle for other threads (`Send + Sync`, cheap to clone).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let proxy = tevent_thread::ThreadProxy::new(&mut ev, None)?;
    /// let sender = proxy.sender(&ev)?;
    /// std::thread::spawn(move || assert!(sender.is_alive())).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sender(self, ev: &Context) -> Result<ProxySender, tevent::Error> {
        let node = ev.heap().get(self.0)?;
        Ok(ProxySender {
            shared: node.shared.clone(),
            node: self.0,
        })
    }

    /// The proxy object's handle, to free or steal it through the heap.
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let owner = ev.heap_mut().new_context(None)?;
    /// let proxy = tevent_thread::ThreadProxy::new(&mut ev, None)?;
    /// let sender = proxy.sender(&ev)?;
    /// ev.heap_mut().steal_any(owner, proxy.erase())?;  // the proxy now lives as long as `owner`
    /// ev.free(owner)?;
    /// assert!(!sender.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(self) -> AnyPtr {
        self.0.erase()
    }
}

/// The sending side of a [`ThreadProxy`]: `Send + Sync`, cheap to clone.
///
/// ```
/// use tevent_thread::ThreadProxy;
/// let mut ev = tevent::Context::new()?;
/// let sender = ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
/// let workers: Vec<_> = (0..3u32)
///     .map(|i| {
///         let sender = sender.clone();            // one per thread
///         std::thread::spawn(move || {
///             let mut heap = talloc::Talloc::new();
///             let n = heap.alloc(None, i).unwrap();
///             sender.send(&mut heap, n, |ev, n| { ev.heap_mut().steal(None, n).unwrap(); }).unwrap();
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// for _ in 0..3 {
///     ev.loop_once()?;
/// }
/// // The proxy object and the three numbers the handlers kept.
/// assert_eq!(ev.heap().top_level().count(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProxySender {
    shared: Arc<Shared>,
    /// The proxy object in the destination heap: a letter checks it there.
    node: Ptr<ProxyNode>,
}

impl fmt::Debug for ProxySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySender")
            .field("open", &self.is_alive())
            .finish()
    }
}

impl ProxySender {
    /// Whether the proxy and its loop are still there (a send may still find
    /// them gone a moment later).
    ///
    /// ```
    /// let mut ev = tevent::Context::new()?;
    /// let sender = tevent_thread::ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
    /// assert!(sender.is_alive());
    /// drop(ev);
    /// assert!(!sender.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.shared.open.load(Ordering::Acquire) && self.shared.remote.is_alive()
    }

    /// Moves the subtree of `data` out of `heap` and runs `handler` with it
    /// on the destination loop, as an immediate (`tevent_thread_proxy_schedule`).
    ///
    /// Before anything moves, the whole subtree is checked against the
    /// transfer rules of [`Talloc::detach`]; a refusal is
    /// [`SendError::Transfer`] naming the first offending object, and the
    /// subtree stays exactly where it was. On success every handle into the
    /// subtree is stale in `heap`.
    ///
    /// On the destination the data is attached under a fresh delivery
    /// context; unless the handler steals it elsewhere, it is freed right
    /// after the handler, as in C. Messages from one sender arrive in the
    /// order they were sent (C's proxy reverses the order within a batch).
    ///
    /// ```
    /// use tevent::Context;
    /// use tevent_thread::ThreadProxy;
    /// let mut ev = Context::new()?;
    /// let inbox = ev.heap_mut().new_context(None)?;
    /// let sender = ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
    /// std::thread::spawn(move || {
    ///     let mut heap = talloc::Talloc::new();
    ///     let job = heap.alloc_slice(None, &[1u32, 2, 3]).unwrap();
    ///     sender.send(&mut heap, job, move |ev, job| {
    ///         ev.heap_mut().steal(inbox, job).unwrap(); // keep it
    ///     }).unwrap();
    /// }).join().unwrap();
    /// ev.loop_once()?;
    /// let job = ev.heap().children(inbox)?.next().unwrap();
    /// let job = ev.heap().downcast::<[u32]>(job)?;
    /// assert_eq!(&ev.heap()[job], &[1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<T, H, R>(
        &self,
        heap: &mut Talloc,
        data: Ptr<T>,
        handler: H,
    ) -> Result<(), SendError<T>>
    where
        T: ?Sized + 'static,
        H: FnOnce(&mut Context, Ptr<T>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let home = heap.parent(data).map_err(|e| SendError::Handle(e.into()))?;
        if !self.shared.open.load(Ordering::Acquire) {
            return Err(SendError::Gone { data });
        }
        let parcel = match heap.detach(data) {
            Ok(p) => p,
            Err(DetachError::Transfer(e)) => return Err(SendError::Transfer(e)),
            Err(DetachError::Handle(e)) => return Err(SendError::Handle(e.into())),
        };
        match self.post(parcel, handler) {
            Ok(()) => Ok(()),
            Err(parcel) => {
                // Put the subtree back where it was (its old parent is alive:
                // only this thread could have freed it).
                let data = match heap.attach(home, parcel) {
                    Ok(d) => d,
                    Err(e) => heap
                        .attach(None, e.parcel)
                        .expect("the top level always accepts"),
                };
                Err(SendError::Gone { data })
            }
        }
    }

    /// Sends a plain value, with no heap on the sender's side: it is
    /// allocated straight into the message, and `handler` gets it as an
    /// object in the destination heap (freed after the handler unless
    /// stolen, as with [`send`](ProxySender::send)). The value must be
    /// `Send`; no other transfer rule applies to a single fresh value. If
    /// the destination is gone the value comes back.
    ///
    /// ```
    /// use tevent::Context;
    /// use tevent_thread::ThreadProxy;
    /// let mut ev = Context::new()?;
    /// let sender = ThreadProxy::new(&mut ev, None)?.sender(&ev)?;
    /// std::thread::spawn(move || {
    ///     sender.send_value(String::from("ready"), |ev, msg| {
    ///         assert_eq!(ev.heap().get(msg)?, "ready");
    ///         Ok(())
    ///     })
    /// })
    /// .join()
    /// .unwrap()?;
    /// ev.loop_once()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_value<T, H, R>(&self, value: T, handler: H) -> Result<(), SendValueError<T>>
    where
        T: Send + 'static,
        H: FnOnce(&mut Context, Ptr<T>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        if !self.shared.open.load(Ordering::Acquire) {
            return Err(SendValueError::Gone(value));
        }
        let parcel = Parcel::new(value).map_err(|(e, v)| SendValueError::Failed(e.into(), v))?;
        match self.post(parcel, handler) {
            Ok(()) => Ok(()),
            Err(parcel) => {
                // Unpack the value through a heap of its own (an error path).
                let mut heap = Talloc::new();
                let p = heap
                    .attach(None, parcel)
                    .expect("a one-value parcel attaches at the top level");
                Err(SendValueError::Gone(
                    heap.take(p).expect("a fresh object has no references"),
                ))
            }
        }
    }

    /// Queues a letter for the destination; if its loop is gone, the letter
    /// comes back whole (a typed task) and its parcel is handed back.
    fn post<T, H, R>(&self, parcel: Parcel<T>, handler: H) -> Result<(), Parcel<T>>
    where
        T: ?Sized + 'static,
        H: FnOnce(&mut Context, Ptr<T>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        let letter = Box::new(Letter {
            parcel,
            node: self.node,
            handler,
            _result: PhantomData,
        });
        self.shared
            .remote
            .schedule_task(letter)
            .map_err(|back| back.into_inner().parcel)
    }

    /// C's calling convention: the sender's immediate and private data both
    /// leave the sender's loop. `im` (an unscheduled immediate of `ev`) is
    /// freed there; on the destination the handler gets a fresh immediate
    /// and the data, both under the delivery context (freed after the
    /// handler unless stolen).
    ///
    /// ```
    /// use tevent::Context;
    /// use tevent_thread::ThreadProxy;
    /// let mut dest = Context::new()?;
    /// let sender = ThreadProxy::new(&mut dest, None)?.sender(&dest)?;
    /// std::thread::spawn(move || {
    ///     let mut ev = Context::new().unwrap();
    ///     let im = ev.create_immediate(None).unwrap();
    ///     let msg = ev.heap_mut().alloc_str(None, "ping").unwrap();
    ///     sender.schedule(&mut ev, im, msg, |ev, _im, msg| {
    ///         assert_eq!(&ev.heap()[msg], "ping");
    ///     }).unwrap();
    ///     assert!(!ev.heap().contains(im.erase()));
    /// }).join().unwrap();
    /// dest.loop_once()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule<T, H, R>(
        &self,
        ev: &mut Context,
        im: Immediate,
        data: Ptr<T>,
        handler: H,
    ) -> Result<(), SendError<T>>
    where
        T: ?Sized + 'static,
        H: FnOnce(&mut Context, Immediate, Ptr<T>) -> R + Send + 'static,
        R: HandlerResult + 'static,
    {
        match ev.immediate_is_scheduled(im) {
            Ok(false) => {}
            Ok(true) => return Err(SendError::ImmediateScheduled),
            Err(e) => return Err(SendError::Handle(e)),
        }
        self.send(
            ev.heap_mut(),
            data,
            move |ev, data| -> Result<(), CallbackError> {
                let parent = ev.heap().parent(data).ok().flatten();
                // No room for the immediate: the message is lost, and said so.
                let im = ev
                    .create_immediate(parent)
                    .map_err(|error| DeliveryError { error })?;
                handler(ev, im, data).into_result()
            },
        )?;
        // The immediate is the sender's handle on this message: it goes.
        let _ = ev.free(im);
        Ok(())
    }
}

/// The delivery context's type (its name in reports).
struct Delivery;

/// One message on its way: the parcel, and the handler to run with it.
/// A letter is only ever dropped unrun on the destination's thread (its loop
/// went away with it queued: the context drops its queue), or handed back
/// whole to the sender that could not queue it; either way the parcel, and
/// the data in it, go on a thread that owns them.
struct Letter<T: ?Sized, H, R> {
    parcel: Parcel<T>,
    /// The proxy object in the destination heap.
    node: Ptr<ProxyNode>,
    handler: H,
    _result: PhantomData<fn() -> R>,
}

impl<T, H, R> RemoteTask for Letter<T, H, R>
where
    T: ?Sized + 'static,
    H: FnOnce(&mut Context, Ptr<T>) -> R + Send + 'static,
    R: HandlerResult + 'static,
{
    /// Runs on the destination loop.
    fn run(self: Box<Self>, ev: &mut Context) {
        let Letter {
            parcel,
            node,
            handler,
            ..
        } = *self;
        if !ev.heap().contains(node) {
            // The proxy was freed: undelivered data is freed here, as the
            // receiver asked by freeing it.
            drop(parcel);
            return;
        }
        let heap = ev.heap_mut();
        let attached = heap
            .alloc(None, Delivery)
            .map_err(talloc::Error::from)
            .and_then(|d| {
                heap.attach(d, parcel).map(|data| (d, data)).map_err(|e| {
                    let _ = heap.free(d);
                    e.error
                })
            });
        let (delivery, data) = match attached {
            Ok(got) => got,
            Err(error) => {
                // The data is freed with the parcel; the loop hears why.
                let error = error.into();
                ev.report(Err::<(), _>(DeliveryError { error }.into()));
                return;
            }
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| handler(ev, data)));
        // Whatever the handler did not steal goes now, even if it panicked.
        let _ = ev.heap_mut().free(delivery);
        match result {
            Ok(r) => ev.report(r),
            Err(p) => panic::resume_unwind(p),
        }
    }
}
