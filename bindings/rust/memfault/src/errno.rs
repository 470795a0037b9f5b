// SPDX-License-Identifier: MIT
//! [`Errno`]: the error of every fallible call.

use std::ffi::{c_char, c_int, CStr};
use std::fmt;

/// A positive `errno` value: libmemfault returns its negation on failure.
///
/// `Display` gives the C library's `strerror()` text and the symbolic name
/// when it is known.
///
/// ```
/// use memfault::Errno;
///
/// let e = Errno::EINVAL;
/// assert_eq!(e.get(), 22);
/// assert_eq!(e.name(), Some("EINVAL"));
/// assert_eq!(e.to_string(), "Invalid argument (EINVAL)");
/// assert_eq!(Errno::from_ret(-22), Err(Errno::EINVAL));
/// assert_eq!(Errno::from_ret(3), Ok(3));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(i32);

macro_rules! errnos {
    ($($name:ident = $value:expr),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($value), " on Linux).")]
                pub const $name: Errno = Errno($value);
            )*

            /// The symbolic name (`"EINVAL"`), for the values this crate knows.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

// The values libmemfault and KVM return (Linux, the same on x86-64 and arm64).
errnos! {
    EPERM = 1,
    ENOENT = 2,
    EINTR = 4,
    EIO = 5,
    EBADF = 9,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ENOTTY = 25,
    ENOSPC = 28,
    ERANGE = 34,
    ENOSYS = 38,
    ELOOP = 40,
    ENODATA = 61,
    EPROTO = 71,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
    ETIMEDOUT = 110,
    ECANCELED = 125,
    EHWPOISON = 133,
}

extern "C" {
    // The XSI strerror_r(); glibc exports it under this name (as std does).
    #[cfg_attr(target_env = "gnu", link_name = "__xpg_strerror_r")]
    fn strerror_r(errnum: c_int, buf: *mut c_char, buflen: usize) -> c_int;
}

impl Errno {
    /// What a handler's panic (Rust) or exception (Python) becomes: the run
    /// loop gets `-ECANCELED` and returns it as `Err(Errno::HANDLER_FAILED)`.
    pub const HANDLER_FAILED: Errno = Errno::ECANCELED;

    /// An errno from its positive value; `None` unless `1 <= value <= 4095`.
    pub const fn new(value: i32) -> Option<Errno> {
        if value > 0 && value < 4096 {
            Some(Errno(value))
        } else {
            None
        }
    }

    /// The positive value.
    pub const fn get(self) -> i32 {
        self.0
    }

    /// A C return value: `Ok(ret)` when `ret >= 0`, else `Err(-ret)`.
    pub fn from_ret(ret: c_int) -> Result<c_int> {
        if ret >= 0 {
            Ok(ret)
        } else {
            Err(Errno(ret.checked_neg().unwrap_or(i32::MAX)))
        }
    }

    /// The `errno` of the calling thread (after a failed system call).
    pub fn last_os_error() -> Errno {
        let raw = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Errno::new(raw).unwrap_or(Errno::EIO)
    }

    /// The C library's description (`strerror()`), e.g. "Invalid argument".
    pub fn description(self) -> String {
        let mut buf = [0 as c_char; 128];
        // SAFETY: the buffer is valid for its length; the XSI variant always
        // NUL-terminates on success.
        let r = unsafe { strerror_r(self.0, buf.as_mut_ptr(), buf.len()) };
        if r != 0 {
            return format!("Unknown error {}", self.0);
        }
        // SAFETY: NUL-terminated by strerror_r.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.description()),
            None => write!(f, "{} (errno {})", self.description(), self.0),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Errno({name})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// The result of every fallible call.
pub type Result<T> = std::result::Result<T, Errno>;

/// A C return value as a `Result` of the non-negative value.
pub(crate) fn check(ret: c_int) -> Result<c_int> {
    Errno::from_ret(ret)
}

/// A C return value that is 0 on success.
pub(crate) fn check0(ret: c_int) -> Result<()> {
    Errno::from_ret(ret).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_text() {
        assert_eq!(Errno::EHWPOISON.name(), Some("EHWPOISON"));
        assert_eq!(Errno::new(4095).unwrap().name(), None);
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(4096), None);
        assert_eq!(Errno::ENODATA.description(), "No data available");
        assert_eq!(format!("{:?}", Errno::ELOOP), "Errno(ELOOP)");
        assert!(Errno::new(999).unwrap().to_string().ends_with("(errno 999)"));
        assert_eq!(Errno::from_ret(i32::MIN), Err(Errno(i32::MAX)));
        let io: std::io::Error = Errno::EBUSY.into();
        assert_eq!(io.raw_os_error(), Some(16));
    }
}
