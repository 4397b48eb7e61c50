"""PyTorch twins of stoke's models, its safetensors export and its input preprocessing.

Shared by check_export.py (does a `stoke export` load into the matching PyTorch module and give stoke's
probabilities?) and train.py (the PyTorch side-by-side of stoke's end-to-end jobs).

Works with torch 1.13 (Debian's python3-torch, CPU) and torch 2.x (CUDA); needs numpy and Pillow, not the
`safetensors` package (the reader below is enough for stoke's files).
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

# ---- safetensors -------------------------------------------------------------------------------------------
# Format: 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets: [begin,
# end]}, "__metadata__": {str: str}}), then the raw little-endian tensor bytes (offsets relative to the end of
# the header).

_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}


class SafetensorsError(Exception):
    pass


def load_safetensors(path):
    """Returns (tensors: OrderedDict name -> torch.Tensor in file order, metadata: dict str -> str)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SafetensorsError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise SafetensorsError(f"{path}: header length {n} exceeds the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError(f"{path}: the JSON header does not parse: {e}") from e
    data = bytearray(raw[8 + n :])  # writable: torch.frombuffer warns on read-only buffers
    metadata = dict(header.pop("__metadata__", {}) or {})
    tensors = OrderedDict()
    for name, info in header.items():
        dtype_name = info.get("dtype")
        if dtype_name not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {dtype_name}")
        dtype, size = _DTYPES[dtype_name]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * size:
            raise SafetensorsError(f"{path}: tensor {name}: data_offsets {begin}..{end} do not hold {shape} x {dtype_name}")
        if count == 0:
            t = torch.zeros(shape, dtype=dtype)
        else:
            t = torch.frombuffer(data, dtype=dtype, count=count, offset=begin).clone()
            if struct.pack("=H", 1) != struct.pack("<H", 1) and size > 1:  # big-endian host: bytes are LE
                t = torch.from_numpy(t.numpy().byteswap())
            t = t.reshape(shape)
        tensors[name] = t
    return tensors, metadata


# ---- models ------------------------------------------------------------------------------------------------


class SmallCNNBlock(nn.Module):
    def __init__(self, cin, cout, pool, batchnorm=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=not batchnorm)
        self.bn = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class SmallCNN(nn.Module):
    """stoke's small-cnn (models/small_cnn.cpp): three conv3x3(no bias)-BN-ReLU blocks named features.1..3,
    widths w/2w/4w, a 2x2 max pool after a block while its map is >= 6x6, a global average pool when the last map
    is larger than 4x4, then `classifier` (Linear with bias) on the NCHW-flattened map. batchnorm=False:
    small-cnn-nobn (conv3x3 with bias, no BN). Initialisation as docs/MODELS.md says for the small CNNs (the ResNet
    rule): convs kaiming_normal_ fan_out/relu, BN 1/0, conv biases and the linear PyTorch's default."""

    def __init__(self, in_channels, num_classes, height, width, base_width=16, batchnorm=True):
        super().__init__()
        self.features = nn.Sequential()
        h, w, cin, ch = height, width, in_channels, base_width
        for block in range(1, 4):
            pool = h >= 6 and w >= 6
            self.features.add_module(str(block), SmallCNNBlock(cin, ch, pool, batchnorm))
            if pool:
                h, w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
            cin, ch = ch, ch * 2
        self.gap = nn.AdaptiveAvgPool2d(1) if (h > 4 or w > 4) else nn.Identity()
        if h > 4 or w > 4:
            h = w = 1
        self.classifier = nn.Linear(cin * h * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(torch.flatten(self.gap(self.features(x)), 1))


class _DenseLayer(nn.Module):
    """MONAI monai/networks/nets/densenet.py _DenseLayer (dropout 0): `layers` = norm1, relu1, conv1 (1x1,
    bn_size*growth), norm2, relu2, conv2 (3x3, growth); forward returns cat([x, layers(x)], 1)."""

    def __init__(self, in_channels, growth_rate, bn_size):
        super().__init__()
        mid = bn_size * growth_rate
        self.layers = nn.Sequential()
        self.layers.add_module("norm1", nn.BatchNorm2d(in_channels))
        self.layers.add_module("relu1", nn.ReLU(inplace=True))
        self.layers.add_module("conv1", nn.Conv2d(in_channels, mid, kernel_size=1, bias=False))
        self.layers.add_module("norm2", nn.BatchNorm2d(mid))
        self.layers.add_module("relu2", nn.ReLU(inplace=True))
        self.layers.add_module("conv2", nn.Conv2d(mid, growth_rate, kernel_size=3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.layers(x)], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, layers, in_channels, bn_size, growth_rate):
        super().__init__()
        for i in range(layers):
            self.add_module("denselayer%d" % (i + 1), _DenseLayer(in_channels, growth_rate, bn_size))
            in_channels += growth_rate


class _Transition(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class MonaiDenseNet(nn.Module):
    """MONAI's DenseNet (spatial_dims=2, dropout 0) with MONAI's module tree and names, so its state_dict keys
    are MONAI's: features.conv0/norm0/relu0/pool0, features.denseblockB.denselayerL.layers.*,
    features.transitionT.norm/relu/conv/pool, features.norm5, class_layers.relu/pool/flatten/out.
    Initialisation as MONAI: kaiming_normal_ (fan-in) convs, BN weight 1 / bias 0, zero linear bias."""

    def __init__(self, in_channels, out_channels, init_features=64, growth_rate=32, block_config=(6, 12, 24, 16),
                 bn_size=4):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        ch = init_features
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n, ch, bn_size, growth_rate))
            ch += n * growth_rate
            if i == len(block_config) - 1:
                self.features.add_module("norm5", nn.BatchNorm2d(ch))
            else:
                self.features.add_module(f"transition{i + 1}", _Transition(ch, ch // 2))
                ch //= 2
        self.class_layers = nn.Sequential(OrderedDict([
            ("relu", nn.ReLU(inplace=True)),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten(1)),
            ("out", nn.Linear(ch, out_channels)),
        ]))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.class_layers(self.features(x))


def densenet121(in_channels, num_classes):
    return MonaiDenseNet(in_channels, num_classes)


def monai_densenet_name(name):
    """A torchvision DenseNet state_dict name -> MONAI's, the names stoke imports and exports (any other name, e.g.
    a ResNet's, is torchvision's own and comes back unchanged)."""
    name = re.sub(r"(denselayer\d+)\.", r"\1.layers.", name)
    return re.sub(r"^classifier\.", "class_layers.out.", name)


def resnet(depth, in_channels, num_classes, small_stem):
    """torchvision resnet18/34/50 with in_channels inputs; small_stem: stoke's small-input stem (3x3 stride-1
    conv1, max pool replaced by Identity), which stoke picks when max(H, W) <= 64."""
    import torchvision

    ctor = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}[depth]
    m = ctor(num_classes=num_classes)  # no weights: the default in torchvision 0.14 and 0.15+
    if small_stem:
        m.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    elif in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if small_stem or in_channels != 3:
        nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    return m


def stoke_small_stem(height, width):
    """models/resnet.cpp resnet_small_stem(automatic)."""
    return max(height, width) <= 64


def build_model(name, in_channels, num_classes, height, width, small_stem=None):
    """The PyTorch module for a stoke model name (models/models.cpp build_model)."""
    if name == "small-cnn":
        return SmallCNN(in_channels, num_classes, height, width, 16)
    if name == "small-cnn-wide":
        return SmallCNN(in_channels, num_classes, height, width, 32)
    if name == "small-cnn-nobn":
        return SmallCNN(in_channels, num_classes, height, width, 16, batchnorm=False)
    if name in ("resnet18", "resnet34", "resnet50"):
        if small_stem is None:
            small_stem = stoke_small_stem(height, width)
        return resnet(int(name[6:]), in_channels, num_classes, small_stem)
    if name == "densenet121":
        return densenet121(in_channels, num_classes)
    raise ValueError(f"no PyTorch twin for stoke model '{name}'")


# ---- preprocessing: what stoke does to a JPEG before the model -------------------------------------------------


def _bilinear_taps(dn, sn):
    """io/codec/image.cpp bilinear_taps: half-pixel centres, clamped; weights in 11-bit fixed point."""
    i0 = np.zeros(dn, np.int64)
    i1 = np.zeros(dn, np.int64)
    w1 = np.zeros(dn, np.int64)
    scale = sn / dn
    for i in range(dn):
        s = (i + 0.5) * scale - 0.5
        if s < 0:
            s = 0.0
        a = int(s)
        if a >= sn - 1:
            i0[i], i1[i], w1[i] = sn - 1, sn - 1, 0
        else:
            i0[i], i1[i], w1[i] = a, a + 1, int(np.floor((s - a) * 2048 + 0.5))  # lround of a positive value
    return i0, i1, w1


def resize_bilinear(px, dh, dw):
    """io/codec/image.cpp resize_bilinear (uint8 HWC, fixed point, one rounding at the end), bit for bit."""
    sh, sw = px.shape[:2]
    if (sh, sw) == (dh, dw):
        return px.copy()
    yi0, yi1, yw = _bilinear_taps(dh, sh)
    xi0, xi1, xw = _bilinear_taps(dw, sw)
    src = px.astype(np.int64)
    col = src[yi0] * (2048 - yw)[:, None, None] + src[yi1] * yw[:, None, None]  # dh x sw x c
    out = col[:, xi0] * (2048 - xw)[None, :, None] + col[:, xi1] * xw[None, :, None]
    return ((out + (1 << 21)) >> 22).astype(np.uint8)


def decode_like_stoke(path, h, w, c):
    """io/codec/codec.h decode_to for a JPEG whose aspect ratio is the target's (stoke then decodes the whole image):
    libjpeg-turbo decode to gray (c=1) or RGB (c=3) -- a colour JPEG decoded to gray is libjpeg's Y channel --,
    DCT-domain scaling by the smallest n/8 (n in 1, 2, 4, 8) that still covers h x w, then stoke's bilinear resize.
    Returns uint8 HWC. Other aspect ratios stoke centre-crops first (region decode); that is not mirrored here."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format != "JPEG":
            raise ValueError(f"{path}: not a JPEG ({im.format})")
        iw, ih = im.size
        if abs((iw / ih) / (w / h) - 1.0) >= 0.01:
            raise ValueError(f"{path}: {iw}x{ih} has another aspect ratio than {w}x{h}: stoke centre-crops it first")
        num = 1
        while num < 8 and ((ih * num + 7) // 8 < h or (iw * num + 7) // 8 < w):
            num *= 2
        d = 8 // num
        mode = "L" if c == 1 else "RGB"
        # PIL's draft picks the largest reduction in {8, 4, 2, 1} not above min(iw // rw, ih // rh): asking for
        # (iw // d, ih // d) gives exactly d (and libjpeg's own scaled IDCT, as stoke uses).
        im.draft(mode, (max(1, iw // d), max(1, ih // d)) if d > 1 else None)
        im = im.convert(mode)
        px = np.asarray(im, dtype=np.uint8)
    if px.ndim == 2:
        px = px[:, :, None]
    return resize_bilinear(px, h, w)


def normalize(px_nhwc, mean, std):
    """uint8 NHWC -> float32 NCHW, (x/255 - mean)/std computed as stoke does: x * (1/(255 std)) + (-mean/std)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scale = (np.float32(1) / (np.float32(255) * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    x = px_nhwc.astype(np.float32) * scale + shift
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def list_image_folder(root):
    """ImageFolder as stoke reads it: classes = sorted sub-folder names, files *.jpg|*.jpeg (any case), sorted."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    samples = []
    for k, cls in enumerate(classes):
        d = os.path.join(root, cls)
        for f in sorted(os.listdir(d)):
            if f.lower().endswith((".jpg", ".jpeg")):
                samples.append((os.path.join(d, f), k))
    return classes, samples
