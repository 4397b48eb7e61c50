#!/usr/bin/env bash
# CTest (label unit): scripts/gpu-check.sh --dry-run against this build, then the summary's shape — the keys a GPU
# session's summary.json has, the step list in order with its types, and every device step recorded as skipped.
# Keeps the device script from rotting between the rare sessions that have a GPU. Seconds; never builds.
set -euo pipefail
SRC=${1:?source dir}
BUILD=${2:?build dir}
OUT=$(mktemp -d /tmp/stoke-gpu-dry.XXXX)
trap 'rm -rf "$OUT"' EXIT
rc=0
STOKE_GPU_BUILD="$BUILD" STOKE_GPU_BUDGET=120 "$SRC/scripts/gpu-check.sh" --dry-run "$OUT" > "$OUT/stdout.txt" 2>&1 || rc=$?
python3 - "$OUT/summary.json" "$rc" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rc = int(sys.argv[2])
def need(cond, msg):
    if not cond:
        print("summary.json:", msg); print(json.dumps(s, indent=2)[:3000]); sys.exit(1)
for k, t in {"mode": str, "device": str, "driver": str, "cuda_runtime": str, "commit": str, "date": str,
             "tests": dict, "steps": list, "training": dict, "seconds": int, "ok": bool}.items():
    need(k in s, "missing key " + k)
    need(isinstance(s[k], t), "%s is %s, not %s" % (k, type(s[k]).__name__, t.__name__))
need(s["mode"] == "dry-run", "mode")
for k in ("passed", "failed", "skipped"):
    need(isinstance(s["tests"][k], int) and isinstance(s["tests"][k + "_names"], list), "tests." + k)
names = [st["name"] for st in s["steps"]]
expected = ["preflight", "host-tests", "parity", "train-first-step-sync", "train-bf16", "train-fp16", "train-fp32",
            "train-bf16-nographs", "train-fp16-nographs", "train-fp32-nographs", "train-bf16-cachegpu", "async-step", "eval-cuda",
            "train-det-fp16", "train-nccl-fp16", "nccl-parity", "memcheck", "racecheck", "bench", "export-check", "batch-auto", "diagnose"]
need(names == expected, "steps %s, expected %s" % (names, expected))
for st in s["steps"]:
    need(isinstance(st["status"], str) and isinstance(st["seconds"], int) and isinstance(st["exit"], int), str(st))
host = {"preflight", "host-tests", "export-check"}
for st in s["steps"]:
    if st["name"] not in host:
        need(st["status"] == "skipped: no device", "device step not skipped: %s" % st)
need(all(st["status"] == "ok" for st in s["steps"] if st["name"] in ("preflight", "host-tests")), "host steps failed")
need(s["tests"]["passed"] > 0 and s["tests"]["failed"] == 0, "test_cuda_host did not pass: %s" % s["tests"])
need(s["ok"] and rc == 0, "ok is false or exit %d" % rc)
print("dry-run summary well-formed: %d steps, %d host tests passed" % (len(names), s["tests"]["passed"]))
PY
