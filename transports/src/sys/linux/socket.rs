use rustix::fd::BorrowedFd;
use rustix::net::{sockopt, Shutdown};
use std::io;

/// Asks for send and receive buffers of `bytes` on a Unix stream socket, so that a
/// message of that size fits in flight without the writer blocking for the reader.
///
/// The kernel caps the request at `net.core.wmem_max`/`rmem_max`; a privileged process
/// (`CAP_NET_ADMIN`) may exceed the cap, which is tried when the first request was
/// capped. Returns the send buffer size the kernel granted.
///
/// # Errors
///
/// `fd` is not a socket.
pub fn set_buffer_sizes(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    sockopt::set_socket_send_buffer_size(fd, bytes)?;
    sockopt::set_socket_recv_buffer_size(fd, bytes)?;
    // Linux reports twice the requested value (it accounts for bookkeeping overhead).
    if sockopt::socket_send_buffer_size(fd)? < bytes {
        let _ = sockopt::set_socket_send_buffer_size_force(fd, bytes);
        let _ = sockopt::set_socket_recv_buffer_size_force(fd, bytes);
    }
    Ok(sockopt::socket_send_buffer_size(fd)?)
}

/// Which direction of a socket to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// No more receiving: the peer's sends fail with `BrokenPipe`.
    Read,
    /// No more sending: the peer's receives see end of stream.
    Write,
}

/// Shuts down one direction of a connected socket, for every process holding it
/// (unlike closing a descriptor, which only drops this process's reference).
///
/// # Errors
///
/// `fd` is not a connected socket.
pub fn shutdown(fd: BorrowedFd<'_>, direction: Direction) -> io::Result<()> {
    let how = match direction {
        Direction::Read => Shutdown::Read,
        Direction::Write => Shutdown::Write,
    };
    Ok(rustix::net::shutdown(fd, how)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn buffers_grow_and_shutdown_is_seen_by_the_peer() {
        let (a, b) = crate::fdpass::socketpair().unwrap();
        let granted = set_buffer_sizes(a.as_fd(), 1 << 20).unwrap();
        assert!(granted >= 1 << 20, "granted {granted}");
        // a 1 MiB write now completes without a reader
        let data = vec![7u8; 1 << 20];
        let mut sent = 0;
        while sent < data.len() {
            sent += crate::fdpass::send(a.as_fd(), &[&data[sent..]], &[], true).unwrap();
        }
        shutdown(a.as_fd(), Direction::Write).unwrap();
        let mut buf = vec![0u8; 1 << 21];
        let mut got = 0;
        let mut fds = Vec::new();
        loop {
            let n = crate::fdpass::recv(b.as_fd(), &mut buf[got..], &mut fds, false).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, data.len());
        shutdown(b.as_fd(), Direction::Read).unwrap();
        let e = crate::fdpass::send(a.as_fd(), &[b"x"], &[], false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(set_buffer_sizes(r.as_fd(), 4096).is_err());
        assert!(shutdown(r.as_fd(), Direction::Read).is_err());
    }
}
