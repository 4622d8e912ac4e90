//! Smoke test of the async building blocks (queues) under tokio and block_on.
mod common;
use procactor::{Process, Queue};
use std::time::{Duration, Instant};

fn producer((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn get_async_across_processes_on_tokio_and_block_on() {
    procactor::init();
    common::watchdog(120, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let n = 20_000;
        let mut p = Process::new(producer, (q.clone(), n)).start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = Instant::now();
        let sum = rt.block_on(async {
            let mut s = 0;
            for _ in 0..n / 2 {
                s += q.get_async().await.unwrap();
            }
            s
        });
        let sum2: u64 = futures::executor::block_on(async {
            let mut s = 0;
            for _ in 0..n / 2 {
                s += q.get_async().await.unwrap();
            }
            s
        });
        eprintln!("{} items in {:?}", n, t.elapsed());
        assert_eq!(sum + sum2, n * (n - 1) / 2);
        p.join_timeout(Duration::from_secs(30)).unwrap();
    });
}
