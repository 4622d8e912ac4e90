//! The procactor benchmark: every workload run in procactor and, in the same run and
//! alternately, in Python's `multiprocessing` (`python3 bench/<script>.py <workload>`,
//! fork start method unless the workload names another), then a table of medians,
//! CPU time per operation and ratios.
//!
//! ```text
//! cargo run --release -p procactor-bench                 # full run, 5 rounds
//! cargo run --release -p procactor-bench -- --quick      # CI smoke run: small sizes, 1 round
//! cargo run --release -p procactor-bench -- --filter queue --reps 9 --json out.json
//! cargo run --release -p procactor-bench -- --markdown-from bench/results/2026-12-07.json
//! ```
//!
//! Options: `--reps N` (rounds, default 5), `--scale X` (sizes, default 1.0), `--quick`
//! (= `--reps 1 --scale 0.05 --no-loaded`), `--filter S` (workloads whose id contains
//! `S`, may be repeated), `--no-python`, `--no-variants` (no no-spin and no loaded
//! rows), `--no-loaded` (no loaded rows), `--json
//! PATH` (also write the results as JSON; a Python twin that fails then makes the run
//! fail), `--markdown-from PATH` (print the README table of a results file, run nothing).
//!
//! How each figure is made:
//! - Every run of a workload, on either side, is a process of its own (procactor:
//!   this binary with `--worker ID`; Python: `python3 bench/<script>.py ID`), started
//!   by a runner that measures the CPU time (user + system) of that process and of
//!   every process it started ([`cpu`]). The CPU time of the same program doing
//!   nothing (binary or interpreter start, imports) is measured at the start and
//!   subtracted; the rest, divided by the operations the run did (warm-up included),
//!   is the "CPU µs/op" beside each figure. Setup inside the run (starting children,
//!   pools, managers) is included, on both sides.
//! - In each round procactor runs first in odd rounds and Python first in even ones.
//! - Latency workloads (a round trip or a wake-up bounds them) get three more rows:
//!   `no spin` (procactor with `PROCACTOR_SPIN=0`: no spin-before-sleep anywhere;
//!   compared with the same round's Python figure, which the variable does not
//!   affect), `loaded` (both sides again with one busy neighbour process per CPU
//!   spinning beside them) and `loaded, no spin`.
//! - The measured loops that can crawl (`lock_handoff_latency`: Python's hand-off takes
//!   milliseconds; `actor_call_rtt` beside busy neighbours) stop once a time budget has
//!   passed (`PROCACTOR_BENCH_BUDGET` seconds, default 20, the same on both sides) and
//!   divide by the iterations done, which are the run's operations (`*_ops` in the
//!   JSON). The budget is in the JSON's `meta` and in the table's heading.
//!
//! The ratio column is "how many times better procactor is": Python / procactor for
//! times, procactor / Python for rates. Python's sizes are smaller than procactor's
//! where a full-size run would take minutes; every figure is per operation or per
//! second, so the sizes do not enter the ratio.

mod cpu;
mod report;
mod workloads;

use report::{fmt_value, json_num, json_nums, json_str, variant_label, verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use workloads::Workload;

#[derive(Debug)]
struct Options {
    reps: usize,
    scale: f64,
    filters: Vec<String>,
    python: bool,
    variants: bool,
    loaded: bool,
    json: Option<PathBuf>,
    markdown_from: Option<String>,
    worker: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: procactor-bench [--quick] [--reps N] [--scale X] [--filter S]... \
         [--no-python] [--no-variants] [--no-loaded] [--json PATH] | --markdown-from PATH"
    );
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut o = Options {
        reps: 5,
        scale: 1.0,
        filters: Vec::new(),
        python: true,
        variants: true,
        loaded: true,
        json: None,
        markdown_from: None,
        worker: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--quick" => {
                o.reps = 1;
                o.scale = 0.05;
                o.loaded = false;
            }
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage()),
            "--scale" => o.scale = value().parse().unwrap_or_else(|_| usage()),
            "--filter" => o.filters.push(value()),
            "--no-python" => o.python = false,
            "--no-variants" => o.variants = false,
            "--no-loaded" => o.loaded = false,
            "--json" => o.json = Some(PathBuf::from(value())),
            "--markdown-from" => o.markdown_from = Some(value()),
            "--worker" => o.worker = Some(value()),
            _ => usage(),
        }
    }
    if o.reps == 0 || !o.scale.is_finite() || o.scale <= 0.0 {
        usage()
    }
    o
}

/// The median of `xs` (NaN-free), reordering it.
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// How long one run may take before its whole process group is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// One run's result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f64,
    ops: f64,
    cpu_s: f64,
}

/// Which side runs, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Procactor { spin: bool },
    Python,
}

/// `--worker ID`: runs procactor's side of one workload once and prints its line.
fn worker_main(name: &str, scale: f64) -> ! {
    let (value, ops) = if name == "noop" {
        (0.0, 1)
    } else {
        let Some(w) = workloads::ALL.iter().find(|w| w.name == name) else {
            eprintln!("no workload {name}");
            std::process::exit(2)
        };
        (w.run)(scale)
    };
    println!(
        "{{\"workload\": {}, \"value\": {}, \"ops\": {ops}}}",
        json_str(name),
        json_num(Some(value))
    );
    std::process::exit(0)
}

/// Runs one side of workload `name` once, through the CPU-measuring runner.
fn run_once(
    dir: &Path,
    script: &str,
    name: &str,
    side: Side,
    scale: f64,
) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--measure");
    match side {
        Side::Procactor { spin } => {
            cmd.arg(&exe)
                .args(["--worker", name, "--scale", &scale.to_string()]);
            if !spin {
                cmd.env("PROCACTOR_SPIN", "0");
            } else {
                cmd.env_remove("PROCACTOR_SPIN");
            }
        }
        Side::Python => {
            cmd.arg("python3").arg(dir.join(script)).arg(name);
        }
    }
    cmd.env("PROCACTOR_BENCH_SCALE", scale.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // its own process group: a stuck run is killed with everything it started
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let who = match side {
        Side::Python => script.to_string(),
        Side::Procactor { .. } => "procactor worker".to_string(),
    };
    let mut child = cmd.spawn().map_err(|e| format!("{who}: {e}"))?;
    let pgid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(RUN_TIMEOUT).is_err() {
            if let Some(p) = rustix::process::Pid::from_raw(pgid as i32) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
        }
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut err_pipe = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    if let Some(p) = child.stdout.as_mut() {
        let _ = p.read_to_string(&mut stdout);
    }
    let status = child.wait();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    if let Ok(s) = err_reader.join() {
        stderr = s;
    }
    let status = status.map_err(|e| format!("{who}: {e}"))?;
    if !status.success() {
        let last = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        return Err(format!("{who} {name} failed ({status}): {last}"));
    }
    let mut value = None;
    let mut ops = None;
    let mut cpu_s = None;
    for line in stdout.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(j) = report::parse(line.trim()) else {
            continue;
        };
        if j.get("workload").and_then(report::Json::str) == Some(name) {
            value = j.get("value").and_then(report::Json::num);
            ops = j.get("ops").and_then(report::Json::num);
        }
        if let Some(c) = j.get("cpu_s").and_then(report::Json::num) {
            cpu_s = Some(c);
        }
    }
    match (value, ops, cpu_s) {
        (Some(value), Some(ops), Some(cpu_s)) if ops > 0.0 => Ok(Sample { value, ops, cpu_s }),
        _ => Err(format!(
            "{who} printed no complete result for {name}: {stdout:?}"
        )),
    }
}

/// The CPU seconds of a program that does nothing, per side and script (the median
/// of three runs): subtracted from every run's CPU time.
#[derive(Debug, Default)]
struct Baselines(BTreeMap<String, f64>);

impl Baselines {
    fn get(&mut self, dir: &Path, script: &str, side: Side) -> f64 {
        let key = match side {
            Side::Python => script.to_string(),
            Side::Procactor { .. } => "procactor".to_string(),
        };
        if let Some(v) = self.0.get(&key) {
            return *v;
        }
        let mut xs: Vec<f64> = (0..3)
            .filter_map(|_| run_once(dir, script, "noop", side, 1.0).ok())
            .map(|s| s.cpu_s)
            .collect();
        let v = if xs.is_empty() { 0.0 } else { median(&mut xs) };
        self.0.insert(key, v);
        v
    }
}

/// The samples of one row (one workload, one variant).
#[derive(Debug)]
struct Row {
    workload: Workload,
    variant: &'static str,
    ours: Vec<Sample>,
    ours_base: f64,
    python: Vec<Sample>,
    python_base: f64,
    /// The row whose Python figures this one shows (the no-spin rows).
    python_from: Option<&'static str>,
    ours_error: Option<String>,
    python_error: Option<String>,
}

/// Medians and ranges of one side's samples.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    min: f64,
    max: f64,
    cpu_us: f64,
}

fn summarize(samples: &[Sample], base_cpu: f64) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().map(|s| s.value).collect();
    let mut cpu: Vec<f64> = samples
        .iter()
        .map(|s| (s.cpu_s - base_cpu).max(0.0) * 1e6 / s.ops)
        .collect();
    Some(Summary {
        median: median(&mut v),
        min: v[0],
        max: v[v.len() - 1],
        cpu_us: median(&mut cpu),
    })
}

/// How many times better procactor is than Python.
fn ratio(ours: f64, py: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        ours / py
    } else {
        py / ours
    }
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Today's date (UTC), from the clock: days since the epoch to a civil date.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days-to-civil algorithm
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hm = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        hm / 3600,
        hm % 3600 / 60
    )
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // the runner and the busy neighbours start no procactor children: they run before
    // `init` (and take no other options)
    match argv.get(1).map(String::as_str) {
        Some("--measure") => cpu::measure_main(&argv[2..]),
        Some("--busy") => cpu::busy_main(),
        _ => {}
    }
    procactor::init();
    let o = parse_args();
    if let Some(path) = &o.markdown_from {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1)
        });
        match report::parse(&text).and_then(|j| report::markdown(&j, path)) {
            Ok(md) => print!("{}{path} -->\n{md}{}\n", report::BEGIN, report::END),
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1)
            }
        }
        return;
    }
    if let Some(name) = &o.worker {
        worker_main(name, o.scale);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let selected: Vec<Workload> = workloads::ALL
        .iter()
        .filter(|w| o.filters.is_empty() || o.filters.iter().any(|f| w.name.contains(f)))
        .copied()
        .collect();
    if selected.is_empty() {
        eprintln!("no workload matches the filter");
        std::process::exit(2);
    }
    let python_version = Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let python = o.python && python_version.is_some();
    if o.python && !python {
        eprintln!("python3 not found: the Python column stays empty");
    }
    let load_before = load_average();
    let cpus = procactor::cpu_count();
    let budget_s = workloads::budget().as_secs_f64();
    println!(
        "procactor-bench: {} round(s), scale {}, {cpus} CPU(s), load average {load_before}, \
         time budget {budget_s} s for the loops that can crawl",
        o.reps, o.scale,
    );

    let started = Instant::now();
    let mut baselines = Baselines::default();
    let mut rows: Vec<Row> = Vec::new();
    let new_row = |w: Workload, variant: &'static str| Row {
        workload: w,
        variant,
        ours: Vec::new(),
        ours_base: 0.0,
        python: Vec::new(),
        python_base: 0.0,
        python_from: None,
        ours_error: None,
        python_error: None,
    };
    // one phase: every selected workload (only the latency ones when `latency_only`),
    // `reps` rounds, procactor with spinning, Python, and for latency workloads
    // procactor without spinning
    let phase = |rows: &mut Vec<Row>, baselines: &mut Baselines, loaded: bool| {
        for w in selected.iter().filter(|w| !loaded || w.latency) {
            let base_name: &'static str = if loaded { "loaded" } else { "base" };
            let nospin_name: &'static str = if loaded { "loaded_nospin" } else { "nospin" };
            let mut row = new_row(*w, base_name);
            let mut nospin = (o.variants && w.latency).then(|| new_row(*w, nospin_name));
            row.ours_base = baselines.get(&dir, w.script, Side::Procactor { spin: true });
            if python {
                row.python_base = baselines.get(&dir, w.script, Side::Python);
            }
            for round in 0..o.reps {
                let python_first = round % 2 == 1;
                let run_python = |row: &mut Row| {
                    if python && row.python_error.is_none() {
                        match run_once(&dir, w.script, w.name, Side::Python, o.scale) {
                            Ok(s) => row.python.push(s),
                            Err(e) => row.python_error = Some(e),
                        }
                    }
                };
                if python_first {
                    run_python(&mut row);
                }
                for (r, spin) in [(Some(&mut row), true), (nospin.as_mut(), false)] {
                    let Some(r) = r else { continue };
                    if r.ours_error.is_some() {
                        continue;
                    }
                    match run_once(&dir, w.script, w.name, Side::Procactor { spin }, o.scale) {
                        Ok(s) => r.ours.push(s),
                        Err(e) => r.ours_error = Some(e),
                    }
                }
                if !python_first {
                    run_python(&mut row);
                }
            }
            if let Some(mut ns) = nospin {
                ns.ours_base = row.ours_base;
                ns.python = row.python.clone();
                ns.python_base = row.python_base;
                ns.python_error = row.python_error.clone();
                ns.python_from = Some(base_name);
                rows.push(row);
                rows.push(ns);
            } else {
                rows.push(row);
            }
            eprint!(".");
        }
    };
    phase(&mut rows, &mut baselines, false);
    let loaded_load;
    if o.variants && o.loaded && selected.iter().any(|w| w.latency) {
        match cpu::Neighbours::start(cpus) {
            Ok(n) => {
                std::thread::sleep(Duration::from_millis(200));
                loaded_load = load_average();
                phase(&mut rows, &mut baselines, true);
                drop(n);
            }
            Err(e) => {
                eprintln!("no loaded rows: {e}");
                loaded_load = String::new();
            }
        }
    } else {
        loaded_load = String::new();
    }
    eprintln!();
    // the loaded rows go right after their workload's other rows
    rows.sort_by_key(|r| {
        let pos = workloads::ALL
            .iter()
            .position(|w| w.name == r.workload.name)
            .unwrap_or(usize::MAX);
        let v = ["base", "nospin", "loaded", "loaded_nospin"]
            .iter()
            .position(|v| *v == r.variant)
            .unwrap_or(9);
        (pos, v)
    });

    println!(
        "\n{:<32} {:<15} {:>7} {:>10} {:>9} {:>10} {:>9} {:>14}",
        "workload", "run", "unit", "procactor", "cpu us/op", "python", "cpu us/op", "procactor is"
    );
    let mut json_rows = Vec::new();
    let mut failed = false;
    for row in &rows {
        let w = row.workload;
        let ours = summarize(&row.ours, row.ours_base);
        let py = summarize(&row.python, row.python_base);
        let r = ours
            .zip(py)
            .map(|(a, b)| ratio(a.median, b.median, w.higher_is_better));
        let dash = || "-".to_string();
        println!(
            "{:<32} {:<15} {:>7} {:>10} {:>9} {:>10} {:>9} {:>14}",
            w.name,
            variant_label(row.variant),
            w.unit,
            ours.map_or_else(dash, |s| fmt_value(s.median)),
            ours.map_or_else(dash, |s| fmt_value(s.cpu_us)),
            py.map_or_else(dash, |s| fmt_value(s.median)),
            if row.python_from.is_some() {
                "″".to_string()
            } else {
                py.map_or_else(dash, |s| fmt_value(s.cpu_us))
            },
            r.map_or_else(dash, verdict),
        );
        if let Some(e) = &row.ours_error {
            println!("    procactor: {e}");
            failed = true;
        }
        if let Some(e) = &row.python_error {
            if row.python_from.is_none() {
                println!("    python: {e}");
            }
            if o.json.is_some() {
                failed = true;
            }
        }
        let mut j = String::new();
        let _ = write!(
            j,
            "    {{\"workload\": {}, \"variant\": {}, \"label\": {}, \"unit\": {}, \
             \"higher_is_better\": {}, \"latency\": {},\n      \
             \"procactor\": {}, \"procactor_min\": {}, \"procactor_max\": {}, \
             \"procactor_cpu_us\": {}, \"procactor_runs\": {}, \"procactor_ops\": {}, \
             \"procactor_cpu_s\": {}, \"procactor_error\": {},\n      \
             \"python\": {}, \"python_min\": {}, \"python_max\": {}, \"python_cpu_us\": {}, \
             \"python_runs\": {}, \"python_ops\": {}, \"python_cpu_s\": {}, \
             \"python_error\": {}, \"python_from\": {}, \"ratio\": {}}}",
            json_str(w.name),
            json_str(row.variant),
            json_str(w.label),
            json_str(w.unit),
            w.higher_is_better,
            w.latency,
            json_num(ours.map(|s| s.median)),
            json_num(ours.map(|s| s.min)),
            json_num(ours.map(|s| s.max)),
            json_num(ours.map(|s| s.cpu_us)),
            json_nums(&row.ours.iter().map(|s| s.value).collect::<Vec<_>>()),
            json_nums(&row.ours.iter().map(|s| s.ops).collect::<Vec<_>>()),
            json_nums(&row.ours.iter().map(|s| s.cpu_s).collect::<Vec<_>>()),
            row.ours_error.as_deref().map_or("null".into(), json_str),
            json_num(py.map(|s| s.median)),
            json_num(py.map(|s| s.min)),
            json_num(py.map(|s| s.max)),
            json_num(py.map(|s| s.cpu_us)),
            json_nums(&row.python.iter().map(|s| s.value).collect::<Vec<_>>()),
            json_nums(&row.python.iter().map(|s| s.ops).collect::<Vec<_>>()),
            json_nums(&row.python.iter().map(|s| s.cpu_s).collect::<Vec<_>>()),
            row.python_error.as_deref().map_or("null".into(), json_str),
            row.python_from.map_or("null".into(), json_str),
            json_num(r),
        );
        json_rows.push(j);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\nmedians of {} round(s); ratio = Python/procactor for times, procactor/Python for \
         rates; cpu us/op = user+sys CPU microseconds of every process of the run, per \
         operation; {secs:.0} s in all",
        o.reps,
    );
    if let Some(path) = &o.json {
        let command: Vec<String> = std::env::args().skip(1).collect();
        let baselines: Vec<String> = baselines
            .0
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), json_num(Some(*v))))
            .collect();
        let json = format!(
            "{{\n  \"meta\": {{\"date\": {}, \"machine\": {}, \"cpus\": {cpus}, \"kernel\": {}, \
             \"python\": {}, \"command\": {}, \"reps\": {}, \"scale\": {}, \
             \"load_before\": {}, \"load_with_neighbours\": {}, \"seconds\": {}, \
             \"budget_s\": {}, \"baseline_cpu_s\": {{{}}}}},\n  \"rows\": [\n{}\n  ]\n}}\n",
            json_str(&today()),
            json_str(&machine()),
            json_str(
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ),
            json_str(python_version.as_deref().unwrap_or("no python3")),
            json_str(&format!(
                "cargo run --release -p procactor-bench -- {}",
                command.join(" ")
            )),
            o.reps,
            o.scale,
            json_str(&load_before),
            json_str(&loaded_load),
            json_num(Some(secs.round())),
            json_num(Some(budget_s)),
            baselines.join(", "),
            json_rows.join(",\n"),
        );
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if failed {
        eprintln!("some runs failed (see above)");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratio_is_better_than_one_when_procactor_wins() {
        assert_eq!(ratio(2.0, 1.0, true), 2.0);
        assert_eq!(ratio(1.0, 2.0, false), 2.0);
        assert_eq!(ratio(4.0, 2.0, false), 0.5);
    }

    #[test]
    fn cpu_per_op_subtracts_the_baseline_and_divides_by_the_operations() {
        let s = |value, ops, cpu_s| Sample { value, ops, cpu_s };
        let sum = summarize(
            &[
                s(3.0, 1000.0, 0.5),
                s(1.0, 1000.0, 0.3),
                s(2.0, 2000.0, 0.9),
            ],
            0.1,
        )
        .expect("samples");
        assert_eq!((sum.median, sum.min, sum.max), (2.0, 1.0, 3.0));
        // (0.5-0.1)/1000 = 400 us, (0.3-0.1)/1000 = 200 us, (0.9-0.1)/2000 = 400 us
        assert!((sum.cpu_us - 400.0).abs() < 1e-9, "{}", sum.cpu_us);
        // never negative
        assert_eq!(
            summarize(&[s(1.0, 10.0, 0.0)], 0.1).expect("one").cpu_us,
            0.0
        );
        assert!(summarize(&[], 0.0).is_none());
    }

    #[test]
    fn every_workload_id_is_in_its_python_script_with_its_operation_count() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for w in workloads::ALL {
            let script = std::fs::read_to_string(dir.join(w.script)).expect("script");
            assert!(
                script.contains(&format!("\"{}\"", w.name)),
                "{} is not registered in {}",
                w.name,
                w.script
            );
            assert!(
                script.contains("\"noop\""),
                "{} has no noop baseline",
                w.script
            );
        }
    }

    #[test]
    fn the_date_is_a_civil_date() {
        let d = today();
        assert_eq!(d.len(), "2026-12-07 00:15 UTC".len(), "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
