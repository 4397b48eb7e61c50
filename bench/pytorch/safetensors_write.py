#!/usr/bin/env python3
"""Writes a PyTorch state_dict (or any name -> tensor/array mapping) as a safetensors file, with numpy alone: no
`safetensors` package needed. Used to hand torchvision or timm weights to `stoke train --init` (docs/FINE-TUNING.md):

    import torch, torchvision, sys; sys.path.insert(0, "bench/pytorch")
    from safetensors_write import save_state_dict
    m = torchvision.models.resnet50(weights="IMAGENET1K_V2")        # or timm.create_model(..., pretrained=True)
    save_state_dict(m.state_dict(), "resnet50.safetensors")         # or torch.load("x.pth", map_location="cpu")

Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of JSON
{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}} padded with spaces to a multiple of 8,
then each tensor's little-endian row-major bytes, in order, with no gaps.
"""

from __future__ import annotations

import json
import struct

import numpy as np

# numpy dtype -> safetensors dtype name. bfloat16 has no numpy type: torch tensors of it are written as raw 16-bit
# words (see _as_array).
_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def _as_array(value):
    """(little-endian contiguous numpy array, safetensors dtype name) for a torch tensor or an array-like."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:  # the same 16 bits, carried as int16
                return t.view(torch.int16).numpy().astype("<i2"), "BF16"
            value = t.numpy()
    except ImportError:
        pass
    a = np.asarray(value, order="C")  # (np.ascontiguousarray would make a 0-d tensor 1-d: num_batches_tracked)
    if a.dtype not in _NAMES:
        raise TypeError(f"dtype {a.dtype} has no safetensors name")
    return a.astype(a.dtype.newbyteorder("<"), copy=False), _NAMES[a.dtype]


def save_state_dict(state_dict, path, metadata=None):
    """Writes every entry of state_dict (name -> tensor) to path, in the mapping's order."""
    header, blobs, offset = {}, [], 0
    for name, value in state_dict.items():
        a, dtype = _as_array(value)
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def state_dict_of(obj):
    """The state_dict in what torch.load returned: itself, a whole pickled model's (torch.save(model)), or the one a
    training checkpoint holds under state_dict, model_state_dict or model (a dict or a module); None if none."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        return None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), (dict, torch.nn.Module)):
            return state_dict_of(obj[key])
    return obj


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Convert a PyTorch .pth/.pt state_dict into safetensors.")
    ap.add_argument("pth", help="torch.save'd state_dict, whole model, or a checkpoint dict holding one under "
                                "'state_dict', 'model_state_dict' or 'model'")
    ap.add_argument("out", help="the .safetensors file to write")
    args = ap.parse_args()
    import torch

    def fail(msg):  # one line naming the file, exit 2 (bad input)
        print(f"safetensors_write.py: {args.pth}: {msg}", file=sys.stderr)
        sys.exit(2)

    try:
        loaded = torch.load(args.pth, map_location="cpu")
    except Exception as e:  # a missing file, not a torch file, or (torch >= 2.6) a pickle weights_only refuses
        fail(f"torch.load cannot read it: {(str(e).splitlines() or [repr(e)])[0]}")
    sd = state_dict_of(loaded)
    other = [f"{k} ({type(v).__name__})" for k, v in (sd or {}).items() if not isinstance(v, torch.Tensor)]
    if not sd or other:
        what = f"entries that are not tensors: {', '.join(other[:4])}" if other else f"a {type(loaded).__name__}"
        fail(f"holds no state_dict ({what}); expected a state_dict, a whole model, or a dict holding one under "
             "'state_dict', 'model_state_dict' or 'model'")
    save_state_dict(sd, args.out, {"format": "pt"})
    print(f"wrote {args.out}: {len(sd)} tensors")
