"""NumPy forward passes written from checkpoint names and layouts, to check converted models against.

`vit_forward` reads a dict in the official ViT `.npz` naming; `resnet_forward` reads a PyTorch-layout
torchvision ResNet state dict (NCHW, OIHW kernels, symmetric padding, max-pool padded with -inf), so a conversion
mistake in either direction shows up as different numbers. `official_to_*` write the other checkpoint layouts.
"""

import math

import numpy as np
from scipy.special import erf


def layer_norm(x, scale, bias, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * scale + bias


def gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def random_official_vit(rng, *, patch, channels=3, hidden, layers, heads, mlp, classes, grid, representation=None):
    """Random weights under the official names and shapes (google-research/vision_transformer)."""
    head_dim = hidden // heads

    def normal(*shape, scale=0.1):
        return rng.normal(0, scale, shape).astype("float32")

    p = {
        "embedding/kernel": normal(patch, patch, channels, hidden, scale=0.05),
        "embedding/bias": normal(hidden),
        "cls": normal(1, 1, hidden, scale=0.5),
        "Transformer/posembed_input/pos_embedding": normal(1, 1 + grid * grid, hidden, scale=0.5),
        "Transformer/encoder_norm/scale": 1 + normal(hidden),
        "Transformer/encoder_norm/bias": normal(hidden),
        "head/kernel": normal(representation or hidden, classes, scale=0.5),
        "head/bias": normal(classes),
    }
    if representation:
        p["pre_logits/kernel"] = normal(hidden, representation, scale=0.3)
        p["pre_logits/bias"] = normal(representation)
    for i in range(layers):
        b = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            p[b + f"{ln}/scale"], p[b + f"{ln}/bias"] = 1 + normal(hidden), normal(hidden)
        for part in ("query", "key", "value"):
            p[b + f"MultiHeadDotProductAttention_1/{part}/kernel"] = normal(hidden, heads, head_dim, scale=0.2)
            p[b + f"MultiHeadDotProductAttention_1/{part}/bias"] = normal(heads, head_dim)
        p[b + "MultiHeadDotProductAttention_1/out/kernel"] = normal(heads, head_dim, hidden, scale=0.2)
        p[b + "MultiHeadDotProductAttention_1/out/bias"] = normal(hidden)
        p[b + "MlpBlock_3/Dense_0/kernel"], p[b + "MlpBlock_3/Dense_0/bias"] = (
            normal(hidden, mlp, scale=0.2),
            normal(mlp),
        )
        p[b + "MlpBlock_3/Dense_1/kernel"], p[b + "MlpBlock_3/Dense_1/bias"] = (
            normal(mlp, hidden, scale=0.2),
            normal(hidden),
        )
    return p


def vit_forward(p, images, *, num_heads, approximate_gelu=True):
    """Logits of a ViT given official-named weights `p` (arXiv:2010.11929, eq. 1-4)."""
    kernel = p["embedding/kernel"]
    size, _, channels, hidden = kernel.shape
    n, h, w, _ = images.shape
    gh, gw = h // size, w // size
    patches = images.reshape(n, gh, size, gw, size, channels).transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, -1)
    x = patches @ kernel.reshape(-1, hidden) + p["embedding/bias"]
    if "cls" in p:  # the class-token model; without it the head reads the average token ("gap", Appendix D.3)
        x = np.concatenate([np.broadcast_to(p["cls"], (n, 1, hidden)), x], axis=1)
    x = x + p["Transformer/posembed_input/pos_embedding"]
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in p:
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        y = layer_norm(x, p[b + "LayerNorm_0/scale"], p[b + "LayerNorm_0/bias"])
        q, k, v = (
            np.einsum("ntd,dhk->nthk", y, p[a + f"{s}/kernel"]) + p[a + f"{s}/bias"] for s in ("query", "key", "value")
        )
        weights = softmax(np.einsum("nqhk,nshk->nhqs", q, k) / math.sqrt(q.shape[-1]))
        x = (
            x
            + np.einsum("nqhk,hkd->nqd", np.einsum("nhqs,nshk->nqhk", weights, v), p[a + "out/kernel"])
            + p[a + "out/bias"]
        )
        y = layer_norm(x, p[b + "LayerNorm_2/scale"], p[b + "LayerNorm_2/bias"])
        y = gelu(y @ p[b + "MlpBlock_3/Dense_0/kernel"] + p[b + "MlpBlock_3/Dense_0/bias"], approximate_gelu)
        x = x + y @ p[b + "MlpBlock_3/Dense_1/kernel"] + p[b + "MlpBlock_3/Dense_1/bias"]
        i += 1
    x = layer_norm(x, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
    x = x[:, 0] if "cls" in p else x.mean(axis=1)
    if "pre_logits/kernel" in p:
        x = np.tanh(x @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    return x @ p["head/kernel"] + p["head/bias"]


BIG_VISION_BLOCK = {
    "LayerNorm_0": "LayerNorm_0",
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "LayerNorm_2": "LayerNorm_1",
    "MlpBlock_3": "MlpBlock_0",
}


def official_to_big_vision(p, scan=False):
    """The same function under big_vision's names: `params/` prefix, no position embedding for the class token
    (folded into `cls`), renumbered block parts, optionally all blocks stacked (scan); plus optimiser state."""
    pos = p["Transformer/posembed_input/pos_embedding"]
    out = {
        "params/cls": p["cls"] + pos[:, :1],
        "params/pos_embedding": pos[:, 1:],
        "opt/state/count": np.zeros(1, "float32"),
    }
    blocks = {}
    for key, value in p.items():
        if key.startswith("Transformer/encoderblock_"):
            index, rest = key[len("Transformer/encoderblock_") :].split("/", 1)
            part, tail = rest.split("/", 1)
            blocks.setdefault(f"{BIG_VISION_BLOCK[part]}/{tail}", {})[int(index)] = value
        elif key not in ("cls", "Transformer/posembed_input/pos_embedding"):
            out["params/" + key] = value
    for name, per_block in blocks.items():
        if scan:
            out[f"params/Transformer/encoderblock/{name}"] = np.stack([per_block[i] for i in sorted(per_block)])
        else:
            out.update({f"params/Transformer/encoderblock_{i}/{name}": v for i, v in per_block.items()})
    return out


def official_to_timm(p):
    """The same function as a timm state dict (PyTorch layouts: Linear (out, in), Conv (out, in, kh, kw))."""
    hidden = p["embedding/kernel"].shape[-1]
    sd = {
        "patch_embed.proj.weight": p["embedding/kernel"].transpose(3, 2, 0, 1),
        "patch_embed.proj.bias": p["embedding/bias"],
        "cls_token": p["cls"],
        "pos_embed": p["Transformer/posembed_input/pos_embedding"],
        "norm.weight": p["Transformer/encoder_norm/scale"],
        "norm.bias": p["Transformer/encoder_norm/bias"],
        "head.weight": p["head/kernel"].T,
        "head.bias": p["head/bias"],
    }
    if "pre_logits/kernel" in p:
        sd["pre_logits.fc.weight"], sd["pre_logits.fc.bias"] = p["pre_logits/kernel"].T, p["pre_logits/bias"]
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in p:
        b, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        a = b + "MultiHeadDotProductAttention_1/"
        sd[t + "norm1.weight"], sd[t + "norm1.bias"] = p[b + "LayerNorm_0/scale"], p[b + "LayerNorm_0/bias"]
        sd[t + "attn.qkv.weight"] = np.concatenate(
            [p[a + f"{s}/kernel"].reshape(hidden, hidden).T for s in ("query", "key", "value")]
        )
        sd[t + "attn.qkv.bias"] = np.concatenate([p[a + f"{s}/bias"].reshape(-1) for s in ("query", "key", "value")])
        sd[t + "attn.proj.weight"] = p[a + "out/kernel"].reshape(hidden, hidden).T
        sd[t + "attn.proj.bias"] = p[a + "out/bias"]
        sd[t + "norm2.weight"], sd[t + "norm2.bias"] = p[b + "LayerNorm_2/scale"], p[b + "LayerNorm_2/bias"]
        for j in (0, 1):
            sd[t + f"mlp.fc{j + 1}.weight"] = p[b + f"MlpBlock_3/Dense_{j}/kernel"].T
            sd[t + f"mlp.fc{j + 1}.bias"] = p[b + f"MlpBlock_3/Dense_{j}/bias"]
        i += 1
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


TIMM_TO_TORCHVISION = [  # (timm name part, torchvision name part), applied in order
    ("patch_embed.proj", "conv_proj"), ("cls_token", "class_token"), ("pos_embed", "encoder.pos_embedding"),
    ("blocks.", "encoder.layers.encoder_layer_"), ("norm1", "ln_1"), ("norm2", "ln_2"),
    ("attn.qkv.weight", "self_attention.in_proj_weight"), ("attn.qkv.bias", "self_attention.in_proj_bias"),
    ("attn.proj", "self_attention.out_proj"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3"),
    ("pre_logits.fc", "heads.pre_logits"), ("head.", "heads.head."),
]  # fmt: skip


def timm_to_torchvision(sd):
    out = {}
    for key, value in sd.items():
        new = key
        for old, replacement in TIMM_TO_TORCHVISION:
            new = new.replace(old, replacement)
        if new in ("norm.weight", "norm.bias"):
            new = "encoder.ln." + new.split(".")[1]
        out[new] = value
    return out


# ResNet, PyTorch layout -------------------------------------------------------------------------------------------


def conv_nchw(x, weight, stride=1, padding=0):
    """PyTorch's conv2d: x (N, C, H, W), weight (O, I, kh, kw), symmetric zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_channels, _, kh, kw = weight.shape
    n, _, h, w = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, out_channels, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return out


def bn_nchw(x, sd, name, eps=1e-5):
    shape = (1, -1, 1, 1)
    mean, var = sd[f"{name}.running_mean"].reshape(shape), sd[f"{name}.running_var"].reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * sd[f"{name}.weight"].reshape(shape) + sd[f"{name}.bias"].reshape(shape)


def max_pool_nchw(x, size=3, stride=2, padding=1):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    n, c, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(size):
        for j in range(size):
            out = np.maximum(out, x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride])
    return out


def resnet_forward(sd, images, *, bottleneck):
    """Logits of a torchvision ResNet (v1.5: the bottleneck's stride is on its 3x3) from its state dict.

    `images` are NHWC like the Keras model's input; they are transposed to NCHW here.
    """
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = images.transpose(0, 3, 1, 2).astype("float64")
    x = max_pool_nchw(relu(bn_nchw(conv_nchw(x, sd["conv1.weight"], 2, 3), sd, "bn1")))
    stage = 1
    while f"layer{stage}.0.conv1.weight" in sd:
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in sd:
            name = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            if bottleneck:
                y = relu(bn_nchw(conv_nchw(x, sd[f"{name}.conv1.weight"]), sd, f"{name}.bn1"))
                y = relu(bn_nchw(conv_nchw(y, sd[f"{name}.conv2.weight"], stride, 1), sd, f"{name}.bn2"))
                y = bn_nchw(conv_nchw(y, sd[f"{name}.conv3.weight"]), sd, f"{name}.bn3")
            else:
                y = relu(bn_nchw(conv_nchw(x, sd[f"{name}.conv1.weight"], stride, 1), sd, f"{name}.bn1"))
                y = bn_nchw(conv_nchw(y, sd[f"{name}.conv2.weight"], 1, 1), sd, f"{name}.bn2")
            if f"{name}.downsample.0.weight" in sd:
                x = bn_nchw(conv_nchw(x, sd[f"{name}.downsample.0.weight"], stride), sd, f"{name}.downsample.1")
            x = relu(x + y)
            block += 1
        stage += 1
    return x.mean(axis=(2, 3)) @ sd["fc.weight"].T + sd["fc.bias"]


def random_torch_resnet(rng, *, bottleneck, stage_blocks, stage_filters, classes, expansion=4):
    """A random torchvision-named ResNet state dict (with the `num_batches_tracked` buffers PyTorch saves)."""
    sd = {}

    def conv(name, out_channels, in_channels, k):
        sd[f"{name}.weight"] = rng.normal(
            0, math.sqrt(2 / (in_channels * k * k)), (out_channels, in_channels, k, k)
        ).astype("float32")

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype("float32")
        sd[f"{name}.bias"] = rng.normal(0, 0.2, c).astype("float32")
        sd[f"{name}.running_mean"] = rng.normal(0, 0.2, c).astype("float32")
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype("float32")
        sd[f"{name}.num_batches_tracked"] = np.array(100, "int64")

    conv("conv1", stage_filters[0], 3, 7)
    bn("bn1", stage_filters[0])
    channels = stage_filters[0]
    for s, (blocks, filters) in enumerate(zip(stage_blocks, stage_filters), start=1):
        out_channels = filters * (expansion if bottleneck else 1)
        for b in range(blocks):
            name = f"layer{s}.{b}"
            if bottleneck:
                conv(f"{name}.conv1", filters, channels, 1), bn(f"{name}.bn1", filters)
                conv(f"{name}.conv2", filters, filters, 3), bn(f"{name}.bn2", filters)
                conv(f"{name}.conv3", out_channels, filters, 1), bn(f"{name}.bn3", out_channels)
            else:
                conv(f"{name}.conv1", filters, channels, 3), bn(f"{name}.bn1", filters)
                conv(f"{name}.conv2", filters, filters, 3), bn(f"{name}.bn2", filters)
            if channels != out_channels or (s > 1 and b == 0):
                conv(f"{name}.downsample.0", out_channels, channels, 1), bn(f"{name}.downsample.1", out_channels)
            channels = out_channels
    sd["fc.weight"] = rng.normal(0, 1 / math.sqrt(channels), (classes, channels)).astype("float32")
    sd["fc.bias"] = rng.normal(0, 0.1, classes).astype("float32")
    return sd
