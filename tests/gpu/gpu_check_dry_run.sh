#!/usr/bin/env bash
# scripts/gpu-check.sh --dry-run against the carried build (scripts/gpu-check.sh --prepare), then what the device
# call depends on: every carried binary passes the library allow-list, every carried test has a timeout, the output
# folder holds exactly summary.json, gpu-check.log and logs.tar.gz (the device tool returns at most 8 files, two
# folders down, 16 MiB each), the planned first call fits in 6 minutes with the machine's start, and the summary's
# shape. scripts/test.sh runs it, so the device script cannot rot between the rare sessions with a GPU. Never builds.
#   tests/gpu/gpu_check_dry_run.sh SOURCE_DIR CARRY_DIR
set -euo pipefail
SRC=${1:?source dir}
CARRY=${2:?carried build (build-gpu/carry)}
OUT=$(mktemp -d /tmp/stoke-gpu-dry.XXXX)
trap 'rm -rf "$OUT"' EXIT
rc=0
STOKE_GPU_BUILD="$CARRY" "$SRC/scripts/gpu-check.sh" --dry-run "$OUT/out" > "$OUT/stdout.txt" 2>&1 || rc=$?
python3 - "$OUT/out" "$rc" "$OUT/stdout.txt" <<'PY'
import json, os, sys, tarfile
out, rc, stdout = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], errors="replace").read()
def need(cond, msg):
    if not cond:
        print("gpu-check dry run:", msg); print(stdout[-4000:]); sys.exit(1)
files = sorted(os.listdir(out))
need(files == ["gpu-check.log", "logs.tar.gz", "summary.json"], "the output folder holds %s" % files)
for f in files:
    need(os.path.isfile(os.path.join(out, f)) and os.path.getsize(os.path.join(out, f)) < 16 << 20, f + " size")
names = tarfile.open(os.path.join(out, "logs.tar.gz")).getnames()
need("logs/steps.tsv" in names and "logs/test_cuda_host.json" in names, "logs.tar.gz lacks the step table: %s" % names)
need(not any("checkpoints" in n for n in names), "logs.tar.gz holds checkpoints")
s = json.load(open(os.path.join(out, "summary.json")))
for k, t in {"mode": str, "call": str, "device": str, "driver": str, "cuda_runtime": str, "commit": str, "date": str,
             "tests": dict, "steps": list, "planned": dict, "training": dict, "seconds": int, "ok": bool}.items():
    need(k in s and isinstance(s[k], t), "key %s missing or not %s" % (k, t.__name__))
need(s["mode"] == "dry-run" and s["call"] == "all", "mode/call")
for k in ("passed", "failed", "skipped"):
    need(isinstance(s["tests"][k], int) and isinstance(s["tests"][k + "_names"], list), "tests." + k)
names = [st["name"] for st in s["steps"]]
expected = ["preflight", "data", "conv-probe", "host-tests", "parity", "train-first-step-sync", "train-bf16", "train-fp16",
            "train-fp32", "train-bf16-nographs", "train-fp16-nographs", "train-fp32-nographs", "train-bf16-cachegpu",
            "train-bf16-augment", "eval-cuda", "async-step", "train-det-fp16", "train-nccl-fp16", "nccl-parity",
            "finetune", "train-bf16-ema", "eval-ema", "train-bf16-augment-decoders",
            "memcheck", "racecheck", "bench", "export-check", "batch-auto", "diagnose"]
need(names == expected, "steps %s, expected %s" % (names, expected))
host = {"preflight", "data", "host-tests"}
for st in s["steps"]:
    need(st["status"] == ("ok" if st["name"] in host else "skipped: no device"), "step %s" % st)
    need(st["call"] in ("1", "2", "both") and st["planned_s"] > 0, "step %s has no call or plan" % st)
# The carried binaries' libraries and the carried tests' timeouts are preflight's; its log says so per binary.
need(stdout.count("libraries allowed=yes") >= 4 and "libraries allowed=NO" not in stdout, "library allow-list")
need("every carried test has a timeout of at most 60 s" in stdout, "carried tests' timeouts")
p = s["planned"]
need(p["call1_with_start_s"] <= 360, "the first call is planned at %ds with the start (at most 360)" % p["call1_with_start_s"])
need(p["call2_with_start_s"] <= 540, "the second call is planned at %ds with the start" % p["call2_with_start_s"])
need(s["tests"]["passed"] > 0 and s["tests"]["failed"] == 0, "test_cuda_host did not pass: %s" % s["tests"])
need(s["ok"] and rc == 0, "ok is false or exit %d" % rc)
print("gpu-check dry run: %d steps, %d host tests passed, call 1 planned %ds with the start, call 2 %ds; "
      "output: %s" % (len(names), s["tests"]["passed"], p["call1_with_start_s"], p["call2_with_start_s"], files))
PY
