//! CPU time of a whole run, measured the same way for both sides, and the busy
//! neighbours of the loaded rows.
//!
//! Every run (procactor's worker or a Python twin) is started by a small runner, this
//! binary with `--measure PROGRAM ARGS...`: the runner makes itself a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), starts the program, waits for it, then reaps every
//! descendant left behind (a fork server, Python's resource tracker: orphans come to
//! the runner instead of `init`), and prints the user + system time of all of them:
//! the `cutime + cstime` of `/proc/self/stat`, which the kernel adds up for every
//! reaped child and, through each child's own reaping, every descendant. Nothing of
//! the runner itself is counted, and the method is the same whatever the program is.
//! The resolution is the kernel's clock tick (10 ms at the usual 100 Hz) per run.

use rustix::process::{self, Pid, Signal, WaitOptions};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the runner waits for orphans (a fork server noticing its parent died)
/// after the program ended, before it kills them.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Reads this process's reaped children's CPU time (`cutime + cstime`), in seconds.
fn children_cpu_seconds() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    ticks_of_stat(&stat)
        .map(|t| t as f64 / rustix::param::clock_ticks_per_second() as f64)
        .ok_or_else(|| format!("cannot read cutime/cstime in {stat:?}"))
}

/// `cutime + cstime` (fields 16 and 17) of a `/proc/<pid>/stat` line.
pub(crate) fn ticks_of_stat(stat: &str) -> Option<u64> {
    // the command name (field 2) is in parentheses and may hold spaces: count after it
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field k is fields[k - 3]
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(cutime + cstime)
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line.
fn ppid_of_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reaps whatever child has ended, without waiting; `Ok(true)` if there are no
/// children at all.
fn reap_ready() -> Result<bool, String> {
    loop {
        match process::wait(WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(false),
            Err(rustix::io::Errno::CHILD) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}

/// This process's children, from `/proc`.
fn my_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| ppid_of_stat(&s))
                == Some(me)
        })
        .collect()
}

/// The runner: `--measure PROGRAM ARGS...`. Prints the program's output, then one
/// line `{"cpu_s": X}`, and exits with the program's exit code (1 if a signal ended
/// it). Called before `procactor::init()`: it starts no procactor children.
pub(crate) fn measure_main(cmd: &[String]) -> ! {
    let fail = |why: String| -> ! {
        eprintln!("procactor-bench --measure: {why}");
        std::process::exit(1)
    };
    let Some((program, args)) = cmd.split_first() else {
        fail("no program given".into())
    };
    if let Err(e) = process::set_child_subreaper(Some(process::getpid())) {
        fail(format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| fail(format!("{program}: {e}")));
    // the descendants left behind: give them time to notice and end, then kill them
    let until = Instant::now() + ORPHAN_GRACE;
    loop {
        match reap_ready() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => fail(e),
        }
        if Instant::now() >= until {
            for pid in my_children() {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    let _ = process::kill_process(pid, Signal::KILL);
                }
            }
            let _ = process::wait(WaitOptions::empty());
            continue;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let cpu = children_cpu_seconds().unwrap_or_else(|e| fail(e));
    println!("{{\"cpu_s\": {cpu}}}");
    std::process::exit(status.code().unwrap_or(1))
}

/// A busy neighbour: `--busy`. Spins until its parent goes away (checked every few
/// milliseconds, so that it never outlives the benchmark) or for an hour at most.
pub(crate) fn busy_main() -> ! {
    let parent = std::os::unix::process::parent_id();
    let start = Instant::now();
    let mut x = 0u64;
    loop {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        if std::os::unix::process::parent_id() != parent
            || start.elapsed() > Duration::from_secs(3600)
        {
            std::process::exit(0)
        }
    }
}

/// Busy neighbour processes, one per CPU, for the loaded rows; killed and reaped on
/// drop.
#[derive(Debug)]
pub(crate) struct Neighbours(Vec<std::process::Child>);

impl Neighbours {
    /// Starts `n` busy neighbours.
    pub(crate) fn start(n: usize) -> Result<Neighbours, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut v = Neighbours(Vec::new());
        for _ in 0..n {
            let c = Command::new(&exe)
                .arg("--busy")
                .stdin(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("busy neighbour: {e}"))?;
            v.0.push(c);
        }
        Ok(v)
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // a command name with spaces and a parenthesis: fields are counted after the last ')'
        let line = "42 (a b) c) S 7 42 42 0 -1 4194560 100 200 0 0 11 12 13 14 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        assert_eq!(ppid_of_stat(line), Some(7));
        assert_eq!(ticks_of_stat(line), Some(13 + 14));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn our_own_stat_parses() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert_eq!(
            ppid_of_stat(&stat),
            Some(std::os::unix::process::parent_id())
        );
        assert!(ticks_of_stat(&stat).is_some());
    }
}
