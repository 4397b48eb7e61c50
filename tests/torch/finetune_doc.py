#!/usr/bin/env python3
"""docs/FINE-TUNING.md's conversion, run as written: its Python snippet (the first ```python block, run with the
repository's bench/ beside it; torchvision's resnet18 with seeded random weights in place of the downloaded resnet50,
which needs a network) and its command line for a `.pth` already on disk (`bench/pytorch/safetensors_write.py X.pth
X.safetensors`, run as that script's __main__) on the forms a user's `.pth` takes: a state_dict, a whole pickled
model (torch.save(model)), and a training checkpoint holding a DataParallel state_dict under `state_dict`. All must
give the model's tensors bit for bit (the DataParallel one under `module.` names); a file torch cannot read must be
refused in one line naming it, exit 2. Then writes a user's folder of photos (JPEGs of assorted sizes, 3 classes,
train/ and val/) for the doc's stoke commands (finetune_doc.sh).

  finetune_doc.py SOURCE_DIR WORK_DIR
Exit 0 when all hold, 1 otherwise.
"""

import contextlib
import io
import os
import re
import runpy
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "pytorch"))
import stoke_torch as st  # noqa: E402


def doc_snippet(src):
    text = open(os.path.join(src, "docs", "FINE-TUNING.md")).read()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    if not block:
        sys.exit("finetune_doc: FAIL: docs/FINE-TUNING.md has no ```python block")
    code = block.group(1)
    # The one substitution: no network here, and resnet18 is the cheap one.
    download = 'torchvision.models.resnet50(weights="IMAGENET1K_V2")'
    if download not in code:
        sys.exit(f"finetune_doc: FAIL: the doc's snippet no longer reads {download}: update this test with it")
    return code.replace(download, "torchvision.models.resnet18(weights=None)")


def convert(argv):
    """The doc's command line, `python3 bench/pytorch/safetensors_write.py IN OUT`: (exit code, stdout + stderr)."""
    out, old = io.StringIO(), sys.argv
    sys.argv = ["bench/pytorch/safetensors_write.py"] + argv
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path("bench/pytorch/safetensors_write.py", run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, out.getvalue().strip()


def write_photos(root):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in (("train", 6), ("val", 2)):
        for k, cls in enumerate(("birds", "cats", "dogs")):
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(60, 200, 2))
                px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                px[..., k] //= 2
                Image.fromarray(px).save(os.path.join(root, split, cls, f"{i}.jpg"), quality=90)


def main():
    src, work = sys.argv[1], sys.argv[2]
    os.chdir(work)
    if not os.path.exists("bench"):
        os.symlink(os.path.join(src, "bench"), "bench")
    torch.manual_seed(0)
    scope = {}
    exec(compile(doc_snippet(src), "docs/FINE-TUNING.md", "exec"), scope)
    model, written = scope["m"], "resnet50.safetensors"  # the snippet's own names
    os.rename(written, "resnet18.safetensors")
    sd = model.state_dict()
    torch.save(sd, "resnet18.pth")
    torch.save(model, "whole.pth")
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in sd.items()}}, "ddp.pth")
    with open("notes.pth", "w") as f:
        f.write("not a torch file\n")
    ref, _ = st.load_safetensors("resnet18.safetensors")
    if list(ref) != list(sd) or not all(torch.equal(ref[k], v) for k, v in sd.items()):
        sys.exit("finetune_doc: FAIL: the snippet's resnet50.safetensors does not hold the model's state_dict")
    bad = []
    for pth in ("resnet18.pth", "whole.pth", "ddp.pth"):
        out = pth.replace(".pth", "-cli.safetensors")
        code, text = convert([pth, out])
        if code != 0:
            bad.append(f"{pth}: exit {code}: {text}")
            continue
        got, _ = st.load_safetensors(out)  # (the command line adds metadata: compare the tensors)
        prefix = "module." if pth == "ddp.pth" else ""
        same = list(got) == [prefix + k for k in ref] and all(torch.equal(got[prefix + k], v) for k, v in ref.items())
        print(f"{pth}: {text}; {'the snippet' if same else 'NOT the snippet'}'s tensors")
        if not same:
            bad.append(f"{pth}: {out} differs from the snippet's resnet50.safetensors")
    code, text = convert(["notes.pth", "notes.safetensors"])
    print(f"notes.pth (not a torch file): exit {code}: {text}")
    if code != 2 or "notes.pth" not in text or "\n" in text or os.path.exists("notes.safetensors"):
        bad.append("notes.pth: expected one line naming it, exit 2 and no file")
    write_photos("photos")
    for b in bad:
        print(f"finetune_doc: FAIL: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
