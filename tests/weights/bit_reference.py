"""NumPy forward passes of BiT ResNets and of the ViT paper's hybrid, written from the official parameter names.

`bit_forward` reads a dict named as the BiT `.npz` files are (google-research/big_transfer, read by its
`bit_pytorch/models.py` and `bit_jax/tf2jax.py`) and computes what `bit_jax/models.py` does; `hybrid_forward` reads
the ViT repository's R50+ViT names and computes `vit_jax/models_vit.py` with `vit_jax/models_resnet.py`. NHWC,
float64, loops over kernel offsets: slow but plain. `random_*` write random checkpoints in those layouts, and
`*_to_timm` the same functions under timm's state-dict names.
"""

import numpy as np

from tests.weights.reference_forward import vit_forward


def same_padding(size, kernel, stride):
    """(before, after) of TensorFlow/flax "SAME" padding: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(x, w, stride=1, padding="symmetric"):
    """x (N, H, W, C) * w (kh, kw, C, O); padding "symmetric" ((k - 1) / 2 each side), "same" or "valid"."""
    kh, kw = w.shape[:2]
    if padding == "same":
        pads = (same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride))
    elif padding == "symmetric":
        pads = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    else:
        pads = ((0, 0), (0, 0))
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + stride * oh : stride, j : j + stride * ow : stride] @ w[i, j]
    return out


def standardize(w, epsilon, on):
    """Weight standardisation over (kh, kw, in) per output channel, biased variance."""
    w = w.astype("float64")
    centred = w - w.mean(axis=(0, 1, 2), keepdims=True)
    variance = (centred**2).mean(axis=(0, 1, 2), keepdims=True)
    return centred / np.sqrt(variance + epsilon) if on == "variance" else centred / (np.sqrt(variance) + epsilon)


def group_norm(x, gamma, beta, epsilon, groups=32):
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    variance = g.var(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(variance + epsilon)
    return g.reshape(n, h, w, c) * gamma.reshape(-1) + beta.reshape(-1)


def max_pool(x, pads, fill):
    """3x3/2 max-pool after padding (pads = ((top, bottom), (left, right))) with `fill`."""
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    out = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf)
    for i in range(3):
        for j in range(3):
            out = np.maximum(out, x[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2])
    return out


def relu(x):
    return np.maximum(x, 0)


# BiT (big_transfer) -----------------------------------------------------------------------------------------------


def random_bit(rng, *, stage_blocks, width, classes, channels=3):
    """Random weights under the BiT `.npz` names and shapes (HWIO kernels, (C,) group norms)."""

    def normal(*shape, scale=1.0):
        return rng.normal(0, scale, shape).astype("float32")

    p = {"resnet/root_block/standardized_conv2d/kernel": normal(7, 7, channels, width)}
    cin = width
    for s, blocks in enumerate(stage_blocks, start=1):
        mid = width * 2 ** (s - 1)
        out = 4 * mid
        for b in range(1, blocks + 1):
            unit = f"resnet/block{s}/unit{b:02d}/"
            for part, (cin_k, cout_k, k) in zip("abc", ((cin, mid, 1), (mid, mid, 3), (mid, out, 1))):
                p[unit + f"{part}/standardized_conv2d/kernel"] = normal(k, k, cin_k, cout_k)
                p[unit + f"{part}/group_norm/gamma"] = 1 + normal(cin_k, scale=0.2)
                p[unit + f"{part}/group_norm/beta"] = normal(cin_k, scale=0.2)
            if b == 1:
                p[unit + "a/proj/standardized_conv2d/kernel"] = normal(1, 1, cin, out)
            cin = out
    p["resnet/group_norm/gamma"] = 1 + normal(cin, scale=0.2)
    p["resnet/group_norm/beta"] = normal(cin, scale=0.2)
    p["resnet/head/conv2d/kernel"] = normal(1, 1, cin, classes, scale=0.1)
    p["resnet/head/conv2d/bias"] = normal(classes, scale=0.1)
    return p


def bit_forward(p, images, epsilon=1e-10):
    """Logits of a BiT ResNet-v2 from its `.npz` weights `p` (bit_jax/models.py)."""

    def std_conv(x, key, stride=1):
        return conv(x, standardize(p[key], epsilon, "variance"), stride, "symmetric")

    def gn(x, prefix):
        return relu(group_norm(x, p[prefix + "group_norm/gamma"], p[prefix + "group_norm/beta"], 1e-5))

    x = std_conv(images.astype("float64"), "resnet/root_block/standardized_conv2d/kernel", 2)
    x = max_pool(x, ((1, 1), (1, 1)), 0.0)  # zero padding, as bit_jax's fixed_padding before a VALID pool
    s = 1
    while f"resnet/block{s}/unit01/a/group_norm/gamma" in p:
        b = 1
        while (unit := f"resnet/block{s}/unit{b:02d}/") + "a/group_norm/gamma" in p:
            stride = 2 if s > 1 and b == 1 else 1
            a = gn(x, unit + "a/")
            shortcut = x
            if unit + "a/proj/standardized_conv2d/kernel" in p:
                shortcut = std_conv(a, unit + "a/proj/standardized_conv2d/kernel", stride)
            y = std_conv(a, unit + "a/standardized_conv2d/kernel")
            y = std_conv(gn(y, unit + "b/"), unit + "b/standardized_conv2d/kernel", stride)
            y = std_conv(gn(y, unit + "c/"), unit + "c/standardized_conv2d/kernel")
            x = y + shortcut
            b += 1
        s += 1
    x = gn(x, "resnet/").mean(axis=(1, 2))
    kernel = p["resnet/head/conv2d/kernel"]
    return x @ kernel.reshape(kernel.shape[2:]) + p["resnet/head/conv2d/bias"]


def bit_to_timm(p):
    """The same network as a timm `resnetv2_*_bit` state dict (OIHW kernels; the head a 1x1 convolution)."""
    oihw = lambda w: np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # noqa: E731
    sd = {
        "stem.conv.weight": oihw(p["resnet/root_block/standardized_conv2d/kernel"]),
        "norm.weight": p["resnet/group_norm/gamma"],
        "norm.bias": p["resnet/group_norm/beta"],
        "head.fc.weight": oihw(p["resnet/head/conv2d/kernel"]),
        "head.fc.bias": p["resnet/head/conv2d/bias"],
    }
    for key, value in p.items():
        parts = key.split("/")
        if parts[1].startswith("block"):
            s, b = int(parts[1][5:]) - 1, int(parts[2][4:]) - 1
            prefix = f"stages.{s}.blocks.{b}."
            if parts[4] == "proj":
                sd[prefix + "downsample.conv.weight"] = oihw(value)
                continue
            k = "abc".index(parts[3]) + 1
            if parts[4] == "standardized_conv2d":
                sd[prefix + f"conv{k}.weight"] = oihw(value)
            else:
                sd[prefix + f"norm{k}.{'weight' if parts[5] == 'gamma' else 'bias'}"] = value
    return sd


# The ViT repository's R50+ViT hybrid ------------------------------------------------------------------------------


def random_hybrid_trunk(rng, *, stage_blocks, width, channels=3, old_flax=True):
    """Random trunk weights under the ViT repository's names; group norms (1, 1, 1, C) as in the released files."""

    def normal(*shape, scale=1.0):
        return rng.normal(0, scale, shape).astype("float32")

    def norm(prefix, c):
        shape = (1, 1, 1, c) if old_flax else (c,)
        return {f"{prefix}/scale": (1 + normal(c, scale=0.2)).reshape(shape),
                f"{prefix}/bias": normal(c, scale=0.2).reshape(shape)}  # fmt: skip

    p = {"conv_root/kernel": normal(7, 7, channels, width), **norm("gn_root", width)}
    cin = width
    for s, blocks in enumerate(stage_blocks, start=1):
        mid = width * 2 ** (s - 1)
        out = 4 * mid
        for b in range(1, blocks + 1):
            unit = f"block{s}/unit{b}/"
            for k, (cin_k, cout_k, size) in enumerate(((cin, mid, 1), (mid, mid, 3), (mid, out, 1)), start=1):
                p[unit + f"conv{k}/kernel"] = normal(size, size, cin_k, cout_k)
                p.update(norm(unit + f"gn{k}", cout_k))
            if b == 1:
                p[unit + "conv_proj/kernel"] = normal(1, 1, cin, out)
                p.update(norm(unit + "gn_proj", out))
            cin = out
    return p


def hybrid_trunk_forward(p, images):
    """The ViT repository's hybrid trunk (models_vit.py root block + models_resnet.py stages) from its names."""

    def std_conv(x, key, stride=1):
        return conv(x, standardize(p[key], 1e-5, "std"), stride, "same")

    def gn(x, prefix):
        return group_norm(x, p[prefix + "/scale"], p[prefix + "/bias"], 1e-6)

    x = relu(gn(std_conv(images.astype("float64"), "conv_root/kernel", 2), "gn_root"))
    x = max_pool(x, (same_padding(x.shape[1], 3, 2), same_padding(x.shape[2], 3, 2)), -np.inf)
    s = 1
    while f"block{s}/unit1/conv1/kernel" in p:
        b = 1
        while (unit := f"block{s}/unit{b}/") + "conv1/kernel" in p:
            stride = 2 if s > 1 and b == 1 else 1
            shortcut = x
            if unit + "conv_proj/kernel" in p:
                shortcut = gn(std_conv(x, unit + "conv_proj/kernel", stride), unit + "gn_proj")
            y = relu(gn(std_conv(x, unit + "conv1/kernel"), unit + "gn1"))
            y = relu(gn(std_conv(y, unit + "conv2/kernel", stride), unit + "gn2"))
            y = gn(std_conv(y, unit + "conv3/kernel"), unit + "gn3")
            x = relu(y + shortcut)
            b += 1
        s += 1
    return x


def hybrid_forward(p, images, *, num_heads):
    """Logits of the R50+ViT hybrid: the trunk, then the ViT with 1x1 patches (`vit_forward`) on its features."""
    return vit_forward(p, hybrid_trunk_forward(p, images), num_heads=num_heads)


def hybrid_trunk_to_timm(p):
    """The trunk's weights as timm's `vit_base_r50_s16_*` names them (under `patch_embed.backbone.`)."""
    prefix = "patch_embed.backbone."
    oihw = lambda w: np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # noqa: E731
    sd = {}
    for key, value in p.items():
        parts = key.split("/")
        if parts[0] in ("conv_root", "gn_root"):
            name = "stem.conv" if parts[0] == "conv_root" else "stem.norm"
        elif parts[0].startswith("block") and parts[1].startswith("unit"):
            s, b = int(parts[0][5:]) - 1, int(parts[1][4:]) - 1
            layer = {"conv_proj": "downsample.conv", "gn_proj": "downsample.norm"}.get(parts[2], parts[2])
            name = f"stages.{s}.blocks.{b}.{layer.replace('gn', 'norm')}"
        else:
            continue
        if parts[-1] == "kernel":
            sd[f"{prefix}{name}.weight"] = oihw(value)
        else:
            sd[f"{prefix}{name}.{'weight' if parts[-1] == 'scale' else 'bias'}"] = np.ascontiguousarray(value.reshape(-1))
    return sd
