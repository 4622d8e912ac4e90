"""Python twins of bench/src/workloads/sync.rs (multiprocessing, fork start method).

Prints one JSON object per line: {"workload": name, "value": x, "unit": u}.
"""
import json
import multiprocessing as mp
import time


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


def _handoff_child(lock, turn, rounds):
    done = 0
    while done < rounds:
        with lock:
            if turn.value % 2 == 1:
                turn.value += 1
                done += 1


def lock_handoff_latency(rounds=20_000):
    lock = mp.Lock()
    turn = mp.RawValue("q", 0)
    p = mp.Process(target=_handoff_child, args=(lock, turn, rounds))
    p.start()
    time.sleep(0.1)
    t = time.perf_counter()
    done = 0
    while done < rounds:
        with lock:
            if turn.value % 2 == 0:
                turn.value += 1
                done += 1
    while turn.value < 2 * rounds:
        pass
    secs = time.perf_counter() - t
    p.join()
    return secs * 1e6 / (2 * rounds)


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


def uncontended_lock_ns(n=2_000_000):
    lock = mp.Lock()
    t = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - t) * 1e9 / n


def main():
    mp.set_start_method("fork")
    for name, fn, unit in [
        ("value_locked_increments_2proc", value_locked_increments_2proc, "ops/s"),
        ("lock_handoff_latency", lock_handoff_latency, "us"),
        ("event_set_wake_latency", event_set_wake_latency, "us"),
        ("uncontended_lock_ns", uncontended_lock_ns, "ns"),
    ]:
        print(json.dumps({"workload": name, "value": fn(), "unit": unit}), flush=True)


if __name__ == "__main__":
    main()
