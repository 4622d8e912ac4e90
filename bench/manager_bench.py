"""Python twins of bench/src/workloads/manager.rs (multiprocessing managers, fork start
method).

Each insert (`d[k] = v`) and each get (`d[k]`) on a dict proxy is one operation, one
round trip to the manager's server process. Starting the manager and the child,
connecting and a short warm-up are not timed.

Prints one JSON object per line: {"workload": name, "value": x, "ops": k, "unit": u},
k being the operations the run did in all (warm-up included; the benchmark divides the
run's CPU time by it). The workload "noop" does nothing: the benchmark measures its CPU
time (interpreter start, imports) and subtracts it.
Usage: python3 bench/manager_bench.py [workload ...]; PROCACTOR_BENCH_SCALE (default 1)
scales the sizes.
"""
import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.managers import BaseManager, DictProxy

SCALE = float(os.environ.get("PROCACTOR_BENCH_SCALE", "1"))
WARM_UP = 1_000
KEYS = 1_000
AUTHKEY = b"procactor bench key"


def n(base):
    return max(1, int(base * SCALE))


def _insert_get(d, ops):
    t0 = time.perf_counter()
    for i in range(ops // 2):
        k = i % KEYS
        d[k] = i
        assert d[k] == i
    return time.perf_counter() - t0


def _dict_child(d, ops, out):
    _insert_get(d, WARM_UP)
    out.value = _insert_get(d, ops)


def manager_dict_ops(ops):
    """A child Process does `ops` operations on a Manager().dict() proxy."""
    ops = max(2, ops) & ~1
    with mp.Manager() as mgr:
        d = mgr.dict()
        out = mp.Value("d", 0.0)
        p = mp.Process(target=_dict_child, args=(d, ops, out))
        p.start()
        p.join()
        assert p.exitcode == 0
        assert len(d) == min(KEYS, max(WARM_UP, ops) // 2)
    return ops / out.value


_SHARED = {}


def _get_shared():
    return _SHARED


class _Server(BaseManager):
    pass


class _Client(BaseManager):
    pass


_Server.register("get_dict", callable=_get_shared, proxytype=DictProxy)
_Client.register("get_dict", proxytype=DictProxy)


def manager_remote_ops(ops):
    """This process does `ops` operations on a dict of a BaseManager server listening
    on 127.0.0.1 with an authkey, through a client that connects to it."""
    ops = max(2, ops) & ~1
    server = _Server(address=("127.0.0.1", 0), authkey=AUTHKEY)
    server.start()
    try:
        client = _Client(address=server.address, authkey=AUTHKEY)
        client.connect()
        d = client.get_dict()
        _insert_get(d, WARM_UP)
        dt = _insert_get(d, ops)
        assert len(d) == min(KEYS, max(WARM_UP, ops) // 2)
        del d
    finally:
        server.shutdown()
    return ops / dt


def _acquire_release(lock, cycles):
    t0 = time.perf_counter()
    for _ in range(cycles):
        lock.acquire()
        lock.release()
    return time.perf_counter() - t0


def _lock_child(lock, ops, out):
    _acquire_release(lock, WARM_UP // 2)
    out.value = _acquire_release(lock, ops // 2)


def manager_lock_ops(ops):
    """A child Process does `ops` operations (acquire + release pairs) on a
    Manager().Lock() proxy."""
    ops = max(2, ops) & ~1
    with mp.Manager() as mgr:
        lock = mgr.Lock()
        out = mp.Value("d", 0.0)
        p = mp.Process(target=_lock_child, args=(lock, ops, out))
        p.start()
        p.join()
        assert p.exitcode == 0
    return ops / out.value


def _with_ops(fn, count):
    return fn(count), count + WARM_UP


WORKLOADS = {
    "noop": (lambda: (0.0, 1), "-"),
    "manager_dict_ops": (lambda: _with_ops(manager_dict_ops, n(20_000)), "ops/s"),
    "manager_remote_ops": (lambda: _with_ops(manager_remote_ops, n(20_000)), "ops/s"),
    "manager_lock_ops": (lambda: _with_ops(manager_lock_ops, n(20_000)), "ops/s"),
}

if __name__ == "__main__":
    mp.set_start_method("fork")
    for name in sys.argv[1:] or list(WORKLOADS):
        fn, unit = WORKLOADS[name]
        value, ops = fn()
        print(json.dumps({"workload": name, "value": value, "ops": ops, "unit": unit}), flush=True)
