"""Compares `stoke eval` on the GPU with the CPU: the image count and the accuracy must be equal (both print them
from integer counts), the loss and the macro ROC-AUC within 1e-3 relative (the backends sum in different orders).
Usage: eval_compare.py GPU_OUTPUT CPU_OUTPUT; exit 1 with the differing values named."""
import re
import sys

LINE = re.compile(r"([\d,]+) images evaluated.*?: accuracy ([\d.]+)%, loss ([\d.eE+-]+|nan|inf), macro ROC-AUC ([\d.eE+-]+|nan)")


def parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    m = LINE.search(text)
    if not m:
        sys.exit("%s: no result line (%r)" % (path, text[-300:]))
    return {"count": int(m.group(1).replace(",", "")), "accuracy": m.group(2), "loss": float(m.group(3)),
            "auc": float(m.group(4))}


def main():
    gpu, cpu = parse(sys.argv[1]), parse(sys.argv[2])
    print("gpu:", gpu)
    print("cpu:", cpu)
    bad = [k for k in ("count", "accuracy") if gpu[k] != cpu[k]]
    for k in ("loss", "auc"):
        if not abs(gpu[k] - cpu[k]) <= 1e-3 * max(abs(cpu[k]), 1e-12):
            bad.append(k)
    if bad:
        sys.exit("GPU and CPU evaluation differ in " + ", ".join(bad))
    print("GPU and CPU evaluation agree (count and accuracy equal, loss and ROC-AUC within 1e-3)")


if __name__ == "__main__":
    main()
