use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    recvmsg, sendmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io;
use std::mem::MaybeUninit;

/// The most descriptors one [`send`] carries (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS_PER_MSG: usize = 250;

/// A connected pair of Unix stream sockets, close-on-exec.
///
/// # Errors
///
/// The process is out of file descriptors.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Ends both directions of a connected socket without closing it: the peer reads the
/// end of the stream, and this side's later reads and writes fail.
///
/// # Errors
///
/// `fd` is not a connected socket.
pub fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Both)?)
}

/// Sends `bufs` (gathered) with `fds` attached; returns the bytes written, which may be
/// fewer than offered (the descriptors always go with the first byte written).
///
/// `nonblocking` adds `MSG_DONTWAIT`. `SIGPIPE` is never raised: a closed peer is
/// `Err(BrokenPipe)`.
///
/// # Errors
///
/// More than [`MAX_FDS_PER_MSG`] descriptors, a closed peer, or `WouldBlock` when
/// `nonblocking` and the socket buffer is full.
pub fn send(
    sock: BorrowedFd<'_>,
    bufs: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot send {} file descriptors in one message (at most {MAX_FDS_PER_MSG})",
                fds.len()
            ),
        ));
    }
    let iov: Vec<IoSlice<'_>>;
    let iov_small: [IoSlice<'_>; 2];
    let iov_ref: &[IoSlice<'_>] = if bufs.len() <= 2 {
        iov_small = [
            IoSlice::new(bufs.first().copied().unwrap_or(&[])),
            IoSlice::new(bufs.get(1).copied().unwrap_or(&[])),
        ];
        &iov_small[..bufs.len()]
    } else {
        iov = bufs.iter().map(|b| IoSlice::new(b)).collect();
        &iov
    };
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    let res = if fds.is_empty() {
        sendmsg(sock, iov_ref, &mut SendAncillaryBuffer::default(), flags)
    } else {
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !anc.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        sendmsg(sock, iov_ref, &mut anc, flags)
    };
    loop_eintr(res)
}

fn loop_eintr(r: rustix::io::Result<usize>) -> io::Result<usize> {
    match r {
        Ok(n) => Ok(n),
        Err(Errno::INTR) => Err(io::Error::from(io::ErrorKind::Interrupted)),
        Err(e) => Err(e.into()),
    }
}

/// Receives into `buf`; descriptors that arrive are appended to `fds_out` (close-on-exec).
/// Returns the bytes read; `Ok(0)` for a non-empty `buf` means end of stream.
///
/// # Errors
///
/// `WouldBlock` when `nonblocking` and nothing is there; `InvalidData` when the kernel
/// had to drop descriptors (the peer sent more than one receive can take).
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds_out: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MSG))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    let mut iov = [IoSliceMut::new(buf)];
    let msg = match recvmsg(sock, &mut iov, &mut anc, flags) {
        Ok(m) => m,
        Err(Errno::INTR) => return Err(io::Error::from(io::ErrorKind::Interrupted)),
        Err(e) => return Err(e.into()),
    };
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds_out.extend(it);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file descriptors were dropped by the kernel (control message truncated)",
        ));
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn shutdown_shows_the_peer_the_end_of_the_stream() {
        let (a, b) = socketpair().unwrap();
        shutdown(a.as_fd()).unwrap();
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let got = recv(b.as_fd(), &mut buf, &mut fds, false);
        assert!(matches!(got, Ok(0)), "{got:?}");
    }

    #[test]
    fn bytes_and_fds_cross_a_socketpair() {
        let (a, b) = socketpair().unwrap();
        let (pr, pw) = rustix::pipe::pipe().unwrap();
        let n = send(a.as_fd(), &[b"he", b"llo"], &[pw.as_fd()], false).unwrap();
        assert_eq!(n, 5);
        drop(pw);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // the received write end really is the pipe's write end
        rustix::io::write(&fds[0], b"x").unwrap();
        let mut one = [0u8; 1];
        assert_eq!(rustix::io::read(&pr, &mut one).unwrap(), 1);
        assert_eq!(&one, b"x");
    }

    #[test]
    fn nonblocking_recv_on_empty_is_would_block_and_closed_peer_is_eof() {
        let (a, b) = socketpair().unwrap();
        let mut fds = Vec::new();
        let e = recv(b.as_fd(), &mut [0u8; 4], &mut fds, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut [0u8; 4], &mut fds, false).unwrap(), 0);
        let e = send(b.as_fd(), &[b"x"], &[], false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn too_many_fds_is_an_error() {
        let (a, _b) = socketpair().unwrap();
        let fds: Vec<_> = std::iter::repeat_n(a.as_fd(), MAX_FDS_PER_MSG + 1).collect();
        assert!(send(a.as_fd(), &[b"x"], &fds, false).is_err());
    }
}
