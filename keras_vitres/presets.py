"""The preset registry: one row per named model, with its configuration, pinned parameter counts, paper table and
named checkpoints.

`params` is `model.count_params()` (BatchNorm moving statistics included); `trainable_params` counts weights,
biases and BN scale/offset only, the figure that torchvision/timm publish. Both are pinned by the test suite for
every row, and a row without them fails it.

`weights` maps checkpoint names to published files: `url`, `sha256` (a download is always verified), and
optionally `fname` (the cached file's name) and `config` (builder arguments the checkpoint needs, e.g.
`approximate_gelu=True`, under the caller's). `build_model(name, weights="NAME")` downloads a declared
checkpoint (`keras_vitres.weights.download`) and hands its path to the builder; any other `weights=` (a local
path) goes to the builder as it is.

The table is plain data: reading it imports neither Keras nor a backend. The builders are imported when a model
is built.
"""

import difflib
import importlib

# Builder name -> the module that defines it.
BUILDER_MODULES = {
    "ResNet": "keras_vitres.models.resnet",
    "VisionTransformer": "keras_vitres.models.vit",
    "HybridViT": "keras_vitres.models.hybrid",
    "BiTResNet": "keras_vitres.models.bit",
}

RESNET_PAPER = "arXiv:1512.03385"
VIT_PAPER = "arXiv:2010.11929"
BIT_PAPER = "arXiv:1912.11370"


def _cifar(depth, shortcut, params, trainable):
    kind = "ResNet" if shortcut else "Plain"
    return dict(
        builder="ResNet",
        builder_name=f"{kind}{'Net' if not shortcut else ''}{depth}",
        config=dict(depth=depth, stem="cifar", shortcut=shortcut),
        params=params,
        trainable_params=trainable,
        paper=f"{RESNET_PAPER} §4.2, Table 6" if shortcut else f"{RESNET_PAPER} §4.2, Fig. 6 (plain)",
        description=f"CIFAR {'ResNet' if shortcut else 'plain net'}-{depth}, 16/32/64 filters"
        + (", shortcut option A" if shortcut else ", no shortcuts"),
        weights={},
    )


def _imagenet(depth, shortcut, params, trainable, keras_layout=False):
    config = dict(depth=depth, stem="imagenet", shortcut=shortcut)
    if keras_layout:
        config.update(use_bias=True, bn_epsilon=1.001e-5)
    name = "ResNet" if shortcut else "PlainNet"
    return dict(
        builder="ResNet",
        builder_name=None if keras_layout else f"{name}{depth}",
        config=config,
        params=params,
        trainable_params=trainable,
        paper=f"{RESNET_PAPER} Table 1" + ("" if shortcut else " (plain, Fig. 4)"),
        description=(
            f"ImageNet ResNet-{depth} with conv biases, the layout of keras.applications' weight files"
            if keras_layout
            else f"ImageNet {'ResNet' if shortcut else 'plain net'}-{depth}"
            + (", shortcut option B" if shortcut else ", no shortcuts")
        ),
        weights={},
    )


VIT_SIZES = {  # ViT paper Table 1: hidden D, layers, heads, MLP
    "tiny": ("Ti", dict(hidden_dim=192, num_layers=12, num_heads=3, mlp_dim=768)),
    "small": ("S", dict(hidden_dim=384, num_layers=12, num_heads=6, mlp_dim=1536)),
    "base": ("B", dict(hidden_dim=768, num_layers=12, num_heads=12, mlp_dim=3072)),
    "large": ("L", dict(hidden_dim=1024, num_layers=24, num_heads=16, mlp_dim=4096)),
    "huge": ("H", dict(hidden_dim=1280, num_layers=32, num_heads=16, mlp_dim=5120)),
}
VIT_PARAMS = {  # 224x224, 1000 classes, class token, no pre-logits (shared/REFERENCE.md)
    ("tiny", 32): 6_131_560, ("tiny", 16): 5_717_416, ("tiny", 14): 5_694_376,
    ("small", 32): 22_878_952, ("small", 16): 22_050_664, ("small", 14): 22_004_584,
    ("base", 32): 88_224_232, ("base", 16): 86_567_656, ("base", 14): 86_475_496,
    ("large", 32): 306_535_400, ("large", 16): 304_326_632, ("large", 14): 304_203_752,
    ("huge", 32): 634_960_360, ("huge", 16): 632_199_400, ("huge", 14): 632_045_800,
}  # fmt: skip


def _vit(size, patch):
    short, dims = VIT_SIZES[size]
    params = VIT_PARAMS[(size, patch)]
    return dict(
        builder="VisionTransformer",
        builder_name=f"ViT{short}{patch}",
        config=dict(patch_size=patch, **dims),
        params=params,
        trainable_params=params,
        paper=f"{VIT_PAPER} Table 1" + (" (Ti/S sizes: DeiT, arXiv:2012.12877)" if size in ("tiny", "small") else ""),
        description=f"ViT-{short}/{patch} at 224x224",
        weights={},
    )


# BiT ResNets with a 1,000-class head at 224x224 (group norms have no moving statistics: all are trainable). The
# counts equal a closed-form sum over the layers (tests/models/test_bit.py) and timm's `resnetv2_{depth}x{w}_bit`.
BIT_PARAMS = {(50, 1): 25_549_352, (50, 3): 217_319_080, (101, 1): 44_541_480, (101, 3): 387_934_888,
              (152, 2): 236_335_208, (152, 4): 936_533_224}  # fmt: skip


def _bit(depth, width):
    params = BIT_PARAMS[(depth, width)]
    return dict(
        builder="BiTResNet",
        builder_name=f"BiTR{depth}x{width}",
        config=dict(depth=depth, width_multiplier=width),
        params=params,
        trainable_params=params,
        paper=f"{BIT_PAPER} §2.1; {VIT_PAPER} §4.1 (BiT baselines)",
        description=f"BiT ResNet-{depth}x{width}: pre-activation bottlenecks, group norm and weight-standardised "
        f"convolutions, widths x{width}",
        weights={},
    )


PRESETS = {
    **{f"resnet{d}": _cifar(d, "A", p, t) for d, p, t in (
        (20, 271_098, 269_722), (32, 466_426, 464_154), (44, 661_754, 658_586),
        (56, 857_082, 853_018), (110, 1_736_058, 1_727_962), (1202, 19_510_906, 19_421_274))},
    # Option A shortcuts have no parameters, so a plain net counts exactly as its residual twin.
    **{f"plain{d}": _cifar(d, None, p, t) for d, p, t in (
        (20, 271_098, 269_722), (32, 466_426, 464_154), (44, 661_754, 658_586),
        (56, 857_082, 853_018), (110, 1_736_058, 1_727_962))},
    "resnet18": _imagenet(18, "B", 11_699_112, 11_689_512),
    "resnet34": _imagenet(34, "B", 21_814_696, 21_797_672),
    "resnet50": _imagenet(50, "B", 25_610_152, 25_557_032),
    "resnet101": _imagenet(101, "B", 44_654_504, 44_549_160),
    "resnet152": _imagenet(152, "B", 60_344_232, 60_192_808),
    # Plain: ResNet-18/34 less their three projection shortcuts (173,824 trainable, 1,792 BN statistics).
    "plain18": _imagenet(18, None, 11_523_496, 11_515_688),
    "plain34": _imagenet(34, None, 21_639_080, 21_623_848),
    "resnet50_keras": _imagenet(50, "B", 25_636_712, 25_583_592, keras_layout=True),
    "resnet101_keras": _imagenet(101, "B", 44_707_176, 44_601_832, keras_layout=True),
    "resnet152_keras": _imagenet(152, "B", 60_419_944, 60_268_520, keras_layout=True),
    **{f"vit_{size}_patch{patch}_224": _vit(size, patch) for size in VIT_SIZES for patch in (16, 32, 14)},
    "vit_base_patch16_224_in21k": dict(
        builder="VisionTransformer",
        builder_name=None,
        config=dict(patch_size=16, representation_size=768, classes=21843, **VIT_SIZES["base"][1]),
        params=103_186_515,
        trainable_params=103_186_515,
        paper=f"{VIT_PAPER} §3.1 and §4.1 (ImageNet-21k pre-training head with pre-logits)",
        description="ViT-B/16 as pre-trained on ImageNet-21k: 768-wide pre-logits, 21,843 classes",
        weights={},
    ),
    "vit_digits_patch4_32": dict(
        builder="VisionTransformer",
        builder_name=None,
        config=dict(patch_size=4, hidden_dim=64, num_layers=4, num_heads=4, mlp_dim=128, input_shape=(32, 32, 3),
                    classes=10),
        params=142_026,
        trainable_params=142_026,
        paper=f"{VIT_PAPER} (a small ViT for 32x32 inputs: width 64, 4 layers, 4 heads, MLP 128)",
        description="Small ViT/4 on 32x32 images, the `digits_vit` recipe's: width 64, 4 layers, 4 heads, MLP 128",
        weights={},
    ),
    **{f"bit_r{depth}x{width}": _bit(depth, width) for depth, width in BIT_PARAMS},
    "r50_vit_base_patch16_224": dict(
        builder="HybridViT",
        builder_name="R50ViTB16",
        config=dict(**VIT_SIZES["base"][1]),
        # The group-norm trunk has no moving statistics; its scales and offsets count as the batch-norm trunk's.
        params=98_659_112,
        trainable_params=98_659_112,
        paper=f"{VIT_PAPER} §3.1, Table 5 (R50x1+ViT-B/16)",
        description="Hybrid: the paper's ResNet-50 trunk (group norm, weight standardisation; stages 3/4/9, stride 16) "
        "feeding 1x1 patches to ViT-B",
        weights={},
    ),
}  # fmt: skip


def list_presets():
    """Returns the names of every registered preset, sorted."""
    return sorted(PRESETS)


def get_preset(name):
    """Returns the registry row of a preset, or raises a ValueError that suggests close names."""
    if not isinstance(name, str):  # a list or dict is unhashable, and bytes would never match
        raise ValueError(f"`name` must be a preset name (a str); received name={name!r}. `list_presets()` lists all "
                         f"{len(PRESETS)}.")
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown preset: received name={name!r}.{hint} `list_presets()` lists all {len(PRESETS)}.")
    return PRESETS[name]


def get_builder(builder):
    """Returns the builder function named by a preset row's `builder` ("ResNet", "VisionTransformer", ...)."""
    if builder not in BUILDER_MODULES:
        raise ValueError(f"`builder` must be one of {sorted(BUILDER_MODULES)}; received builder={builder!r}.")
    return getattr(importlib.import_module(BUILDER_MODULES[builder]), builder)


def __getattr__(name):
    if name == "BUILDERS":  # builder name -> function; imports the builders (and Keras) on first use
        return {builder: get_builder(builder) for builder in BUILDER_MODULES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(name, **overrides):
    """Builds the preset `name`; keyword arguments override its configuration (e.g. `classes=10`).

    `weights` is a local file (any format the builders read) or the name of a checkpoint the preset declares in
    its `weights` field, which is downloaded, verified and cached first.

    Examples:
        >>> model = build_model("resnet20")
        >>> model.name, model.count_params()
        ('resnet20', 271098)
    """
    row = get_preset(name)
    weights = overrides.get("weights")
    checkpoint = row["weights"].get(weights) if isinstance(weights, str) else None
    config = {**row["config"], **(checkpoint or {}).get("config", {}), "name": name, **overrides}
    if checkpoint is not None:  # a declared name: download (sha256-verified, cached) and load the file
        from keras_vitres.weights.download import download

        config["weights"] = download(checkpoint["url"], checkpoint["sha256"], fname=checkpoint.get("fname"))
    return get_builder(row["builder"])(**config)


def _named_builder(preset):
    row = PRESETS[preset]

    def builder(**kwargs):
        return build_model(preset, **kwargs)

    builder.__name__ = builder.__qualname__ = row["builder_name"]
    builder.__doc__ = (
        f"{row['description']} ({row['paper']}).\n\n"
        f"Preset `{preset}`: {row['params']:,} parameters ({row['trainable_params']:,} trainable). Keyword arguments "
        f"override the preset's configuration and are those of `{row['builder']}` (`include_top`, `weights`, "
        f"`input_shape`, `pooling`, `classes`, `classifier_activation`, ...).\n\nReturns:\n    A `keras.Model`.\n"
    )
    return builder


NAMED_BUILDERS = {row["builder_name"]: _named_builder(name) for name, row in PRESETS.items() if row["builder_name"]}
