"""Python twins of bench/src/workloads/queue.rs (multiprocessing, fork start method).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/queue_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import sys
import time

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))


def n(base):
    return max(1, int(base * SCALE))


SMALL_S = "abcdefghijklmnopqrstuvwxyz012345"


def produce(go, q, n):
    go.get()
    for i in range(n):
        q.put((i, SMALL_S))


def consume(q, n):
    for _ in range(n):
        q.get()


def queue_1to1(n):
    go, q = mp.Queue(), mp.Queue()
    p = mp.Process(target=produce, args=(go, q, n))
    p.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    go.put(None)
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t0
    p.join()
    return n / dt


def queue_1to1_async(n):
    # asyncio has no multiprocessing queue: the usual way is a thread-pool hop per get
    import asyncio

    go, q = mp.Queue(), mp.Queue()
    p = mp.Process(target=produce, args=(go, q, n))
    p.start()
    time.sleep(0.05)

    async def drain():
        loop = asyncio.get_running_loop()
        for _ in range(n):
            await loop.run_in_executor(None, q.get)

    t0 = time.perf_counter()
    go.put(None)
    asyncio.run(drain())
    dt = time.perf_counter() - t0
    p.join()
    return n / dt


def queue_2to2(n):
    go, q = mp.Queue(), mp.Queue()
    half = n // 2
    ps = [mp.Process(target=produce, args=(go, q, half)) for _ in range(2)]
    cs = [mp.Process(target=consume, args=(q, half)) for _ in range(2)]
    for x in ps + cs:
        x.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    go.put(None)
    go.put(None)
    for c in cs:
        c.join()
    dt = time.perf_counter() - t0
    for p in ps:
        p.join()
    return 2 * half / dt


def echo(req, resp):
    while True:
        x = req.get()
        if x is None:
            return
        resp.put(x + 1)


def queue_round_trip(n):
    req, resp = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(req, resp))
    p.start()
    for i in range(1000):  # as many untimed round trips as the Rust twin
        req.put(i)
        resp.get()
    t0 = time.perf_counter()
    for i in range(n):
        req.put(i)
        resp.get()
    dt = time.perf_counter() - t0
    req.put(None)
    p.join()
    return dt * 1e6 / n


def drain(q, n):
    total = 0
    for _ in range(n):
        total += q.get()[0]
    return total


def drain_and_report(q, n, out):
    out.put(drain(q, n))


def queue_backlog(n):
    # every item is put before the consumer process exists (Python's feeder thread
    # holds what the pipe cannot), then one consumer drains them
    q, out = mp.Queue(), mp.Queue()
    t0 = time.perf_counter()
    for i in range(n):
        q.put((i, SMALL_S))
    p = mp.Process(target=drain_and_report, args=(q, n, out))
    p.start()
    total = out.get()
    dt = time.perf_counter() - t0
    p.join()
    assert total == n * (n - 1) // 2
    return n / dt


def joinable_worker(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            return


def joinable(n):
    q = mp.JoinableQueue()
    p = mp.Process(target=joinable_worker, args=(q,))
    p.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    for i in range(n):
        q.put((i, SMALL_S))
    q.join()
    dt = time.perf_counter() - t0
    q.put(None)
    p.join()
    return n / dt


def put_big(go, q, size, reps):
    msg = bytes(size)
    q.put(msg)  # one untimed message first, as in the Rust twin
    go.get()
    for _ in range(reps):
        q.put(msg)


def big_message_16mib_through_64kib(reps):
    # Python's Queue has no ring size: the pipe buffer (64 KiB on Linux) plays that role
    size = 16 << 20
    go, q = mp.Queue(), mp.Queue()
    p = mp.Process(target=put_big, args=(go, q, size, reps))
    p.start()
    assert len(q.get()) == size
    t0 = time.perf_counter()
    go.put(None)
    for _ in range(reps):
        assert len(q.get()) == size
    dt = time.perf_counter() - t0
    p.join()
    return size * reps / dt / 1e9


def _with_ops(fn, count, ops):
    return fn(count), ops


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "queue_1to1": (lambda: _with_ops(queue_1to1, n(200_000), n(200_000)), "msgs/s"),
    "queue_1to1_async": (lambda: _with_ops(queue_1to1_async, n(50_000), n(50_000)), "msgs/s"),
    "queue_2to2": (lambda: _with_ops(queue_2to2, 2 * n(100_000), 2 * n(100_000)), "msgs/s"),
    "queue_round_trip": (lambda: _with_ops(queue_round_trip, n(5_000), n(5_000) + 1000), "us"),
    "queue_backlog_1m": (lambda: _with_ops(queue_backlog, n(1_000_000), n(1_000_000)), "msgs/s"),
    "joinable": (lambda: _with_ops(joinable, n(200_000), n(200_000)), "items/s"),
    "big_message_16mib_through_64kib": (
        lambda: _with_ops(big_message_16mib_through_64kib, n(10), n(10) + 1),
        "GB/s",
    ),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
