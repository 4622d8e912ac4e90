//! The procactor benchmark: every workload run in procactor and, in the same run and
//! alternately, in Python's `multiprocessing` (`python3 bench/<script>.py <workload>`,
//! fork start method), then a table of medians and ratios.
//!
//! ```text
//! cargo run --release -p procactor-bench                 # full run, 5 rounds
//! cargo run --release -p procactor-bench -- --quick      # CI smoke run: small sizes, 1 round
//! cargo run --release -p procactor-bench -- --filter queue --reps 9 --json out.json
//! ```
//!
//! Options: `--reps N` (rounds, default 5), `--scale X` (sizes, default 1.0), `--quick`
//! (= `--reps 1 --scale 0.05`), `--filter S` (workloads whose name contains `S`, may be
//! repeated), `--no-python`, `--json PATH` (also write the table as JSON).
//!
//! The ratio column is "how many times better procactor is": Python / procactor for
//! times, procactor / Python for rates. Python's sizes are smaller than procactor's
//! where a full-size run would take minutes; every figure is per operation or per
//! second, so the sizes do not enter the ratio.

mod workloads;

use std::fmt::Write as _;
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
    json: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: procactor-bench [--quick] [--reps N] [--scale X] [--filter S]... \
         [--no-python] [--json PATH]"
    );
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut o = Options {
        reps: 5,
        scale: 1.0,
        filters: Vec::new(),
        python: true,
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--quick" => {
                o.reps = 1;
                o.scale = 0.05;
            }
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage()),
            "--scale" => o.scale = value().parse().unwrap_or_else(|_| usage()),
            "--filter" => o.filters.push(value()),
            "--no-python" => o.python = false,
            "--json" => o.json = Some(PathBuf::from(value())),
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

/// How long one Python run may take before it is killed.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the Python twin once; `Err` says why there is no figure.
fn run_python(dir: &Path, w: &Workload, scale: f64) -> Result<f64, String> {
    let child = Command::new("python3")
        .arg(dir.join(w.script))
        .arg(w.name)
        .env("PROCACTOR_BENCH_SCALE", scale.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    // a watchdog: a stuck Python run is killed instead of hanging the benchmark
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(PYTHON_TIMEOUT).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let out = out.map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("{} failed ({}): {last}", w.script, out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // one line: {"workload": "...", "value": 1.5, "unit": "..."}
    let line = text
        .lines()
        .find(|l| l.contains(&format!("\"{}\"", w.name)))
        .ok_or_else(|| format!("{} printed no line for {}", w.script, w.name))?;
    let value = line
        .split("\"value\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("cannot read the value in {line:?}"))?;
    Ok(value)
}

#[derive(Debug)]
struct Row {
    workload: Workload,
    ours: Vec<f64>,
    python: Vec<f64>,
    python_error: Option<String>,
}

impl Row {
    fn medians(&mut self) -> (f64, Option<f64>) {
        let ours = median(&mut self.ours);
        let py = (!self.python.is_empty()).then(|| median(&mut self.python));
        (ours, py)
    }

    /// How many times better procactor is than Python.
    fn ratio(ours: f64, py: f64, higher_is_better: bool) -> f64 {
        if higher_is_better {
            ours / py
        } else {
            py / ours
        }
    }
}

/// "2.50x better" for a ratio of 2.5, "1.25x worse" for 0.8 (never "0.80x better").
fn verdict(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.2}x better")
    } else {
        format!("{:.2}x worse", 1.0 / ratio)
    }
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".to_string(),
    }
}

fn main() {
    procactor::init();
    let o = parse_args();
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
    let python = o.python
        && Command::new("python3")
            .arg("--version")
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false);
    if o.python && !python {
        eprintln!("python3 not found: the Python column stays empty");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "procactor-bench: {} round(s), scale {}, {} CPU(s), load average {}",
        o.reps,
        o.scale,
        procactor::cpu_count(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for w in selected {
        let mut row = Row {
            workload: w,
            ours: Vec::new(),
            python: Vec::new(),
            python_error: None,
        };
        for _ in 0..o.reps {
            row.ours.push((w.run)(o.scale));
            if python && row.python_error.is_none() {
                match run_python(&dir, &w, o.scale) {
                    Ok(v) => row.python.push(v),
                    Err(e) => row.python_error = Some(e),
                }
            }
        }
        rows.push(row);
    }

    println!(
        "\n{:<34} {:>8} {:>12} {:>12} {:>14}",
        "workload", "unit", "procactor", "python", "procactor is"
    );
    let mut json = String::from("[\n");
    let count = rows.len();
    for (i, row) in rows.iter_mut().enumerate() {
        let w = row.workload;
        let (ours, py) = row.medians();
        let ratio = py.map(|py| Row::ratio(ours, py, w.higher_is_better));
        println!(
            "{:<34} {:>8} {:>12} {:>12} {:>14}",
            w.name,
            w.unit,
            fmt_value(ours),
            py.map_or_else(|| "-".to_string(), fmt_value),
            ratio.map_or_else(|| "-".to_string(), verdict),
        );
        if let Some(e) = &row.python_error {
            println!("    python: {e}");
        }
        let _ = writeln!(
            json,
            "  {{\"workload\": {}, \"unit\": {}, \"higher_is_better\": {}, \
             \"procactor\": {}, \"python\": {}, \"ratio\": {}, \"reps\": {}}}{}",
            json_str(w.name),
            json_str(w.unit),
            w.higher_is_better,
            json_num(Some(ours)),
            json_num(py),
            json_num(ratio),
            o.reps,
            if i + 1 < count { "," } else { "" }
        );
    }
    json.push_str("]\n");
    println!(
        "\nmedians of {} round(s); ratio = Python/procactor for times, \
         procactor/Python for rates; {:.1} s in all",
        o.reps,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &o.json {
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
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
    fn verdict_says_worse_below_one() {
        assert_eq!(verdict(2.5), "2.50x better");
        assert_eq!(verdict(1.0), "1.00x better");
        assert_eq!(verdict(0.8), "1.25x worse");
    }

    #[test]
    fn ratio_is_better_than_one_when_procactor_wins() {
        assert_eq!(Row::ratio(2.0, 1.0, true), 2.0);
        assert_eq!(Row::ratio(1.0, 2.0, false), 2.0);
        assert_eq!(Row::ratio(4.0, 2.0, false), 0.5);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(None), "null");
        assert_eq!(json_num(Some(1.5)), "1.5");
    }

    #[test]
    fn every_workload_name_is_in_its_python_script() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for w in workloads::ALL {
            let script = std::fs::read_to_string(dir.join(w.script)).expect("script");
            assert!(
                script.contains(&format!("\"{}\"", w.name)),
                "{} is not registered in {}",
                w.name,
                w.script
            );
        }
    }
}
