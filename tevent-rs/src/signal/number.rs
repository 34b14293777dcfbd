//! [`Signal`] and [`SaFlags`]: the crate's own signal number and handler
//! flags, so that no type of the system-call crate underneath is part of
//! the public API.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use nix::libc;

/// A signal number that can have a handler: one of the standard signals 1
/// to 31 (the names are Linux's).
///
/// ```
/// use tevent::Signal;
/// assert_eq!(Signal::SIGUSR1.number(), 10);
/// assert_eq!(Signal::new(15), Some(Signal::SIGTERM));
/// assert_eq!(Signal::new(40), None);                 // real-time: not supported
/// assert_eq!(format!("{:?}", Signal::SIGHUP), "SIGHUP");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident),* $(,)?) => {
        impl Signal {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Signal = Signal(libc::$name);
            )*

            /// The signal's name, such as `"SIGTERM"`.
            ///
            /// ```
            /// assert_eq!(tevent::Signal::SIGINT.name(), "SIGINT");
            /// ```
            pub fn name(self) -> &'static str {
                match self.0 {
                    $( libc::$name => stringify!($name), )*
                    _ => "SIG?",
                }
            }
        }
    };
}

signals!(
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN,
    SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS,
);

impl Signal {
    /// The signal numbered `n`, if it is a standard signal (1 to 31).
    pub fn new(n: i32) -> Option<Signal> {
        (1..32).contains(&n).then_some(Signal(n))
    }

    /// The signal's number.
    pub const fn number(self) -> i32 {
        self.0
    }

    /// The same signal for the system calls.
    pub(crate) fn to_nix(self) -> nix::sys::signal::Signal {
        nix::sys::signal::Signal::try_from(self.0).expect("1 to 31 are nix signals")
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flags of a signal handler: C's `sa_flags`, of which tevent takes
/// three.
///
/// ```
/// use tevent::SaFlags;
/// let f = SaFlags::SA_RESTART | SaFlags::SA_SIGINFO;
/// assert!(f.contains(SaFlags::SA_SIGINFO));
/// assert!(!f.contains(SaFlags::SA_RESETHAND));
/// assert_eq!(format!("{f:?}"), "SaFlags(SA_RESTART | SA_SIGINFO)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SaFlags(u8);

impl SaFlags {
    /// Interrupted system calls restart (for the process's first handler
    /// of a signal, which makes the action).
    pub const SA_RESTART: SaFlags = SaFlags(1);
    /// The handler is freed after its first call.
    pub const SA_RESETHAND: SaFlags = SaFlags(2);
    /// One call per delivery, with its [`SigInfo`](crate::SigInfo).
    pub const SA_SIGINFO: SaFlags = SaFlags(4);

    /// No flag.
    pub const fn empty() -> SaFlags {
        SaFlags(0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: SaFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for SaFlags {
    type Output = SaFlags;
    fn bitor(self, rhs: SaFlags) -> SaFlags {
        SaFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for SaFlags {
    fn bitor_assign(&mut self, rhs: SaFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for SaFlags {
    type Output = SaFlags;
    fn bitand(self, rhs: SaFlags) -> SaFlags {
        SaFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for SaFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (SaFlags::SA_RESTART, "SA_RESTART"),
            (SaFlags::SA_RESETHAND, "SA_RESETHAND"),
            (SaFlags::SA_SIGINFO, "SA_SIGINFO"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "SaFlags({})", set.join(" | "))
    }
}
