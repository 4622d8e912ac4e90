"""Python twins of bench/src/workloads/{process,pipe}.rs (multiprocessing, fork start
method unless a workload names another).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/mp_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))
SMALL = (1, "abcdefghijklmnopqrstuvwxyz012345")


def n(base):
    return max(1, int(base * SCALE))


def _noop():
    pass


# Untimed runs first, for at least this long (at least one): as bench/src's WARM_UP.
WARM_UP_S = 0.030


def _warm_up(once):
    """Runs once() untimed for WARM_UP_S (at least once); returns how many times."""
    t0 = time.perf_counter()
    once()
    runs = 1
    while time.perf_counter() - t0 < WARM_UP_S:
        once()
        runs += 1
    return runs


def _start_join_with(method, count):
    ctx = mp.get_context(method)

    def start_join():
        p = ctx.Process(target=_noop)
        p.start()
        p.join()

    return _median_ms(count, start_join)


def _median_ms(count, once):
    """Median milliseconds of count timed runs of once(), after the warm-up, and the
    number of runs in all."""
    runs = _warm_up(once)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), runs + count


def _fork_wait():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _fork_exec():
    pid = os.posix_spawn("/bin/true", ["/bin/true"], os.environ)
    os.waitpid(pid, 0)


def _echo(conn):
    # a forked child inherits the parent's end too, so EOF never comes: None stops it
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def pipe_round_trip_small(rounds):
    here, there = mp.Pipe()
    p = mp.Process(target=_echo, args=(there,))
    p.start()
    there.close()
    for _ in range(1000):
        here.send(SMALL)
        here.recv()
    t0 = time.perf_counter()
    for _ in range(rounds):
        here.send(SMALL)
        here.recv()
    dt = time.perf_counter() - t0
    here.send(None)
    p.join()
    return dt * 1e6 / rounds


def _send_frames(conn, size, reps):
    frame = b"\x5a" * size
    for _ in range(reps):
        conn.send_bytes(frame)


def pipe_bulk_1mib(reps):
    size = 1 << 20
    rx, tx = mp.Pipe(duplex=False)
    p = mp.Process(target=_send_frames, args=(tx, size, reps + 1))
    p.start()
    tx.close()
    buf = bytearray(size)
    assert rx.recv_bytes_into(buf) == size
    t0 = time.perf_counter()
    for _ in range(reps):
        assert rx.recv_bytes_into(buf) == size
    dt = time.perf_counter() - t0
    p.join()
    return size * reps / dt / 1e9


def _with_ops(fn, count, extra=0):
    return fn(count), count + extra


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "process_start_join": (lambda: _start_join_with("fork", n(50)), "ms"),
    "process_start_join_spawn": (lambda: _start_join_with("spawn", n(20)), "ms"),
    "process_start_join_forkserver": (lambda: _start_join_with("forkserver", n(50)), "ms"),
    "process_start_join_fork": (lambda: _start_join_with("fork", n(50)), "ms"),
    "raw_fork_wait": (lambda: _median_ms(n(200), _fork_wait), "ms"),
    "raw_fork_exec": (lambda: _median_ms(n(200), _fork_exec), "ms"),
    "pipe_round_trip_small": (lambda: _with_ops(pipe_round_trip_small, n(5_000), 1000), "us"),
    "pipe_bulk_1mib": (lambda: _with_ops(pipe_bulk_1mib, n(200), 1), "GB/s"),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
