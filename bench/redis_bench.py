"""Python twins of bench/src/workloads/redis.rs: Python's way to share a queue across
hosts, a `multiprocessing.managers.BaseManager` server on 127.0.0.1 (TCP, authkey)
serving `queue.Queue`s, used by client processes (fork start method).

- redis_put_get: a child process puts `n` (int, 32-byte str) items, one `put` each;
  this process gets them one `get` each. Items per second, from the child's start to
  the last item received.
- redis_put_get_batched: the same, batched as the Rust twin batches (`put_many` of 256,
  read-ahead of 256): the child puts lists of 256 items, one `put` per list, and this
  process gets the lists.
- redis_rtt: this process puts an int on a request queue, a child echoes it on a reply
  queue, this process gets it: microseconds per round trip (after a warm-up).
- redis_put_get_async, redis_rtt_async: the same from asyncio, each blocking manager
  call through `run_in_executor` (asyncio's way to await a blocking client).

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/redis_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import queue
import sys
import time
from multiprocessing.managers import BaseManager

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))
WARM_UP = 200
AUTHKEY = b"procactor bench key"


def n(base):
    return max(1, int(base * SCALE))


_QUEUES = {}


def _get_queue(name):
    return _QUEUES.setdefault(name, queue.Queue())


class _Server(BaseManager):
    pass


class _Client(BaseManager):
    pass


_Server.register("get_queue", callable=_get_queue)
_Client.register("get_queue")


def _client(address, name):
    c = _Client(address=address, authkey=AUTHKEY)
    c.connect()
    return c, c.get_queue(name)


BATCH = 256


def _producer(address, count, batch):
    c, q = _client(address, "items")
    payload = "x" * 32
    if batch <= 1:
        for k in range(count):
            q.put((k, payload))
        return
    for start in range(0, count, batch):
        q.put([(k, payload) for k in range(start, min(start + batch, count))])


def _put_get_with(count, batch, consume):
    """Items per second from a producer process to this one, `batch` items per put
    (1: one item each), received in order by `consume(q, count)`."""
    server = _Server(address=("127.0.0.1", 0), authkey=AUTHKEY)
    server.start()
    try:
        c, q = _client(server.address, "items")
        t0 = time.perf_counter()
        p = mp.Process(target=_producer, args=(server.address, count, batch))
        p.start()
        consume(q, count)
        dt = time.perf_counter() - t0
        p.join()
        assert p.exitcode == 0
        del q
    finally:
        server.shutdown()
    return count / dt


def _put_get(count, batch):
    def consume(q, count):
        k = 0
        while k < count:
            items = q.get(timeout=30) if batch > 1 else [q.get(timeout=30)]
            for got, _ in items:
                assert got == k
                k += 1

    return _put_get_with(count, batch, consume)


def redis_put_get(count):
    return _put_get(count, 1)


def redis_put_get_batched(count):
    return _put_get(count, BATCH)


def redis_put_get_async(count):
    import asyncio

    def consume(q, count):
        async def drain():
            loop = asyncio.get_running_loop()
            for k in range(count):
                got, _ = await loop.run_in_executor(None, q.get, True, 30)
                assert got == k

        asyncio.run(drain())

    return _put_get_with(count, 1, consume)


def _echo(address, count):
    c, requests = _client(address, "requests")
    c2, replies = _client(address, "replies")
    for _ in range(count):
        replies.put(requests.get(timeout=30))


def _rtt_with(count, rounds):
    """Microseconds per round trip: a child echoes WARM_UP + count requests;
    `rounds(requests, replies, count)` runs them (the warm-up untimed) and returns the
    seconds the `count` others took."""
    server = _Server(address=("127.0.0.1", 0), authkey=AUTHKEY)
    server.start()
    try:
        c, requests = _client(server.address, "requests")
        c2, replies = _client(server.address, "replies")
        p = mp.Process(target=_echo, args=(server.address, WARM_UP + count))
        p.start()
        dt = rounds(requests, replies, count)
        p.join()
        assert p.exitcode == 0
        del requests, replies
    finally:
        server.shutdown()
    return dt * 1e6 / count


def redis_rtt(count):
    def rounds(requests, replies, count):
        def one(i):
            requests.put(i)
            assert replies.get(timeout=30) == i

        for i in range(WARM_UP):
            one(i)
        t0 = time.perf_counter()
        for i in range(WARM_UP, WARM_UP + count):
            one(i)
        return time.perf_counter() - t0

    return _rtt_with(count, rounds)


def redis_rtt_async(count):
    import asyncio

    def rounds(requests, replies, count):
        async def run():
            loop = asyncio.get_running_loop()

            async def one(i):
                await loop.run_in_executor(None, requests.put, i)
                assert await loop.run_in_executor(None, replies.get, True, 30) == i

            for i in range(WARM_UP):
                await one(i)
            t0 = time.perf_counter()
            for i in range(WARM_UP, WARM_UP + count):
                await one(i)
            return time.perf_counter() - t0

        return asyncio.run(run())

    return _rtt_with(count, rounds)


def _with_ops(fn, count, ops):
    return fn(count), ops


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "redis_put_get": (lambda: _with_ops(redis_put_get, n(20_000), n(20_000)), "msgs/s"),
    "redis_put_get_batched": (
        lambda: _with_ops(redis_put_get_batched, n(100_000), n(100_000)),
        "msgs/s",
    ),
    "redis_rtt": (lambda: _with_ops(redis_rtt, n(5_000), n(5_000) + WARM_UP), "us"),
    "redis_put_get_async": (
        lambda: _with_ops(redis_put_get_async, n(20_000), n(20_000)),
        "msgs/s",
    ),
    "redis_rtt_async": (
        lambda: _with_ops(redis_rtt_async, n(5_000), n(5_000) + WARM_UP),
        "us",
    ),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
