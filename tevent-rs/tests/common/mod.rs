//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

/// Runs each named test function (taking a backend name) on every backend:
/// `both!(a, b)` makes `epoll::a`, `poll::a`, `epoll::b`, `poll::b`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $( #[test] fn $name() { super::$name("epoll") } )*
        }
        mod poll {
            $( #[test] fn $name() { super::$name("poll") } )*
        }
    };
}

/// A shared log that callbacks push to.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }
    pub fn push(&self, s: impl Into<String>) {
        self.0.borrow_mut().push(s.into());
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
    pub fn get(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// A connected pair of non-blocking Unix stream sockets.
pub fn pair() -> (
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
) {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// A context on `backend` whose idle wait is short, so a test that goes
/// wrong fails instead of hanging for 30 s.
pub fn ctx(backend: &str) -> tevent::Context {
    let mut ev = tevent::Context::with_backend(backend).expect("context");
    ev.set_wait_timeout(std::time::Duration::from_secs(5));
    ev
}

/// Whether the peer of `s` was closed (reads EOF).
pub fn peer_closed(s: &std::os::unix::net::UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 1];
    match (&*s).read(&mut buf) {
        Ok(0) => true,
        // Closing a socket with unread data resets the connection.
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}
