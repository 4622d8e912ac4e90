//! A supervision tree under load, to watch from outside (issue 24): with
//! `procactor-top`, with Prometheus, with traces.
//!
//! The tree: a root supervisor `root` with a `counter` (a pipe actor answering calls),
//! a `logger` (sent to, never called), a pool of three `hasher` pipe actors, and a child
//! supervisor `sub` (its own process) with an `indexer` that is fed in bursts faster
//! than it handles them, so that its mailbox grows and drains again. Beside it a
//! [`Pool`] of two workers crunching numbers, and a queue named `jobs` that a child
//! process drains. Threads of this process keep all of them busy.
//!
//! ```text
//! $ cargo run --release --features metrics --example observe -- --seconds 60
//! observe: pid 48213, Prometheus text on http://127.0.0.1:9464/metrics
//! watch it:  cargo run --release -p procactor-top -- 48213
//! ...
//! ```
//!
//! Then, from another terminal: `cargo run --release -p procactor-top -- 48213` (the
//! live view; `--once` for one table, `--json` for the snapshot), or
//! `curl -s 127.0.0.1:9464/metrics | grep procactor_actor_handled_total`. Kill a
//! hasher (`kill -9 <its pid>`, as `procactor-top` shows it) and watch its restarts
//! rise and its line turn red (flapping).
//!
//! Options: `--port N` (default 9464; `0` takes a free port, printed), `--seconds N`
//! (default: until Ctrl-C), `--trace` (below). At the end it reads its own `/metrics` once and prints how
//! many `procactor_` lines were served, and a few figures of its final snapshot.
//!
//! In CI (`.ci/run`), which runs every example and needs each to end, this one is run
//! with `--seconds 3 --port 0 --trace`: the arguments of each example are in that script; with
//! no arguments, the example runs until it is stopped.
//!
//! # Metrics
//!
//! The cargo feature `metrics` (on for this workspace's examples and tests; a program of
//! yours enables it in its `Cargo.toml`) gives
//! `procactor::observe::metrics`: [`procactor::observe::metrics::Publisher`] publishes this process's
//! snapshot (its trees, Pools and named queues, with the actors' statistics read from
//! shared memory) through the `metrics` facade every second; here
//! `metrics-exporter-prometheus` renders it and a small `std::net` loop serves it. The
//! exporter drops a series that was not published for three seconds (`idle_timeout`):
//! `publish` only sets what the snapshot holds, so without it the series of an actor
//! or a queue that is gone would be served, frozen, for as long as the program runs.
//!
//! # Traces
//!
//! Messages carry the sender's `tracing` span context (when a subscriber is
//! interested), and an actor's `handle` runs in a child span of it. To see them, install
//! a subscriber in the program, e.g. with `tracing-subscriber`'s `fmt`, and also in the
//! actor's process, which does not run `main` (here in [`Counter`]'s `started`, when
//! the actor was made with `trace: true`). With `--trace` this example does both, then
//! makes three calls to the counter, each inside a span `request{n=…}` of `main`'s
//! process, and the counter logs each probe. The output shows the hop:
//!
//! ```text
//!  INFO request{n=1}: observe: calling the counter
//!  INFO actor.handle{actor=Counter msg="u64" kind="call" trace_id=… parent_span=… parent_pid=48213}: observe: counted total=…
//!  INFO request{n=1}: observe: answered total=…
//! ```
//!
//! The actor's line carries the caller's pid and span id and a trace id that every later
//! hop of the same request carries on (see `procactor::observe`, "Traces across
//! processes"). The load threads send without a span: their messages carry nothing.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use procactor::{
    process_actor, Actor, ActorError, ChildSpec, Context, Pool, Process, Queue, Strategy,
    Supervisor,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the snapshot is published to the exporter.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Answers each call with the running total; a call adding 0 is a probe, logged.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Counter {
    n: u64,
    /// Install a `tracing` subscriber in the actor's process (`--trace`).
    trace: bool,
}

impl Actor for Counter {
    type Msg = u64;
    type Reply = u64;
    fn started(&mut self, _: &mut Context<Self>) -> Result<(), ActorError> {
        if self.trace {
            subscribe();
        }
        Ok(())
    }
    fn handle(&mut self, by: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        self.n += by;
        if by == 0 {
            tracing::info!(total = self.n, "counted");
        }
        Ok(self.n)
    }
}

/// Prints this process's `tracing` events and their spans on stderr.
fn subscribe() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Counts the lines it is sent.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Logger {
    lines: u64,
}

impl Actor for Logger {
    type Msg = String;
    type Reply = ();
    fn handle(&mut self, line: String, _: &mut Context<Self>) -> Result<(), ActorError> {
        self.lines += line.len() as u64;
        Ok(())
    }
}

/// A pool member: a checksum of a payload (some work per call).
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Hasher;

impl Actor for Hasher {
    type Msg = Vec<u8>;
    type Reply = u64;
    fn handle(&mut self, data: Vec<u8>, _: &mut Context<Self>) -> Result<u64, ActorError> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..8 {
            for b in &data {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        Ok(h)
    }
}

/// Slow on purpose: about 2 ms a message, so that bursts queue up in its mailbox.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Indexer {
    seen: u64,
}

impl Actor for Indexer {
    type Msg = u64;
    type Reply = ();
    fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
        std::thread::sleep(Duration::from_millis(2));
        self.seen = self.seen.wrapping_add(x);
        Ok(())
    }
}

/// A Pool task: about a millisecond of arithmetic.
fn crunch(seed: u64) -> u64 {
    let t0 = Instant::now();
    let mut x = seed | 1;
    while t0.elapsed() < Duration::from_millis(1) {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

/// The child process that drains `jobs`.
fn drain(jobs: Queue<u64>) -> u64 {
    jobs.close(); // this handle only takes: the loop ends when the producers are gone
    let mut n = 0;
    while let Ok(x) = jobs.get() {
        n += x & 1;
    }
    n
}

struct Options {
    port: u16,
    seconds: Option<u64>,
    trace: bool,
}

fn options() -> Options {
    let mut o = Options {
        port: 9464,
        seconds: None,
        trace: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| usage(&format!("{a} needs a number")))
        };
        match a.as_str() {
            "--port" => {
                o.port = u16::try_from(value(&mut args)).unwrap_or_else(|_| usage("port > 65535"))
            }
            "--seconds" => o.seconds = Some(value(&mut args)),
            "--trace" => o.trace = true,
            "-h" | "--help" => usage(""),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    o
}

fn usage(why: &str) -> ! {
    if !why.is_empty() {
        eprintln!("observe: {why}");
    }
    eprintln!("usage: observe [--port N (default 9464, 0 = any free one)] [--seconds N] [--trace]");
    std::process::exit(if why.is_empty() { 0 } else { 2 })
}

/// Serves `GET /metrics` (the exporter's text) on `listener`, one connection at a time.
fn serve(listener: TcpListener, handle: PrometheusHandle) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut request = String::new();
        if BufReader::new(&mut s).read_line(&mut request).is_err() {
            continue;
        }
        let (status, body) = if request.starts_with("GET /metrics ") {
            handle.run_upkeep();
            ("200 OK", handle.render())
        } else {
            ("404 Not Found", "try /metrics\n".to_string())
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// This process's own `/metrics`, as a scraper would read it.
fn scrape(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Runs `f` in a loop on a thread until `stop`.
fn load(stop: &Arc<AtomicBool>, mut f: impl FnMut() + Send + 'static) {
    let stop = stop.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            f();
        }
    });
}

#[procactor::main]
fn main() {
    let o = options();
    if o.trace {
        subscribe();
    }
    // series not published for three intervals (an actor, a queue that is gone) expire
    let handle = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::ALL, Some(3 * PUBLISH_EVERY))
        .install_recorder()
        .expect("install the Prometheus recorder");
    let listener = TcpListener::bind(("127.0.0.1", o.port)).unwrap_or_else(|e| {
        eprintln!("observe: cannot listen on 127.0.0.1:{}: {e}", o.port);
        std::process::exit(1)
    });
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || serve(listener, handle));

    let root = Supervisor::builder()
        .name("root")
        .strategy(Strategy::OneForOne)
        .max_restarts(1000, Duration::from_secs(10))
        .build()
        .expect("start the root supervisor");
    let counter = root
        .spawn(Counter {
            n: 0,
            trace: o.trace,
        })
        .expect("spawn counter");
    if o.trace {
        for n in 1..=3u32 {
            let span = tracing::info_span!("request", n);
            let _in = span.enter();
            tracing::info!("calling the counter");
            match counter.call_timeout(0, Duration::from_secs(5)) {
                Ok(total) => tracing::info!(total, "answered"),
                Err(e) => tracing::warn!(error = %e, "the probe failed"),
            }
        }
    }
    let logger = root.spawn(Logger { lines: 0 }).expect("spawn logger");
    let hashers = root
        .spawn_pool_with(ChildSpec::new().name("hasher"), 3, || Hasher)
        .expect("spawn the hasher pool");
    let mut sub = Supervisor::builder()
        .name("sub")
        .max_restarts(1000, Duration::from_secs(10));
    let indexer = sub
        .add_with(ChildSpec::new().name("indexer"), Indexer { seen: 0 })
        .expect("add indexer");
    let _sub = root.spawn_supervisor(sub).expect("spawn the subtree");
    let pool = Arc::new(
        Pool::builder()
            .processes(2)
            .name("crunch")
            .build()
            .expect("start the Pool"),
    );
    // named, so that the snapshot (procactor-top, the metrics) lists it
    let jobs: Queue<u64> = Queue::builder()
        .name("jobs")
        .build()
        .expect("the jobs queue");
    let mut drainer = Process::new(drain, jobs.clone())
        .start()
        .expect("start the jobs drainer");

    let publisher = procactor::observe::metrics::Publisher::start(PUBLISH_EVERY)
        .expect("start publishing metrics");

    println!(
        "observe: pid {}, Prometheus text on http://127.0.0.1:{port}/metrics",
        std::process::id()
    );
    println!(
        "watch it:  cargo run --release -p procactor-top -- {}",
        std::process::id()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut i = 0u64;
    load(&stop, move || {
        i += 1;
        let _ = counter.call_timeout(i % 7 + 1, Duration::from_secs(5));
        std::thread::sleep(Duration::from_micros(500));
    });
    load(&stop, move || {
        for k in 0..100 {
            let _ = logger.send(format!("line {k}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    let payload: Vec<u8> = (0..4096u32).map(|x| x as u8).collect();
    for _ in 0..2 {
        let (h, p) = (hashers.clone(), payload.clone());
        load(&stop, move || {
            let _ = h.call_timeout(p.clone(), Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        });
    }
    // bursts of 2 s at ~700 messages/s (the indexer handles ~450/s), then 2 s of rest
    let mut burst = 0u64;
    load(&stop, move || {
        burst += 1;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            for x in 0..7 {
                let _ = indexer.send(burst + x);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    let p = pool.clone();
    let mut seed = 0u64;
    load(&stop, move || {
        let rs: Vec<_> = (0..4)
            .filter_map(|_| {
                seed += 1;
                p.apply_async(crunch, seed).ok()
            })
            .collect();
        for r in rs {
            let _ = r.get_timeout(Duration::from_secs(10));
        }
    });
    let j = jobs.clone();
    let mut n = 0u64;
    load(&stop, move || {
        n += 1;
        let _ = j.put(n);
        std::thread::sleep(Duration::from_millis(2));
    });

    match o.seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }

    // the end: what a scraper and an observer see now
    stop.store(true, Ordering::Relaxed);
    procactor::observe::metrics::publish(&procactor::observe::snapshot());
    match scrape(port) {
        Ok(text) => {
            let lines = text.lines().filter(|l| l.starts_with("procactor_")).count();
            println!("/metrics served {lines} procactor_ lines");
            for l in text
                .lines()
                .filter(|l| l.starts_with("procactor_actor_handled_total"))
            {
                println!("  {l}");
            }
        }
        Err(e) => {
            eprintln!("observe: reading its own /metrics failed: {e}");
            std::process::exit(1);
        }
    }
    publisher.stop();
    std::thread::sleep(Duration::from_millis(50));
    drop(jobs);
    if drainer.join_timeout(Duration::from_secs(5)).is_err() {
        let _ = drainer.kill();
    }
    root.shutdown(Duration::from_secs(10));
}
