//! `procactor-top`: watch a running procactor program from another terminal.
//!
//! ```text
//! procactor-top <pid>                  live view, refreshed every second
//! procactor-top --interval 500 <pid>   refreshed every 500 ms
//! procactor-top --once <pid>           one plain-text table, then exit
//! procactor-top --json <pid>           the program's snapshot as JSON, then exit
//! ```
//!
//! The program serves its snapshot (`procactor::stats::ProgramSnapshot`) on a local
//! socket named after its pid; `procactor-top` asks for one every refresh and shows the
//! supervision trees, Pools and named queues it holds: pid, state, restarts, mailbox
//! depth, messages handled and per second, p99 of the handle time, USS and CPU% of
//! every process. Messages per second and CPU% are the differences between two
//! snapshots divided by the time between them (CPU% of one core: 100% is one core busy).
//! A line whose mailbox grew at each of the last two refreshes is marked *saturated*
//! (yellow); one whose restarts rose within the last five refreshes *flapping* (red).
//!
//! Keys: ↑/↓ (or `k`/`j`), Page Up/Down, Home/End move the selection (its details are
//! shown under the table); `s` cycles the sort column forwards, `S` backwards, `r`
//! reverses it; `q`, Esc or Ctrl-C quit. Sorting orders the children of each supervisor
//! among themselves, so the tree stays a tree.
//!
//! The crate is the binary plus this library of its parts, which are plain functions of
//! snapshots (no terminal, no socket) so that they are unit-tested: [`model`] turns
//! snapshots into lines, [`app`] holds the selection and the sort and takes keys,
//! [`render`] draws them (plain text or a ratatui frame); [`Source`] is the one
//! place that asks a program for its snapshot.

pub mod app;
pub mod model;
pub mod render;

use procactor::observe::{ObserveError, Observer};
use procactor::stats::ProgramSnapshot;
use std::time::Duration;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The live view.
    Live,
    /// One plain-text table (`--once`).
    Once,
    /// The snapshot as JSON (`--json`).
    Json,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The program to watch.
    pub pid: u32,
    /// Time between refreshes (`--interval MS`, default 1000 ms). `--once` takes its two
    /// snapshots this far apart.
    pub interval: Duration,
    /// Live, `--once` or `--json`.
    pub mode: Mode,
}

/// The usage text (`--help`, and after a wrong argument).
pub const USAGE: &str = "\
usage: procactor-top [--interval MS] [--once | --json] <pid>

Watch a running procactor program: its supervision trees, Pools and named queues, with
pid, state, restarts, mailbox depth, messages handled and per second, p99 handle time,
USS and CPU% of every process.

  <pid>            the program's pid (the one its `main` runs in)
  --interval MS    time between refreshes, milliseconds (default 1000)
  --once           print one plain-text table and exit; the rates and CPU% are over
                   one interval (two snapshots --interval apart)
  --json           print one snapshot as JSON and exit
  -h, --help       this text

Keys: up/down (k/j), PgUp/PgDn, Home/End move; s/S cycle the sort column, r reverses it;
q, Esc or Ctrl-C quit. Yellow: mailbox growing (saturated); red: restarts rising (flapping).";

/// Parses the arguments after the program name. `Err` carries the message to print
/// (for `--help`, the usage itself, with `Ok`-like intent: see [`ParseError`]).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ParseError> {
    let mut pid = None;
    let mut interval = Duration::from_millis(1000);
    let mut mode = Mode::Live;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(ParseError::Help),
            "--once" | "--json" => {
                let m = if a == "--once" {
                    Mode::Once
                } else {
                    Mode::Json
                };
                if mode != Mode::Live && mode != m {
                    return Err(ParseError::Bad(
                        "--once and --json exclude each other".into(),
                    ));
                }
                mode = m;
            }
            "--interval" => {
                let v = it
                    .next()
                    .ok_or_else(|| ParseError::Bad("--interval needs a value (ms)".into()))?;
                interval = parse_interval(&v)?;
            }
            s if s.starts_with("--interval=") => {
                interval = parse_interval(&s["--interval=".len()..])?;
            }
            s if s.starts_with('-') => {
                return Err(ParseError::Bad(format!("unknown option {s}")));
            }
            s => {
                if pid.is_some() {
                    return Err(ParseError::Bad(format!("one pid only (also got {s})")));
                }
                pid = Some(
                    s.parse::<u32>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| ParseError::Bad(format!("not a pid: {s}")))?,
                );
            }
        }
    }
    let pid = pid.ok_or_else(|| ParseError::Bad("which program? give its pid".into()))?;
    Ok(Args {
        pid,
        interval,
        mode,
    })
}

fn parse_interval(v: &str) -> Result<Duration, ParseError> {
    match v.parse::<u64>() {
        Ok(ms) if (10..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(ParseError::Bad(format!(
            "--interval takes milliseconds from 10 to 3600000, not {v}"
        ))),
    }
}

/// Why the command line was not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `--help`: print [`USAGE`] and exit 0.
    Help,
    /// A wrong argument: print this and the usage, exit 2.
    Bad(String),
}

/// How long one request for a snapshot may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `procactor-top` gets its snapshots from: the program's observe socket, over one
/// connection ([`Observer`]) kept from one refresh to the next (one request per refresh,
/// rather than a connect and an accept each time).
///
/// This is the one place `procactor-top` gets a snapshot from. After a [`Timeout`] it
/// keeps no connection (a late answer on it would be taken for the next request's), and
/// connects again at the next request. After any other error of a connection that had
/// already answered (the program closed it, e.g. after [`IDLE`] without a request when
/// the interval is longer, or restarted its server), it connects again right away, once,
/// and asks again; an error of that fresh connection, or of a first one, is reported.
///
/// [`Timeout`]: ObserveError::Timeout
/// [`IDLE`]: procactor::observe::IDLE
#[derive(Debug)]
pub struct Source {
    pid: u32,
    observer: Option<Observer>,
}

impl Source {
    /// A source for the program `pid`; it connects at the first [`Source::snapshot`].
    pub fn new(pid: u32) -> Source {
        Source {
            pid,
            observer: None,
        }
    }

    /// Whether a connection is kept for the next request.
    pub fn connected(&self) -> bool {
        self.observer.is_some()
    }

    /// The program's snapshot, waiting at most `timeout` for each try; `Err` says in
    /// words why there is none (no such process, not a procactor program, observing
    /// turned off, another user's program, no answer in time).
    pub fn snapshot(&mut self, timeout: Duration) -> Result<ProgramSnapshot, String> {
        let reused = self.observer.is_some();
        match self.ask(timeout) {
            Ok(s) => Ok(s),
            Err(e) if !reused || matches!(e, ObserveError::Timeout { .. }) => Err(e.to_string()),
            Err(_) => self.ask(timeout).map_err(|e| e.to_string()),
        }
    }

    fn ask(&mut self, timeout: Duration) -> Result<ProgramSnapshot, ObserveError> {
        let o = match &mut self.observer {
            Some(o) => o,
            None => self.observer.insert(Observer::connect(self.pid, timeout)?),
        };
        let r = o.snapshot(timeout);
        if r.is_err() {
            // a connection that failed once is of no further use
            self.observer = None;
        }
        r
    }
}

/// The `--once` text: two snapshots `interval` apart (so that rates and CPU% are known,
/// both asked for on one connection), as a plain table.
pub fn once_text(pid: u32, interval: Duration) -> Result<String, String> {
    let mut src = Source::new(pid);
    let mut t = model::Tracker::new();
    t.observe(&src.snapshot(FETCH_TIMEOUT)?);
    std::thread::sleep(interval);
    let v = t.observe(&src.snapshot(FETCH_TIMEOUT)?);
    Ok(render::text(&v, &v.rows))
}

/// The `--json` text: one snapshot, pretty-printed.
pub fn json_text(pid: u32) -> Result<String, String> {
    let s = Source::new(pid).snapshot(FETCH_TIMEOUT)?;
    serde_json::to_string_pretty(&s).map_err(|e| format!("cannot write the snapshot as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, ParseError> {
        parse_args(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse("123"),
            Ok(Args {
                pid: 123,
                interval: Duration::from_millis(1000),
                mode: Mode::Live
            })
        );
        let a = parse("--once --interval 250 42").unwrap();
        assert_eq!(
            (a.pid, a.interval, a.mode),
            (42, Duration::from_millis(250), Mode::Once)
        );
        assert_eq!(parse("--interval=50 --json 7").unwrap().mode, Mode::Json);
        assert_eq!(parse("--help 7"), Err(ParseError::Help));
        for bad in [
            "",
            "abc",
            "0",
            "-5",
            "1 2",
            "--once --json 1",
            "--interval 1",
            "--interval x 1",
            "--interval",
            "--frob 1",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::Bad(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_json_of_a_snapshot_reads_back_the_same() {
        let s = model::tests::program(2, 1, 1);
        let j = serde_json::to_string_pretty(&s).unwrap();
        assert!(j.contains("\"handled\": 2000"), "{j}");
        let back: ProgramSnapshot = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_pid_with_no_observe_server_says_so() {
        // pids above the kernel's pid_max (at most 2^22) are never in use; pid 1 is no
        // procactor program
        for pid in [4_194_304 + 17, 1] {
            let mut src = Source::new(pid);
            for _ in 0..2 {
                let e = src.snapshot(Duration::from_millis(500)).unwrap_err();
                assert!(
                    e.contains(&format!("no observe server for pid {pid}")),
                    "{e}"
                );
                assert!(!src.connected());
            }
        }
    }

    #[test]
    fn a_source_keeps_its_connection_and_comes_back_after_losing_it() {
        // a named queue makes this process observable
        let q = procactor::Queue::<u8>::builder()
            .name("lib-test-queue")
            .build()
            .unwrap();
        let mut src = Source::new(std::process::id());
        let has_queue = |s: &ProgramSnapshot| s.queues.iter().any(|q| q.name == "lib-test-queue");
        assert!(has_queue(&src.snapshot(FETCH_TIMEOUT).unwrap()));
        assert!(src.connected(), "the connection is kept");
        q.put(1).unwrap();
        let s = src.snapshot(FETCH_TIMEOUT).unwrap();
        let depth = s
            .queues
            .iter()
            .find(|q| q.name == "lib-test-queue")
            .unwrap()
            .depth;
        assert_eq!(depth, 1, "a new snapshot on the kept connection");
        // a timeout drops the connection; the next request connects again
        let e = src.snapshot(Duration::ZERO).unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(!src.connected(), "no connection kept after a timeout");
        assert!(has_queue(&src.snapshot(FETCH_TIMEOUT).unwrap()));
        assert!(src.connected());
        drop(q);
    }
}
