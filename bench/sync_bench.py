"""Python twins of bench/src/workloads/sync.rs (multiprocessing, fork start method).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/sync_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
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


# the time budget of the measured loops that can crawl, as on the Rust side
# (bench/src/workloads/mod.rs, `budget`): once it has passed the loop ends after the
# iteration under way and the figure is per iteration done
BUDGET_S = float(os.environ.get("PROCACTOR_BENCH_BUDGET", "20"))



def _increment_child(v, go, n, out, i):
    go.wait(60)
    t = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    out[i] = time.perf_counter() - t


def value_locked_increments_2proc(n=500_000):
    v = mp.Value("q", 0)
    go = mp.Event()
    out = mp.Array("d", 2)
    ps = [mp.Process(target=_increment_child, args=(v, go, n, out, i)) for i in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.1)
    go.set()
    for p in ps:
        p.join()
    assert v.value == 2 * n
    return 2 * n / max(out[:])


def _handoff_child(lock, turn, limit):
    done = 0
    while done < limit.value:
        with lock:
            if turn.value % 2 == 1:
                turn.value += 1
                done += 1


def lock_handoff_latency(rounds=20_000):
    """Returns (microseconds per hand-off, hand-offs done): at most `rounds` turns
    each; after BUDGET_S the parent stops after its turn under way (lowering `limit`
    under the lock) and the child after its matching one."""
    lock = mp.Lock()
    turn = mp.RawValue("q", 0)
    limit = mp.RawValue("q", rounds)
    p = mp.Process(target=_handoff_child, args=(lock, turn, limit))
    p.start()
    time.sleep(0.1)
    t = time.perf_counter()
    done = 0
    while done < rounds:
        with lock:
            if turn.value % 2 == 0:
                turn.value += 1
                done += 1
                if done < rounds and time.perf_counter() - t >= BUDGET_S:
                    limit.value = done
                    break
    while turn.value < 2 * done:
        pass
    secs = time.perf_counter() - t
    p.join()
    return secs * 1e6 / (2 * done), 2 * done


def _pong(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def event_set_wake_latency(rounds=10_000):
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=_pong, args=(ping, pong, rounds))
    p.start()
    time.sleep(0.1)
    t = time.perf_counter()
    for _ in range(rounds):
        ping.set()
        pong.wait()
        pong.clear()
    secs = time.perf_counter() - t
    p.join()
    return secs * 1e6 / (2 * rounds)


# untimed calls before the timed ones, as many as the Rust twin's
WARM_UP = 100_000


def uncontended_lock_ns(n=2_000_000):
    lock = mp.Lock()
    for _ in range(WARM_UP):
        lock.acquire()
        lock.release()
    t = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t) * 1e9 / n


def uncontended_semaphore_ns(n=2_000_000):
    sem = mp.Semaphore(1)
    for _ in range(WARM_UP):
        sem.acquire()
        sem.release()
    t = time.perf_counter()
    for _ in range(n):
        sem.acquire()
        sem.release()
    return (time.perf_counter() - t) * 1e9 / n


def _with_ops(fn, count, ops):
    return fn(count), ops


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "value_locked_increments_2proc": (
        lambda: _with_ops(value_locked_increments_2proc, n(500_000), 2 * n(500_000)),
        "ops/s",
    ),
    "lock_handoff_latency": (lambda: lock_handoff_latency(n(20_000)), "us"),
    "event_set_wake_latency": (
        lambda: _with_ops(event_set_wake_latency, n(10_000), 2 * n(10_000)),
        "us",
    ),
    "uncontended_lock_ns": (
        lambda: _with_ops(uncontended_lock_ns, n(2_000_000), n(2_000_000) + WARM_UP),
        "ns",
    ),
    "uncontended_semaphore_ns": (
        lambda: _with_ops(uncontended_semaphore_ns, n(2_000_000), n(2_000_000) + WARM_UP),
        "ns",
    ),
}


def main():
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)


if __name__ == "__main__":
    main()
