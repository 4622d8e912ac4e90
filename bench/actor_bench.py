"""Python twins of bench/src/workloads/actor.rs (multiprocessing, fork start method).

Python has no actors: each twin is the plain-multiprocessing program an actor stands
for — a Process looping over a Queue (send), a Process echoing over a Pipe (call), a
Process started again after one died (restart).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/actor_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))
SMALL_S = "abcdefghijklmnopqrstuvwxyz012345"


# the time budget of the measured loops that can crawl, as on the Rust side
# (bench/src/workloads/mod.rs, `budget`): once it has passed the loop ends after the
# iteration under way and the figure is per iteration done
BUDGET_S = float(os.environ.get("PROCACTOR_BENCH_BUDGET", "20"))


def n(base):
    return max(1, int(base * SCALE))


def _sink(q, done, count):
    done.put(0)  # ready
    seen = 0
    while seen < count:
        q.get()
        seen += 1
    done.put(seen)


def actor_send(count):
    q, done = mp.Queue(), mp.Queue()
    p = mp.Process(target=_sink, args=(q, done, count))
    p.start()
    assert done.get() == 0
    t0 = time.perf_counter()
    for i in range(count):
        q.put((i, SMALL_S))
    assert done.get() == count
    dt = time.perf_counter() - t0
    p.join()
    return count / dt


def _echo(conn):
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x + 1)


def actor_call_rtt(rounds):
    """Returns (microseconds per call, timed calls done): at most `rounds` calls; the
    timed loop stops after the call under way once BUDGET_S has passed."""
    here, there = mp.Pipe()
    p = mp.Process(target=_echo, args=(there,))
    p.start()
    there.close()
    for i in range(1000):
        here.send(i)
        here.recv()
    t0 = time.perf_counter()
    done = 0
    while done < rounds:
        here.send(done)
        here.recv()
        done += 1
        if time.perf_counter() - t0 >= BUDGET_S:
            break
    dt = time.perf_counter() - t0
    here.send(None)
    p.join()
    return dt * 1e6 / done, done


def actor_call_async_rtt(rounds):
    """As actor_call_rtt, each reply awaited in asyncio (the event loop watches the
    Pipe's descriptor with add_reader): the async twin of a Pipe round trip."""
    import asyncio

    here, there = mp.Pipe()
    p = mp.Process(target=_echo, args=(there,))
    p.start()
    there.close()

    async def calls():
        loop = asyncio.get_running_loop()

        async def call(x):
            here.send(x)
            if not here.poll(0):
                ready = loop.create_future()
                loop.add_reader(here.fileno(), lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_reader(here.fileno())
            return here.recv()

        for i in range(1000):
            await call(i)
        t0 = time.perf_counter()
        done = 0
        while done < rounds:
            await call(done)
            done += 1
            if time.perf_counter() - t0 >= BUDGET_S:
                break
        return time.perf_counter() - t0, done

    dt, done = asyncio.run(calls())
    here.send(None)
    p.join()
    return dt * 1e6 / done, done


def _phoenix(conn, incarnation):
    while True:
        conn.send((incarnation, conn.recv()))


# How long the replacement runs undisturbed before the next crash in
# actor_restart_isolated_ms (untimed), as in bench/src/workloads/actor.rs.
RESTART_PAUSE_S = 0.010


def actor_restart_ms(count, pause=0.0):
    # a Pipe, not a Queue: a process killed inside Queue.get() dies holding the queue's
    # reader lock, and the next reader would wait for it forever
    here, there = mp.Pipe()
    p = mp.Process(target=_phoenix, args=(there, 0))
    p.start()
    here.send(0)
    assert here.recv() == (0, 0)
    times = []
    for k in range(1, count + 1):
        time.sleep(pause)
        t0 = time.perf_counter()
        p.kill()
        p.join()  # the death, detected
        p = mp.Process(target=_phoenix, args=(there, k))
        p.start()
        here.send(k)
        assert here.recv() == (k, k)
        times.append((time.perf_counter() - t0) * 1e3)
    p.kill()
    p.join()
    return statistics.median(times)


def _with_ops(fn, count, ops):
    return fn(count), ops


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "actor_send": (lambda: _with_ops(actor_send, n(200_000), n(200_000)), "msgs/s"),
    "actor_call_rtt": (lambda: (lambda r: (r[0], r[1] + 1000))(actor_call_rtt(n(20_000))), "us"),
    "actor_call_async_rtt": (lambda: (lambda r: (r[0], r[1] + 1000))(actor_call_async_rtt(n(20_000))), "us"),
    "actor_restart_ms": (lambda: _with_ops(actor_restart_ms, n(50), n(50) + 1), "ms"),
    "actor_restart_isolated_ms": (
        lambda: _with_ops(lambda c: actor_restart_ms(c, RESTART_PAUSE_S), n(50), n(50) + 1),
        "ms",
    ),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
