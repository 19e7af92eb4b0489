"""What is benchmarked: each model of the suite with our builder and the peers a user would otherwise pick.

A `ModelSpec` is one row group of the table: an input, a class count, a default batch and its candidates. Every
peer names the "ours" candidate it is compared with (`against`), which has the same architecture as the peer,
so the ratio ours/peer compares equal work:

    keras.applications ResNet50 is ResNet v1 with conv biases     -> ours `resnet50_keras` preset (same layout)
    keras-hub ResNetBackbone (ResNet-50) puts the stride on the 3x3 (v1.5)  -> ours `resnet50`, version="v1.5"
    keras-hub ViTBackbone, timm ViT                                -> ours ViT preset (same Table 1 row)
    torchvision / timm ResNet-50 (v1.5, no biases)                 -> ours `resnet50`, version="v1.5"

No library ships the CIFAR ResNets of the paper (keras-hub's ResNetBackbone requires 64 first-stage filters and
a stride-4 stem), so those are compared with `cifar_resnet_functional`, the same network written as one flat
functional graph of built-in layers: it measures what our block layers cost against the plainest Keras code.
"""

import dataclasses
import importlib.util

FRAMEWORKS = ("keras", "torch")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One model implementation measured in a worker process.

    Attributes:
        key: unique name within its model group (the table's "candidate" column).
        builder: name of a function in `keras_vitres.benchmark.builders.BUILDERS`.
        options: keyword arguments of that builder.
        framework: "keras" or "torch".
        requires: importable modules the builder needs; a candidate whose module is missing is reported, not run.
        against: key of the "ours" candidate this peer is compared with; None for ours.
        gpu_only: measured only when a GPU is present (the PyTorch peers).
        note: shown in the table's note column.
    """

    key: str
    builder: str
    options: dict = dataclasses.field(default_factory=dict)
    framework: str = "keras"
    requires: tuple = ()
    against: str = None
    gpu_only: bool = False
    note: str = ""

    @property
    def is_ours(self):
        return self.against is None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model of the suite: input, classes, default batch and the candidates measured against each other."""

    key: str
    title: str
    image_shape: tuple
    classes: int
    batch_size: int
    candidates: tuple

    @property
    def ours(self):
        """Our candidate with the model's default layout (the first "ours" of the group)."""
        return next(c for c in self.candidates if c.is_ours)


def _ours(key, preset, note="", **overrides):
    return Candidate(key, "preset", dict(preset=preset, overrides=overrides), note=note)


def _cifar(depth, batch_size=128, with_reference=True, note=""):
    reference = Candidate("keras functional", "cifar_resnet_functional", dict(depth=depth), against="ours",
                          note="same net as one flat functional graph (no library ships the CIFAR ResNets)")
    return ModelSpec(
        key=f"resnet{depth}",
        title=f"ResNet-{depth} (CIFAR)",
        image_shape=(32, 32, 3),
        classes=10,
        batch_size=batch_size,
        candidates=(_ours("ours", f"resnet{depth}", note=note), *([reference] if with_reference else [])),
    )


def _resnet50():
    return ModelSpec(
        key="resnet50",
        title="ResNet-50",
        image_shape=(224, 224, 3),
        classes=1000,
        batch_size=16,
        candidates=(
            _ours("ours", "resnet50_keras", note="v1 with conv biases, the keras.applications layout"),
            Candidate("keras.applications", "keras_applications_resnet50", against="ours", note="weights=None"),
            _ours("ours v1.5", "resnet50", version="v1.5", note="v1.5, no conv biases (keras-hub, torchvision)"),
            Candidate("keras-hub", "keras_hub_resnet", dict(depth=50), requires=("keras_hub",), against="ours v1.5",
                      note="ResNetBackbone + avg pool + Dense"),
            Candidate("torchvision", "torchvision_model", dict(name="resnet50"), framework="torch",
                      requires=("torch", "torchvision"), against="ours v1.5", gpu_only=True),
            Candidate("timm", "timm_model", dict(name="resnet50"), framework="torch", requires=("torch", "timm"),
                      against="ours v1.5", gpu_only=True),
        ),
    )


def _vit(size, short, hidden_dim, num_layers, num_heads, mlp_dim):
    config = dict(patch_size=16, hidden_dim=hidden_dim, num_layers=num_layers, num_heads=num_heads, mlp_dim=mlp_dim)
    return ModelSpec(
        key=f"vit_{short.lower()}16",
        title=f"ViT-{short}/16",
        image_shape=(224, 224, 3),
        classes=1000,
        batch_size=16,
        candidates=(
            _ours("ours", f"vit_{size}_patch16_224"),
            Candidate("keras-hub", "keras_hub_vit", config, requires=("keras_hub",), against="ours",
                      note="ViTBackbone + class token + Dense"),
            Candidate("timm", "timm_model", dict(name=f"vit_{size}_patch16_224"), framework="torch",
                      requires=("torch", "timm"), against="ours", gpu_only=True),
        ),
    )


TINY_VIT = dict(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64)

MODELS = {
    spec.key: spec
    for spec in (
        _cifar(20),
        _cifar(110),
        # ResNet-1202 at 128 would need ~20 GB of activations (or remat) and its first step traces ~2,400 layers
        # for minutes: batch 16, and no second copy (ResNet-110 already compares the same blocks).
        _cifar(1202, batch_size=16, with_reference=False,
               note="batch 16: 128 needs ~20 GB without remat; compared with the functional net at ResNet-110"),
        _resnet50(),
        _vit("small", "S", 384, 12, 6, 1536),
        _vit("base", "B", 768, 12, 12, 3072),
        # Not in the default run (3.5x ViT-B's cost): `--models vit_l16`, and the remat measurement's ViT-L.
        _vit("large", "L", 1024, 24, 16, 4096),
        # Tiny stand-ins for --quick (tests, smoke runs): same code paths, seconds instead of minutes.
        ModelSpec("tiny_resnet", "ResNet-8 (CIFAR, tiny)", (32, 32, 3), 10, 8, (
            _ours("ours", "resnet20", depth=8),
            Candidate("keras functional", "cifar_resnet_functional", dict(depth=8), against="ours",
                      note="same net as one flat functional graph"),
        )),
        ModelSpec("tiny_vit", "ViT 2x32, patch 8 (tiny)", (32, 32, 3), 10, 8, (
            Candidate("ours", "vision_transformer", TINY_VIT),
            Candidate("keras-hub", "keras_hub_vit", TINY_VIT, requires=("keras_hub",), against="ours",
                      note="ViTBackbone + class token + Dense"),
        )),
    )
}  # fmt: skip
DEFAULT_MODELS = ("resnet20", "resnet110", "resnet1202", "resnet50", "vit_s16", "vit_b16")
QUICK_MODELS = ("tiny_resnet", "tiny_vit")
ALIASES = {"vit_small_patch16_224": "vit_s16", "vit_base_patch16_224": "vit_b16", "vit_large_patch16_224": "vit_l16"}


def get_models(names):
    """Returns the `ModelSpec`s for a list of names (keys of `MODELS` or aliases), or raises naming the bad one."""
    specs = []
    for name in names:
        key = ALIASES.get(name, name)
        if key not in MODELS:
            raise _unknown_model(name)
        specs.append(MODELS[key])
    return specs


def _unknown_model(given):
    return ValueError(f"Unknown benchmark model: received models={given!r}; valid names are {sorted(MODELS)}.")


def get_model_batches(text):
    """Parses "MODEL:BATCH,MODEL,..." (the remat scripts' `--models`) into (`ModelSpec`, batch size) pairs.

    A model without a batch gets its default; names and aliases are those of `get_models`. An unknown name or a
    batch that is not a positive int raises a ValueError naming the item.
    """
    pairs = []
    for item in text.split(","):
        item = item.strip()
        name, _, batch = item.partition(":")
        try:
            (spec,) = get_models([name])
        except ValueError:
            raise _unknown_model(item) from None  # the whole item, as typed
        if batch and (not batch.isdigit() or int(batch) < 1):
            raise ValueError(f"The batch after a model must be a positive int: received models={item!r}.")
        pairs.append((spec, int(batch) if batch else spec.batch_size))
    return pairs


def is_installed(module):
    """Whether `module` can be found without importing it (importing TensorFlow or PyTorch here would be slow)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def skip_reason(candidate, device):
    """Why `candidate` cannot run on `device` ("cpu" or "gpu"), or None when it can."""
    missing = [m for m in candidate.requires if not is_installed(m)]
    if missing:
        packages = " ".join(m.replace("_", "-") for m in missing)
        return f"not installed: {', '.join(missing)} (pip install {packages})"
    if candidate.gpu_only and device != "gpu":
        return "GPU-only peer: not measured without a GPU"
    return None
