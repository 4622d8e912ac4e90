//! A Redis server for the Redis tests: `PROCACTOR_REDIS_URL` when set (CI starts one),
//! else a private `redis-server` on a free loopback port, stopped when the test process
//! exits. Without `redis-server` the tests fail, saying so.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static URL: OnceLock<String> = OnceLock::new();

/// The URL of a running Redis server.
pub fn url() -> String {
    URL.get_or_init(|| {
        if let Ok(u) = std::env::var("PROCACTOR_REDIS_URL") {
            if !u.is_empty() {
                return u;
            }
        }
        start_private_server()
    })
    .clone()
}

fn start_private_server() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let me = std::process::id();
    // the shell watches this test process and stops the server when it is gone
    let script = format!(
        "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
         >/dev/null 2>&1 & r=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done; \
         kill $r; wait $r"
    );
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg("command -v redis-server")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "these tests need a Redis server: install redis-server (Debian: apt-get install -y \
         redis-server) or set PROCACTOR_REDIS_URL=redis://host:port/"
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
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "redis-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
