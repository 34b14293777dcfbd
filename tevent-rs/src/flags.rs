//! [`FdFlags`]: what an fd event watches for, and what its handler is told.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// The conditions of an fd event: `READ`, `WRITE` and `ERROR`
/// (C's `TEVENT_FD_READ`, `TEVENT_FD_WRITE` and, from tevent 0.16,
/// `TEVENT_FD_ERROR`).
///
/// An event asks for some of them; its handler gets the ready ones, masked
/// to what it asked for. A hang-up or error on the fd is reported as `READ`
/// to an event that asked for `READ` (as C does), and as `ERROR` to one that
/// asked for `ERROR`; an event that asked only for `WRITE` is not called,
/// its `WRITE` is switched off instead (tevent's rule E9).
///
/// ```
/// use tevent::FdFlags;
/// let both = FdFlags::READ | FdFlags::WRITE;
/// assert!(both.contains(FdFlags::READ));
/// assert_eq!(both & !FdFlags::WRITE, FdFlags::READ);
/// assert!(FdFlags::empty().is_empty());
/// assert_eq!(format!("{both:?}"), "FdFlags(READ | WRITE)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FdFlags(u8);

impl FdFlags {
    /// The fd is readable (or hung up, or in error, see above).
    pub const READ: FdFlags = FdFlags(1);
    /// The fd is writable.
    pub const WRITE: FdFlags = FdFlags(2);
    /// The fd hung up or is in error.
    pub const ERROR: FdFlags = FdFlags(4);

    /// No condition: the event stays registered but silent.
    ///
    /// ```
    /// assert_eq!(tevent::FdFlags::empty().bits(), 0);
    /// ```
    pub const fn empty() -> FdFlags {
        FdFlags(0)
    }

    /// All three conditions.
    ///
    /// ```
    /// assert_eq!(tevent::FdFlags::all().bits(), 7);
    /// ```
    pub const fn all() -> FdFlags {
        FdFlags(7)
    }

    /// The C values: `READ` 1, `WRITE` 2, `ERROR` 4.
    ///
    /// ```
    /// assert_eq!(tevent::FdFlags::WRITE.bits(), 2);
    /// ```
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from C values; unknown bits are dropped.
    ///
    /// ```
    /// use tevent::FdFlags;
    /// assert_eq!(FdFlags::from_bits_truncate(0xff), FdFlags::all());
    /// ```
    pub const fn from_bits_truncate(bits: u8) -> FdFlags {
        FdFlags(bits & 7)
    }

    /// Whether no condition is set.
    ///
    /// ```
    /// assert!(!tevent::FdFlags::READ.is_empty());
    /// ```
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every condition of `other` is set.
    ///
    /// ```
    /// use tevent::FdFlags;
    /// assert!(FdFlags::all().contains(FdFlags::READ | FdFlags::ERROR));
    /// ```
    pub const fn contains(self, other: FdFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether some condition of `other` is set.
    ///
    /// ```
    /// use tevent::FdFlags;
    /// assert!(FdFlags::READ.intersects(FdFlags::READ | FdFlags::WRITE));
    /// ```
    pub const fn intersects(self, other: FdFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for FdFlags {
    type Output = FdFlags;
    fn bitor(self, rhs: FdFlags) -> FdFlags {
        FdFlags(self.0 | rhs.0)
    }
}
impl BitOrAssign for FdFlags {
    fn bitor_assign(&mut self, rhs: FdFlags) {
        self.0 |= rhs.0;
    }
}
impl BitAnd for FdFlags {
    type Output = FdFlags;
    fn bitand(self, rhs: FdFlags) -> FdFlags {
        FdFlags(self.0 & rhs.0)
    }
}
impl BitAndAssign for FdFlags {
    fn bitand_assign(&mut self, rhs: FdFlags) {
        self.0 &= rhs.0;
    }
}
impl Not for FdFlags {
    type Output = FdFlags;
    fn not(self) -> FdFlags {
        FdFlags(!self.0 & 7)
    }
}

impl fmt::Debug for FdFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FdFlags(")?;
        let mut first = true;
        for (bit, name) in [
            (FdFlags::READ, "READ"),
            (FdFlags::WRITE, "WRITE"),
            (FdFlags::ERROR, "ERROR"),
        ] {
            if self.contains(bit) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("empty")?;
        }
        f.write_str(")")
    }
}
