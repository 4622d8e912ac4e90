//! The three start methods side by side: each starts the same children and prints what
//! a start + join costs; then `Fork` is refused once the program has other threads.
//!
//! `Fork` goes first: it needs a single-threaded process, and the other two methods
//! start threads of procactor's own (the exit monitor, the fork server's relay).
//!
//! ```sh
//! cargo run --release --example start_methods
//! ```

use procactor::{current_process, parent_process, Process, StartMethod};
use std::time::Instant;

/// What a child reports: its name, its pid and its parent's pid as procactor tells it.
fn who(tag: String) -> String {
    let me = current_process();
    let parent = parent_process().map_or(0, |p| p.pid());
    format!("{tag}: {} (pid {}, parent {parent})", me.name(), me.pid())
}

fn noop() {}

fn median_us(method: StartMethod, n: usize) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let mut p = Process::new(noop, ())
                .start_method(method)
                .start()
                .expect("start");
            p.join().expect("join");
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

fn main() {
    procactor::init();
    println!("parent: pid {}", std::process::id());
    for method in [
        StartMethod::Fork,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ] {
        let mut p = Process::new(who, format!("{method:?}"))
            .name(format!("child-{method:?}"))
            .start_method(method)
            .start()
            .expect("start");
        p.join().expect("join");
        println!("{}", p.result().expect("result"));
        println!(
            "  start + join: median {:.0} µs over 50 starts",
            median_us(method, 50)
        );
    }

    // now there are threads: forking could copy a lock one of them holds, so Fork says no
    match Process::new(noop, ())
        .start_method(StartMethod::Fork)
        .start()
    {
        Ok(_) => println!("fork with threads: accepted (unexpected)"),
        Err(e) => println!("fork with threads: {e}"),
    }
}
