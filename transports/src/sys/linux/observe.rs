//! Linux side of observing a program: abstract Unix stream sockets (a name with no file),
//! the peer's uid (`SO_PEERCRED`), and a process's memory and CPU from `/proc`.

use rustix::fd::AsFd;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

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

/// The effective uid of the process at the other end of a connected Unix socket, as the
/// kernel recorded it when the connection was made (`SO_PEERCRED`).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(stream.as_fd())?
        .uid
        .as_raw())
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

/// Reads a `/proc/<pid>/<what>` file (`None` for `pid` reads `/proc/self`).
pub(crate) fn read_proc(pid: Option<u32>, what: &str) -> io::Result<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/{what}"),
        None => format!("/proc/self/{what}"),
    };
    std::fs::read_to_string(path)
}
