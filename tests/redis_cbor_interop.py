"""Reads and writes procactor's Redis stream entries with nothing but the Python standard
library (a minimal RESP client and a minimal CBOR codec), proving the wire format is
readable outside Rust. Used by tests/redis_queue.rs.

Usage: python3 redis_cbor_interop.py HOST PORT STREAM
Prints the JSON of every entry's decoded `cbor` field (XRANGE STREAM - +), one per line,
then adds one entry: cbor = {"x": 42, "name": "from python", "tags": ["a", "b"], "ratio": null}.
"""
import json
import socket
import struct
import sys


def resp_cmd(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return resp_read(sock.makefile("rb"))


def resp_read(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise RuntimeError("unexpected reply %r" % line)


def cbor_decode(b, i=0):
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if major == 7:
        if info == 20:
            return False, i
        if info == 21:
            return True, i
        if info in (22, 23):
            return None, i
        if info == 25:
            return struct.unpack(">e", b[i:i + 2])[0], i + 2
        if info == 26:
            return struct.unpack(">f", b[i:i + 4])[0], i + 4
        if info == 27:
            return struct.unpack(">d", b[i:i + 8])[0], i + 8
        raise RuntimeError("simple value %d" % info)
    if info < 24:
        n = info
    else:
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        n = int.from_bytes(b[i:i + size], "big")
        i += size
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2:
        return list(b[i:i + n]), i + n
    if major == 3:
        return b[i:i + n].decode(), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = cbor_decode(b, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = cbor_decode(b, i)
            v, i = cbor_decode(b, i)
            out[k] = v
        return out, i
    raise RuntimeError("major type %d" % major)


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def cbor_encode(v):
    if v is None:
        return b"\xf6"
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, str):
        e = v.encode()
        return cbor_head(3, len(e)) + e
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor_encode(x) for x in v)
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor_encode(k) + cbor_encode(x) for k, x in v.items())
    raise TypeError(type(v))


def main():
    host, port, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.create_connection((host, port), timeout=10)
    for entry_id, fields in resp_cmd(sock, "XRANGE", stream, "-", "+"):
        kv = dict(zip(fields[::2], fields[1::2]))
        value, used = cbor_decode(kv[b"cbor"])
        assert used == len(kv[b"cbor"]), "trailing bytes"
        print(json.dumps(value), flush=True)
    mine = {"x": 42, "name": "from python", "tags": ["a", "b"], "ratio": None}
    resp_cmd(sock, "XADD", stream, "*", "cbor", cbor_encode(mine))


if __name__ == "__main__":
    main()
