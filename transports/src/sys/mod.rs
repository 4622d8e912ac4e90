//! The operating system behind one door. Everything OS-specific is in a submodule per
//! platform; the rest of the crate imports `crate::sys::…` only.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "procactor-transports supports Linux only today: it needs memfd, futex, pidfd, \
     SCM_RIGHTS and PR_SET_PDEATHSIG (a macOS port needs sys/macos with shm_open, \
     ulock/os_sync, kqueue process events and SCM_RIGHTS)"
);
