//! A Redis server for the Redis tests: `PROCACTOR_REDIS_URL` when set (CI starts one),
//! else a private `redis-server` on a free loopback port, stopped when the test process
//! exits.
//!
//! Redis is a service this project does not ship. Without it (no `PROCACTOR_REDIS_URL`
//! and no working `redis-server` on `PATH`) every Redis test **skips**: it returns at
//! once, and the test binary prints one line saying why and how to run them, to the
//! terminal (not captured by the harness). `PROCACTOR_REQUIRE_REDIS=1` turns the skip
//! into a failure (CI sets it, so a change whose Redis tests did not run never lands).
//!
//! Every Redis test starts with `require_redis!();`.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// The line printed (once per test binary) when the Redis tests skip.
pub const SKIP_LINE: &str = "redis tests skipped: redis-server not found and \
     PROCACTOR_REDIS_URL not set (apt-get install redis-server to run them; \
     PROCACTOR_REQUIRE_REDIS=1 makes this a failure)";

/// Returns from the calling test (after printing the skip line once) when no Redis
/// server can be had; fails the test instead under `PROCACTOR_REQUIRE_REDIS=1`.
macro_rules! require_redis {
    () => {
        if !redis_support::available() {
            return;
        }
    };
}
pub(crate) use require_redis;

static SERVER: OnceLock<Option<String>> = OnceLock::new();
static SKIP_NOTICE: Once = Once::new();

/// Whether a Redis server is there for the tests (see the module doc). Starts the
/// private server the first time it is asked, if one is needed.
///
/// # Panics
///
/// With `PROCACTOR_REQUIRE_REDIS=1` set and no server to be had.
pub fn available() -> bool {
    if SERVER.get_or_init(find_or_start).is_some() {
        return true;
    }
    if required() {
        panic!(
            "PROCACTOR_REQUIRE_REDIS=1 but no Redis server: redis-server not found and \
             PROCACTOR_REDIS_URL not set (apt-get install redis-server, or set \
             PROCACTOR_REDIS_URL=redis://host:port/)"
        );
    }
    SKIP_NOTICE.call_once(|| {
        // Straight to the process's stderr: the harness captures only `eprintln!`.
        let _ = writeln!(std::io::stderr().lock(), "\n{SKIP_LINE}\n");
    });
    false
}

fn required() -> bool {
    std::env::var("PROCACTOR_REQUIRE_REDIS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The URL of the running Redis server.
///
/// # Panics
///
/// When there is none: call it only after [`require_redis!`].
pub fn url() -> String {
    SERVER
        .get_or_init(find_or_start)
        .clone()
        .expect("url() called without a Redis server: start the test with require_redis!()")
}

fn find_or_start() -> Option<String> {
    if let Ok(u) = std::env::var("PROCACTOR_REDIS_URL") {
        if !u.is_empty() {
            return Some(u);
        }
    }
    have_binary().then(start_private_server)
}

/// Whether a working `redis-server` is on `PATH` (one that cannot even print its
/// version, absent or a stub, is none).
pub fn have_binary() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `redis-server` of the caller's own on a free loopback port (to kill, or to count
/// connections on), and its URL. The caller kills it (it is not watched).
///
/// # Panics
///
/// When it cannot be started or does not listen within 10 s.
pub fn private_server() -> (std::process::Child, String) {
    private_server_with(&[])
}

/// As [`private_server`], with more `redis-server` arguments (`--unixsocket PATH`…).
///
/// # Panics
///
/// As [`private_server`].
pub fn private_server_with(args: &[&str]) -> (std::process::Child, String) {
    let port = free_port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting redis-server");
    until_listening(port);
    (child, format!("redis://127.0.0.1:{port}/"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn until_listening(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_private_server() -> String {
    let port = free_port();
    let me = std::process::id();
    // the shell watches this test process and stops the server when it is gone
    let script = format!(
        "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
         >/dev/null 2>&1 & r=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done; \
         kill $r; wait $r"
    );
    // never waited for: it outlives this process by design (it stops the server after
    // the test process is gone), and is reaped by init then
    #[allow(clippy::zombie_processes)]
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("starting redis-server");
    until_listening(port);
    format!("redis://127.0.0.1:{port}/")
}

static N: AtomicU64 = AtomicU64::new(0);

/// A stream name no other test (or earlier run) uses.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "test:{what}:{}:{nanos}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs this test binary again, every test but `this_test`, on a "machine without
/// Redis" (failing `redis-server`/`redis-cli` stubs first on `PATH`, no
/// `PROCACTOR_REDIS_URL`), and checks the skip rule: the run passes, every test
/// counted as passed, and prints the skip line exactly once; with
/// `PROCACTOR_REQUIRE_REDIS=1` the same run fails, every test, saying why. A Redis test
/// that forgets `require_redis!()` fails the first run.
pub fn check_the_skip_rule(this_test: &str) {
    let stubs = stub_dir_without_redis();
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |require: bool| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        // every test but this one and the shared helpers' own (tests/common: not Redis)
        cmd.args([
            "--test-threads=2",
            "--skip",
            this_test,
            "--skip",
            "common::",
        ])
        .env("PATH", &path)
        .env_remove("PROCACTOR_REDIS_URL")
        .env_remove("PROCACTOR_REQUIRE_REDIS")
        .stdin(std::process::Stdio::null());
        if require {
            cmd.env("PROCACTOR_REQUIRE_REDIS", "1");
        }
        let out = cmd.output().expect("running this test binary again");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // "N passed; M failed" of the run's result line
    let counts = |text: &str| -> (u32, u32) {
        let line = text
            .lines()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or_else(|| panic!("no result line:\n{text}"));
        let num = |word: &str| -> u32 {
            let before = &line[..line.find(word).expect("count")];
            before
                .trim_end()
                .rsplit([' ', '.'])
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number")
        };
        (num(" passed"), num(" failed"))
    };
    let (ok, text) = run(false);
    assert!(ok, "the run without Redis failed:\n{text}");
    assert_eq!(
        text.matches(SKIP_LINE).count(),
        1,
        "the skip line, exactly once per binary:\n{text}"
    );
    let (passed, failed) = counts(&text);
    assert!(passed >= 2 && failed == 0, "{text}");
    let (ok, text) = run(true);
    assert!(
        !ok,
        "PROCACTOR_REQUIRE_REDIS=1 without Redis passed:\n{text}"
    );
    assert!(
        text.contains("PROCACTOR_REQUIRE_REDIS=1 but no Redis server"),
        "{text}"
    );
    assert_eq!(counts(&text), (0, passed), "{text}");
    assert!(!text.contains(SKIP_LINE), "{text}");
    let _ = std::fs::remove_dir_all(stubs);
}

/// A directory holding `redis-server` and `redis-cli` stubs that fail, to put first on
/// `PATH`: a machine without Redis, for the test of the skip logic itself.
pub fn stub_dir_without_redis() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("procactor-no-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("stub dir");
    for name in ["redis-server", "redis-cli"] {
        let p = dir.join(name);
        std::fs::write(
            &p,
            "#!/bin/sh\necho \"$0: not installed (test stub)\" >&2\nexit 127\n",
        )
        .expect("stub");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// The server's count of clients blocked in a command (`INFO clients`'
/// `blocked_clients`, through `redis-cli`), for a test waiting until a `… BLOCK` read is
/// in place. Every Redis test of the process shares the server: more than one's own.
///
/// # Panics
///
/// When `redis-cli` cannot be run or its reply has no such line.
pub fn blocked_clients() -> u64 {
    info_number(&url(), "clients", "blocked_clients")
}

/// A number of the server's `INFO section` (through `redis-cli`, whose own connection
/// the server counts too).
///
/// # Panics
///
/// When `redis-cli` cannot be run or its reply has no such line.
pub fn info_number(url: &str, section: &str, field: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(["INFO", section])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running redis-cli");
    let info = String::from_utf8_lossy(&out.stdout);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {info}"))
}

/// Waits (at most 10 s) until at least one client is blocked (see [`blocked_clients`]).
///
/// # Panics
///
/// After 10 s.
pub fn until_a_client_is_blocked() {
    let t = Instant::now();
    while blocked_clients() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no client blocked within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many entries of stream `name` are pending in the default group (`procactor`):
/// delivered and not acknowledged (`XPENDING`'s count, through `redis-cli`).
///
/// # Panics
///
/// When `redis-cli` cannot be run or its reply is not a count.
pub fn pending_in_group(name: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url())
        .args(["XPENDING", name, "procactor"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no XPENDING count: {text}"))
}

/// A TCP proxy to the test server that holds every chunk of the server's replies for
/// `delay` before passing it on (requests pass at once): a server that answers late, for
/// the connections made through it only (the server itself, shared with the binary's
/// other tests, is left alone). Its threads live as long as the test binary.
///
/// # Panics
///
/// When the test server's address cannot be read from [`url`] or no port can be bound.
pub fn slow_proxy(delay: Duration) -> String {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let server = url();
    let addr = server
        .strip_prefix("redis://")
        .and_then(|rest| rest.split('/').next())
        .filter(|a| !a.contains('@'))
        .unwrap_or_else(|| panic!("a plain redis://host:port/ URL, not {server}"))
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
    let local = listener.local_addr().expect("the proxy's address");
    fn pass(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut from, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    std::thread::sleep(delay);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(upstream) = TcpStream::connect(&addr) else {
                continue;
            };
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || pass(c2, u2, Duration::ZERO));
            std::thread::spawn(move || pass(upstream, client, delay));
        }
    });
    format!("redis://{local}/")
}
