//! One call over an authenticated session: opening the session (handshake by a
//! deadline) and one request's round trip (heartbeats skipped, a deadline kept).

use super::wire::{RecvError, Session};
use super::{resp_result, Req, Resp};
use super::{ManagerError, CLIENT_SPIN, HANDSHAKE_TIMEOUT, MAX_FRAME, REPLY_TIMEOUT};
use crate::codec;
use procactor_transports::conn::{self, Address, Stream};

/// Connects to a manager's `address`, proves `key` both ways and sets up the session
/// key, all by `until` (at most [`HANDSHAKE_TIMEOUT`] from now).
pub(super) fn open_session_by(
    address: &Address,
    key: &[u8],
    until: Option<std::time::Instant>,
) -> Result<Session, ManagerError> {
    let h = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let until = until.map_or(h, |u| u.min(h));
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ManagerError::Auth(e.to_string()),
        _ => ManagerError::Io(e),
    };
    let mut s = Stream::connect(address).map_err(io)?;
    conn::client_handshake(&mut conn::WithDeadline::new(&mut s, until), key).map_err(io)?;
    Session::client(s, key, until).map_err(io)
}

/// As [`open_session_by`], the address as text; a server that does not answer is
/// [`ManagerError::Disconnected`].
pub(super) fn open_session(address: &str, key: &[u8]) -> Result<Session, ManagerError> {
    open_session_by(&Address::parse(address), key, None).map_err(|e| match e {
        ManagerError::Io(_) => ManagerError::Disconnected,
        e => e,
    })
}

/// As [`open_session_by`] for a call with an optional deadline: a server that does not
/// answer is [`ManagerError::Disconnected`]; a call with a deadline whose handshake
/// timed out (the call's deadline, or the handshake's own 3 s) is
/// [`ManagerError::Timeout`] (a frozen server), as a timed-out answer is.
pub(super) fn open_session_until(
    address: &Address,
    key: &[u8],
    deadline: Option<std::time::Instant>,
) -> Result<Session, ManagerError> {
    open_session_by(address, key, deadline).map_err(|e| match e {
        ManagerError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) && deadline.is_some() =>
        {
            ManagerError::Timeout
        }
        ManagerError::Io(_) => ManagerError::Disconnected,
        e => e,
    })
}

/// A call's failure, and whether the connection is still in step (else close it).
pub(super) type CallError = (ManagerError, bool);

/// One request and its answer over a session (heartbeats skipped). `deadline`: the
/// call's ([`ManagerError::Timeout`] when it passes; the connection is then out of
/// step). A refusal, an undecodable answer or an answer over the limit leave the
/// connection usable.
pub(super) fn round_trip(
    s: &mut Session,
    req: &Req,
    deadline: Option<std::time::Instant>,
) -> Result<Resp, CallError> {
    let mut buf = Vec::new();
    codec::encode(req, &mut buf, None).map_err(|e| (e.into(), true))?;
    if buf.len() > MAX_FRAME {
        return Err((
            ManagerError::TooLarge {
                size: buf.len() as u64,
                limit: MAX_FRAME,
            },
            true,
        ));
    }
    s.send(&buf)
        .map_err(|_| (ManagerError::Disconnected, false))?;
    loop {
        s.spin(CLIENT_SPIN);
        let now = std::time::Instant::now();
        let patience = now + REPLY_TIMEOUT;
        let first = deadline.map_or(patience, |d| d.min(patience));
        let frame = match s.recv(MAX_FRAME, Some(first), REPLY_TIMEOUT) {
            Ok(f) => f,
            Err(RecvError::TimedOut) if deadline.is_some_and(|d| d <= patience) => {
                return Err((ManagerError::Timeout, false))
            }
            Err(RecvError::TooLarge(size)) => {
                return Err((
                    ManagerError::TooLarge {
                        size,
                        limit: MAX_FRAME,
                    },
                    false,
                ))
            }
            Err(_) => return Err((ManagerError::Disconnected, false)),
        };
        return match codec::decode::<Resp>(&frame, Vec::new()) {
            Ok(Resp::Pending) => continue,
            // (a refusal keeps the connection too)
            Ok(r) => resp_result(r).map_err(|e| (e, true)),
            // the frame was whole and authentic: the connection is still in step
            Err(e) => Err((e.into(), true)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::manager::wire;
    use std::time::Duration;

    fn send(s: &mut Session, r: &Resp) {
        let mut buf = Vec::new();
        codec::encode(r, &mut buf, None).unwrap();
        s.send(&buf).unwrap();
    }

    #[test]
    fn an_answer_that_does_not_decode_fails_its_call_and_keeps_the_connection() {
        let (mut client, mut server) = wire::tests::pair();
        let until = || Some(std::time::Instant::now() + Duration::from_secs(10));
        // an authentic frame whose payload is no answer (a newer server, say)
        server.send(b"\xff\xfe not an answer").unwrap();
        let r = round_trip(&mut client, &Req::ObjectCount, until());
        assert!(matches!(r, Err((ManagerError::Decode(_), true))), "{r:?}");
        // the connection is in step: the next call gets its answer
        send(&mut server, &Resp::Count(7));
        assert!(matches!(
            round_trip(&mut client, &Req::ObjectCount, until()),
            Ok(Resp::Count(7))
        ));
        // an answer over the limit is TooLarge, the connection kept too
        send(&mut server, &Resp::TooLarge(1 << 40));
        assert!(matches!(
            round_trip(&mut client, &Req::ObjectCount, until()),
            Err((ManagerError::TooLarge { size, .. }, true)) if size == 1 << 40
        ));
        // and a deadline that passes is Timeout, the connection out of step
        let t = std::time::Instant::now();
        let r = round_trip(
            &mut client,
            &Req::ObjectCount,
            Some(t + Duration::from_millis(50)),
        );
        assert!(matches!(r, Err((ManagerError::Timeout, false))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
