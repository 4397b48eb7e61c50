"""Writes OUTDIR/summary.json for scripts/gpu-check.sh from what its steps left in the scratch folder: the device,
the commit, every step (call, planned and taken seconds, status), the tests by outcome, each training run's
summary, the planned length of each call, and ok. Run by the script's finish(), also when the call was stopped."""
import argparse
import datetime
import glob
import json
import os
import xml.etree.ElementTree as ET


def read(path):
    try:
        return open(path, encoding="utf-8", errors="replace").read().strip()
    except OSError:
        return ""


def steps_of(logs):
    steps = []
    for line in read(os.path.join(logs, "steps.tsv")).splitlines():
        name, call, plan, rc, secs, status = line.split("\t")
        steps.append({"name": name, "call": call, "planned_s": int(plan), "status": status, "seconds": int(secs),
                      "exit": int(rc)})
    return steps


def tests_of(logs):
    tests = {"passed": [], "failed": [], "skipped": []}
    for path in (os.path.join(logs, "test_cuda_host.json"), os.path.join(logs, "test_gpu.json")):
        try:
            doc = json.load(open(path))
        except (OSError, ValueError):
            continue
        for suite in doc.get("testsuites", []):
            for t in suite.get("testsuite", []):
                kind = "failed" if t.get("failures") else "skipped" if t.get("result") == "SKIPPED" else "passed"
                tests[kind].append(suite["name"] + "." + t["name"])
    junit = os.path.join(logs, "ctest-gpu.xml")
    if os.path.exists(junit):
        try:
            for tc in ET.parse(junit).getroot().iter("testcase"):
                st = tc.get("status", "")
                kind = "failed" if tc.find("failure") is not None or st == "fail" else \
                       "skipped" if tc.find("skipped") is not None or st in ("notrun", "disabled") else "passed"
                tests[kind].append(tc.get("name"))
        except ET.ParseError:
            tests["failed"].append("ctest-gpu.xml (unreadable: ctest was stopped)")
    return tests


def training_of(runs):
    training = {}
    for path in sorted(glob.glob(os.path.join(runs, "train-*", "summary.json"))):
        name = os.path.basename(os.path.dirname(path))[len("train-"):]
        try:
            s = json.load(open(path))
            training[name] = {k: s[k] for k in s if isinstance(s[k], (int, float, str)) and len(str(s[k])) < 80}
        except (OSError, ValueError):
            training[name] = None
    return training


def planned(steps, start_s):
    by_call = {"1": 0, "2": 0}
    for s in steps:
        for c in ("1", "2"):
            if s["call"] in (c, "both"):
                by_call[c] += s["planned_s"]
    return {"start_s": start_s, "call1_s": by_call["1"], "call2_s": by_call["2"],
            "call1_with_start_s": by_call["1"] + start_s, "call2_with_start_s": by_call["2"] + start_s}


def main():
    ap = argparse.ArgumentParser()
    for a in ("out", "scratch", "dry", "call", "start", "elapsed"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    logs, runs = os.path.join(args.scratch, "logs"), os.path.join(args.scratch, "runs")
    smi = [f.strip() for f in (read(os.path.join(logs, "nvidia-smi.txt")).splitlines() or [""])[0].split(",")]
    has_smi = len(smi) >= 2 and "failed" not in smi[0].lower() and "not found" not in smi[0].lower()
    dev = read(os.path.join(logs, "device.txt"))  # "device: <name>, sm_90, ..., driver 13.0, runtime 13.0"
    if not dev.startswith("device:"):  # "no device here: <why>" says why, and is no device
        dev = ""
    runtime = dev.rsplit("runtime ", 1)[1].split()[0] if "runtime " in dev else "unknown"
    if not has_smi and "driver " in dev:
        smi, has_smi = [dev.split(",")[0].replace("device: ", ""), dev.rsplit("driver ", 1)[1].split(",")[0]], True
    steps, tests = steps_of(logs), tests_of(logs)
    dry = args.dry == "1"
    summary = {
        "mode": "dry-run" if dry else "device",
        "call": args.call,
        "device": smi[0] if has_smi else "none",
        "driver": smi[1] if has_smi else "none",
        "cuda_runtime": runtime,
        "device_line": dev,
        "commit": read(os.path.join(logs, "commit.txt")) or "unknown",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tests": {"passed": len(tests["passed"]), "failed": len(tests["failed"]), "skipped": len(tests["skipped"]),
                  "passed_names": tests["passed"], "failed_names": tests["failed"],
                  "skipped_names": tests["skipped"]},
        "steps": steps,
        "planned": planned(steps, int(args.start)),
        "training": training_of(runs),
        "seconds": int(args.elapsed),
    }
    # ok: every step of this call ran and passed (or is a device step of a dry run), no test failed, and on a
    # device the tests passed something.
    fine = all(s["status"] == "ok" or s["status"].startswith(("skipped", "in call")) for s in steps)
    summary["ok"] = bool(fine and steps and not tests["failed"] and (dry or len(tests["passed"]) > 0))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({k: summary[k] for k in ("mode", "call", "device", "driver", "cuda_runtime", "commit", "ok")}))
    for s in steps:
        print("  %-24s call %-4s planned %4ds  %-32s %4ds" % (s["name"], s["call"], s["planned_s"], s["status"],
                                                              s["seconds"]))
    p = summary["planned"]
    print("planned: call 1 %ds + %ds start = %ds; call 2 %ds + %ds start = %ds" % (
        p["call1_s"], p["start_s"], p["call1_with_start_s"], p["call2_s"], p["start_s"], p["call2_with_start_s"]))
    if tests["failed"]:
        print("FAILED tests:", ", ".join(tests["failed"]))


if __name__ == "__main__":
    main()
