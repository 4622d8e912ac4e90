//! Linux side of observing a program: abstract Unix stream sockets (a name with no file),
//! the peer's uid (`SO_PEERCRED`), and a process's memory and CPU from `/proc`.

use rustix::fd::AsFd;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

/// Listens on the abstract Unix socket `name` (no file: the name lives in the network
/// namespace, and is gone when the last descriptor on it is closed).
pub fn listen_abstract(name: &str) -> io::Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixListener::bind_addr(&addr)
}

/// Connects to the abstract Unix socket `name` (`ConnectionRefused` when nobody listens).
pub fn connect_abstract(name: &str) -> io::Result<UnixStream> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&addr)
}

/// Connects to the abstract Unix socket `name`, waiting at most `timeout` (at least a
/// microsecond) when its listener's backlog is full: a listener that accepts nothing
/// (a stopped program) makes a plain `connect` wait for ever. `WouldBlock` when the time
/// ran out, `ConnectionRefused` when nobody listens.
///
/// The send timeout (`SO_SNDTIMEO`, which bounds a Unix stream `connect` too) is set
/// before the connect and stays on the stream: set it again before writing.
pub fn connect_abstract_within(name: &str, timeout: Duration) -> io::Result<UnixStream> {
    use rustix::net::{sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_timeout(
        &fd,
        sockopt::Timeout::Send,
        Some(timeout.max(Duration::from_micros(1))),
    )?;
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            // (a signal: the kernel keeps no half-made Unix connection, so try again)
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The effective uid of the process at the other end of a connected Unix socket, as the
/// kernel recorded it when the connection was made (`SO_PEERCRED`).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(stream.as_fd())?
        .uid
        .as_raw())
}

/// The pid and effective uid of the process at the other end of a connected Unix
/// socket, as the kernel recorded them when the connection was made (`SO_PEERCRED`;
/// for a client, those of the process that made the listening socket listen).
pub fn peer_cred(stream: &UnixStream) -> io::Result<(u32, u32)> {
    let c = rustix::net::sockopt::socket_peercred(stream.as_fd())?;
    Ok((c.pid.as_raw_pid() as u32, c.uid.as_raw()))
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the CPU
/// times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine (what
/// `std::time::Instant` reads too), so that a time stamped by one process and read by
/// another gives the time between them.
#[inline]
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Reads a `/proc/<pid>/<what>` file (`None` for `pid` reads `/proc/self`).
pub(crate) fn read_proc(pid: Option<u32>, what: &str) -> io::Result<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/{what}"),
        None => format!("/proc/self/{what}"),
    };
    std::fs::read_to_string(path)
}
