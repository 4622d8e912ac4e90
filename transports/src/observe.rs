//! What observing a running program needs from the OS: the abstract Unix socket a
//! program serves its snapshot on, the peer's uid, and a process's memory (USS, PSS) and
//! CPU time read from `/proc`.
//!
//! The parsers are plain functions of the files' text, so that they are tested without
//! depending on what this machine's processes hold.

pub use crate::sys::observe::{
    clock_ticks_per_second, connect_abstract, connect_abstract_within, effective_uid,
    listen_abstract, monotonic_ns, peer_cred, peer_uid,
};
use std::io;

/// Memory and CPU of one process, as `/proc/<pid>/smaps_rollup` and `/proc/<pid>/stat`
/// give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Unique set size: `Private_Clean + Private_Dirty`, KiB.
    pub uss_kib: u64,
    /// Proportional set size: `Pss`, KiB.
    pub pss_kib: u64,
    /// User + system CPU time, milliseconds.
    pub cpu_ms: u64,
}

/// `(uss_kib, pss_kib)` from the text of `smaps_rollup` (`None` when a field is missing).
pub fn parse_smaps_rollup(text: &str) -> Option<(u64, u64)> {
    let mut pss = None;
    let mut clean = None;
    let mut dirty = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let slot = match key {
            "Pss:" => &mut pss,
            "Private_Clean:" => &mut clean,
            "Private_Dirty:" => &mut dirty,
            _ => continue,
        };
        *slot = v.parse::<u64>().ok();
    }
    Some((clean?.checked_add(dirty?)?, pss?))
}

/// `utime + stime` in clock ticks (fields 14 and 15) from the text of `/proc/<pid>/stat`.
/// The command name (field 2, in parentheses) may hold spaces and parentheses itself:
/// the fields are counted after its *last* closing parenthesis (by the crate's one
/// `stat` field reader).
pub fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    stat_cpu_ticks(text.as_bytes())
}

/// As [`parse_stat_cpu_ticks`], of the file's bytes (a command name need not be UTF-8).
fn stat_cpu_ticks(stat: &[u8]) -> Option<u64> {
    let field = |n| crate::sys::os::stat_field(stat, n)?.parse::<u64>().ok();
    field(14)?.checked_add(field(15)?)
}

/// The memory and CPU of process `pid` (`None`: this process).
///
/// # Errors
///
/// The process is gone, or its `/proc` files cannot be read (another user's process
/// without the right to read them) or parsed.
pub fn process_usage(pid: Option<u32>) -> io::Result<Usage> {
    let bad = |what| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable {what}"));
    let (uss_kib, pss_kib) =
        parse_smaps_rollup(&crate::sys::observe::read_proc(pid, "smaps_rollup")?)
            .ok_or_else(|| bad("smaps_rollup"))?;
    let stat = match pid {
        Some(p) => crate::sys::os::read_stat_file(&format!("/proc/{p}/stat"))?,
        None => crate::sys::os::read_stat_file("/proc/self/stat")?,
    };
    let ticks = stat_cpu_ticks(&stat).ok_or_else(|| bad("stat"))?;
    let hz = clock_ticks_per_second().max(1);
    Ok(Usage {
        uss_kib,
        pss_kib,
        cpu_ms: ticks.saturating_mul(1000) / hz,
    })
}

/// The command name of process `pid` (`/proc/<pid>/comm`, `None`: this process).
///
/// # Errors
///
/// The process is gone or its file cannot be read.
pub fn command_name(pid: Option<u32>) -> io::Result<String> {
    Ok(crate::sys::observe::read_proc(pid, "comm")?
        .trim_end()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn smaps_rollup_gives_uss_and_pss() {
        let text = "00400000-7ffd [rollup]\nRss:   1000 kB\nPss:    600 kB\n\
                    Pss_Anon: 10 kB\nShared_Clean: 300 kB\nPrivate_Clean:  100 kB\n\
                    Private_Dirty:  250 kB\nSwap: 0 kB\n";
        assert_eq!(parse_smaps_rollup(text), Some((350, 600)));
        assert_eq!(parse_smaps_rollup("Pss: 5 kB\n"), None);
        assert_eq!(parse_smaps_rollup(""), None);
    }

    #[test]
    fn stat_cpu_ticks_skip_a_command_with_spaces_and_parentheses() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_stat_cpu_ticks(text), Some(12));
        assert_eq!(parse_stat_cpu_ticks("42 (x) S 1"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        // a command name that is not UTF-8
        assert_eq!(
            stat_cpu_ticks(b"42 (\xff) S 1 42 42 0 -1 0 0 0 0 0 7 5 0"),
            Some(12)
        );
    }

    #[test]
    fn this_process_has_usage_and_a_name() {
        // burn CPU so that the figure is not trivially zero: until the kernel counts a
        // tick (60 ms of wall time gave less than one on a loaded 2-core machine), for at
        // most 10 s
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(60)
            || (t.elapsed() < std::time::Duration::from_secs(10)
                && process_usage(None).is_ok_and(|u| u.cpu_ms == 0))
        {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
        }
        let u = process_usage(None).unwrap();
        assert!(u.uss_kib > 0 && u.pss_kib > 0, "{u:?}");
        assert!(u.cpu_ms > 0, "{u:?}");
        let me = process_usage(Some(std::process::id())).unwrap();
        assert!(me.uss_kib > 0);
        assert!(!command_name(None).unwrap().is_empty());
        assert!(process_usage(Some(u32::MAX - 1)).is_err());
    }

    #[test]
    fn the_monotonic_clock_is_the_one_instant_reads() {
        let a = monotonic_ns();
        let i = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_ns();
        let e = i.elapsed().as_nanos() as u64;
        assert!(b > a);
        // the two clocks advanced alike (to within 5 ms)
        assert!((b - a).abs_diff(e) < 5_000_000, "{} vs {e}", b - a);
    }

    #[test]
    fn an_abstract_socket_connects_and_knows_its_peer() {
        let name = format!("procactor-test-observe-{}", std::process::id());
        let l = listen_abstract(&name).unwrap();
        // the name is taken while it is listened on
        assert!(listen_abstract(&name).is_err());
        let mut c = connect_abstract(&name).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(peer_uid(&s).unwrap(), effective_uid());
        // (both ends are this process)
        assert_eq!(
            peer_cred(&c).unwrap(),
            (std::process::id(), effective_uid())
        );
        assert_eq!(
            peer_cred(&s).unwrap(),
            (std::process::id(), effective_uid())
        );
        c.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hi");
        drop((l, s, c));
        let e = connect_abstract(&name).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_connect_to_a_full_backlog_gives_up_in_time() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let name = format!("procactor-test-observe-full-{}", std::process::id());
        // a listener that accepts nothing, with the smallest backlog (one pending
        // connection fits; the next waits)
        let l = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::bind(
            &l,
            &SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap(),
        )
        .unwrap();
        rustix::net::listen(&l, 0).unwrap();
        let timeout = std::time::Duration::from_millis(200);
        let mut kept = Vec::new();
        let started = std::time::Instant::now();
        let e = loop {
            match connect_abstract_within(&name, timeout) {
                Ok(c) => kept.push(c),
                Err(e) => break e,
            }
            assert!(kept.len() < 64, "the backlog never filled");
        };
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        // (generous: the waits are each 200 ms, a loaded machine adds to them)
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        drop(l);
        let e = connect_abstract_within(&name, timeout).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
