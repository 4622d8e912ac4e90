"""Python twins of bench/src/workloads/pool.rs (multiprocessing.Pool(2), fork start
method).

Each twin starts the pool, warms it up with one small map (untimed), times the
workload, and ends the pool (untimed).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/pool_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import sys
import time

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))
PROCESSES = 2


def n(base):
    return max(1, int(base * SCALE))


def square(x):
    return x * x


def _warm_pool():
    pool = mp.Pool(PROCESSES)
    assert pool.map(square, range(1000))[999] == 999 * 999
    return pool


def pool_map(count):
    with _warm_pool() as pool:
        t0 = time.perf_counter()
        r = pool.map(square, range(count))
        dt = time.perf_counter() - t0
    assert len(r) == count and r[-1] == (count - 1) ** 2
    return count / dt


def pool_map_cs1(count):
    with _warm_pool() as pool:
        t0 = time.perf_counter()
        r = pool.map(square, range(count), chunksize=1)
        dt = time.perf_counter() - t0
    assert len(r) == count and r[-1] == (count - 1) ** 2
    return count / dt


def pool_imap_unordered_cs1(count):
    with _warm_pool() as pool:
        t0 = time.perf_counter()
        seen = 0
        total = 0
        for r in pool.imap_unordered(square, range(count), chunksize=1):
            total += r
            seen += 1
        dt = time.perf_counter() - t0
    assert seen == count and total == sum(x * x for x in range(count))
    return count / dt


# The round-trip rows warm up with at least 1000 round trips and for at least this
# long, as procactor's twins do (bench/src/workloads/pool.rs, WARM_UP).
WARM_UP_S = 0.25


def _warm_up(once):
    t = time.perf_counter()
    x = 0
    while x < 1000 or time.perf_counter() - t < WARM_UP_S:
        once(x)
        x += 1
    return x


def pool_apply_async_rtt(rounds):
    def once(x):
        assert pool.apply_async(square, (x,)).get() == x * x

    with _warm_pool() as pool:
        warm = _warm_up(once)
        t0 = time.perf_counter()
        for x in range(rounds):
            pool.apply_async(square, (x,)).get()
        dt = time.perf_counter() - t0
    return dt * 1e6 / rounds, rounds + 1000 + warm


def pool_apply_await_rtt(rounds):
    """The asyncio way to await one task in another process: run_in_executor on a
    ProcessPoolExecutor of 2 (started and warmed up untimed)."""
    import asyncio
    from concurrent.futures import ProcessPoolExecutor

    async def calls(ex):
        loop = asyncio.get_running_loop()
        t = time.perf_counter()
        warm = 0
        while warm < 1000 or time.perf_counter() - t < WARM_UP_S:
            assert await loop.run_in_executor(ex, square, warm) == warm * warm
            warm += 1
        t0 = time.perf_counter()
        for x in range(rounds):
            await loop.run_in_executor(ex, square, x)
        return time.perf_counter() - t0, warm

    with ProcessPoolExecutor(2) as ex:
        dt, warm = asyncio.run(calls(ex))
    return dt * 1e6 / rounds, rounds + 1000 + warm


def _with_ops(fn, count, ops):
    return fn(count), ops


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "pool_map": (lambda: _with_ops(pool_map, n(200_000), n(200_000) + 1000), "tasks/s"),
    "pool_map_cs1": (lambda: _with_ops(pool_map_cs1, n(20_000), n(20_000) + 1000), "tasks/s"),
    "pool_imap_unordered_cs1": (
        lambda: _with_ops(pool_imap_unordered_cs1, n(50_000), n(50_000) + 1000),
        "tasks/s",
    ),
    "pool_apply_async_rtt": (lambda: pool_apply_async_rtt(n(5_000)), "us"),
    "pool_apply_await_rtt": (lambda: pool_apply_await_rtt(n(5_000)), "us"),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
