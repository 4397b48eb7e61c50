#!/usr/bin/env python3
"""Compares two safetensors files tensor by tensor (float32; the standard library only).

compare_weights.py A B TOL: exit 0 when every value differs by at most TOL * (1 + |a|), else 1;
TOL 0 asks for identical bytes. Prints the largest difference either way."""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], data[a:b])
    return out


def main():
    a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    if sorted(a) != sorted(b):
        print("the tensors differ by name:", sorted(set(a) ^ set(b)))
        return 1
    worst, where = 0.0, ""
    for name in sorted(a):
        (da, ba), (db, bb) = a[name], b[name]
        if da != db or len(ba) != len(bb):
            print(f"{name}: {da}/{len(ba)} bytes vs {db}/{len(bb)} bytes")
            return 1
        if tol == 0:
            if ba != bb:
                print(f"{name}: the bytes differ")
                return 1
            continue
        assert da == "F32", da
        k = len(ba) // 4
        for x, y in zip(struct.unpack(f"<{k}f", ba), struct.unpack(f"<{k}f", bb)):
            d = abs(x - y) / (1 + abs(x))
            if d > worst:
                worst, where = d, name
    print(f"largest relative difference {worst:.3g}" + (f" (in {where})" if where else "") + f", tolerance {tol:g}")
    return 0 if worst <= tol else 1


sys.exit(main())
