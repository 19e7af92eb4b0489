"""The preset table: one row per named model, plain data (reading it imports neither Keras nor a backend).

A row names its `builder` (a function of `keras_vitres.presets.build.BUILDERS`), the builder's `config`, the
`builder_name` of its named builder (`keras_vitres.ResNet50`, or None), `params` (`model.count_params()`, BatchNorm
moving statistics included) and `trainable_params` (weights, biases and BN scale/offset: the figure torchvision and
timm publish), both pinned by the test suite for every row, its `paper` table and a `description`.

`weights` maps weight names (`"imagenet"`, `"imagenet21k"`, ...) to entries that record:
    source, and where the weights come from: "keras.applications" (`files` top/notop with Keras' pinned md5,
        `base_url`), "url" (`url`, `sha256`), "keras_hub" (a preset `handle`) or "hf_hub" (`repo_id`,
        `filename`, and `revision`, `sha256` with their `pin_source` where published); `keras_vitres.weights.named`
        fetches and verifies them;
    config: the builder options the weights need (e.g. `use_bias`, `bn_epsilon`, `version`, `approximate_gelu`);
    preprocessing: the `keras_vitres.layers.Preprocessing` fields the weights expect (input size, channel order,
        scale/offset or mean/std, interpolation, crop fraction), which the model applies as its first layer;
    description, licence and top1 (ImageNet top-1 as published, with `top1_source`, where a file available
        offline states it; else None).
"""

import copy
import difflib
import os

RESNET_PAPER = "arXiv:1512.03385"
VIT_PAPER = "arXiv:2010.11929"
BIT_PAPER = "arXiv:1912.11370"

# keras.applications' ResNet weight files: Keras' `BASE_WEIGHTS_PATH` and its pinned md5 (`WEIGHTS_HASHES`, the
# only hashes published for them) of the file with the top and the `_notop` one (keras/src/applications/resnet.py).
KERAS_APPLICATIONS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# Top-1 on ImageNet as the Keras applications page publishes it (keras.io/api/applications, "Available models").
KERAS_APPLICATIONS_TOP1 = {50: 0.749, 101: 0.764, 152: 0.766}
KERAS_APPLICATIONS_MD5 = {
    50: ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    101: ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    152: ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
# keras.applications' `preprocess_input` for ResNet ("caffe" mode): RGB to BGR, minus the ImageNet mean in [0, 255].
# Its examples load images straight at 224x224 (`load_img(target_size=(224, 224))`): no crop.
CAFFE = dict(image_size=(224, 224), channel_order="bgr", mean=(103.939, 116.779, 123.68))
# The paper's ViT checkpoints as keras-hub converted them (Hugging Face's google/vit-*): [-1, 1] pixels, images
# resized to the model's size without a crop.
VIT_HUB = dict(scale=1 / 127.5, offset=-1.0)


def _keras_applications_weights(depth):
    top, notop = KERAS_APPLICATIONS_MD5[depth]
    fname = f"resnet{depth}_weights_tf_dim_ordering_tf_kernels"
    return {
        "imagenet": dict(
            source="keras.applications",
            base_url=KERAS_APPLICATIONS_BASE_URL,
            files=dict(top=dict(fname=f"{fname}.h5", md5=top), notop=dict(fname=f"{fname}_notop.h5", md5=notop)),
            config=dict(stem="imagenet", shortcut="B", version="v1", use_bias=True, bn_epsilon=1.001e-5),
            preprocessing=CAFFE,
            description=f"ImageNet-1k, keras.applications.ResNet{depth}(weights='imagenet')'s files (the paper's "
            "Caffe models, converted)",
            licence="MIT (keras-applications; the paper's Caffe models: MIT)",
            top1=KERAS_APPLICATIONS_TOP1[depth],
            top1_source="the Keras applications page (keras.io/api/applications)",
        )
    }


def _keras_hub_vit_weights(size, patch):
    """keras-hub's ViT presets for a size: ImageNet-21k backbones, and 21k then ImageNet-1k classifiers at 224
    and 384 (the paper's §4.1 fine-tuning), where keras-hub publishes them (keras_hub/src/models/vit)."""
    hub = {  # (size, patch): {weight name: (keras-hub preset, Kaggle version, resolution, has a classifier)}
        ("base", 16): {"imagenet21k": ("vit_base_patch16_224_imagenet21k", 3, 224, False),
                       "imagenet": ("vit_base_patch16_224_imagenet", 4, 224, True),
                       "imagenet_384": ("vit_base_patch16_384_imagenet", 4, 384, True)},
        ("large", 16): {"imagenet21k": ("vit_large_patch16_224_imagenet21k", 3, 224, False),
                        "imagenet": ("vit_large_patch16_224_imagenet", 4, 224, True),
                        "imagenet_384": ("vit_large_patch16_384_imagenet", 4, 384, True)},
        ("base", 32): {"imagenet21k": ("vit_base_patch32_224_imagenet21k", 3, 224, False),
                       "imagenet_384": ("vit_base_patch32_384_imagenet", 3, 384, True)},
        ("large", 32): {"imagenet21k": ("vit_large_patch32_224_imagenet21k", 3, 224, False),
                        "imagenet_384": ("vit_large_patch32_384_imagenet", 3, 384, True)},
        ("huge", 14): {"imagenet21k": ("vit_huge_patch14_224_imagenet21k", 3, 224, False)},
    }.get((size, patch), {})  # fmt: skip
    weights = {}
    for name, (preset, version, resolution, classifier) in hub.items():
        weights[name] = dict(
            source="keras_hub",
            handle=f"kaggle://keras/vit/keras/{preset}/{version}",
            classifier=classifier,
            config=dict(approximate_gelu=False),
            preprocessing=dict(image_size=(resolution, resolution), **VIT_HUB),
            description=(f"ImageNet-21k then ImageNet-1k at {resolution}x{resolution}" if classifier
                         else "ImageNet-21k pre-training (backbone: the head starts at zero)")
            + f", keras-hub preset {preset!r}",
            licence="Apache-2.0 (keras-hub's Kaggle model page; the paper's checkpoints: Apache-2.0)",
            top1=None,
        )
    return weights


def _keras_hub_resnet_weights(depth):
    """keras-hub's ResNet presets (v1.5: stride on the bottleneck's 3x3, no conv biases), where published."""
    if depth not in (18, 50, 101, 152):
        return {}
    return {
        "keras_hub_imagenet": dict(
            source="keras_hub",
            handle=f"kaggle://keras/resnetv1/keras/resnet_{depth}_imagenet/3",
            classifier=True,
            config=dict(stem="imagenet", shortcut="B", version="v1.5", use_bias=False, bn_epsilon=1e-5),
            # keras-hub converted these from timm's `resnet{depth}.a1_in1k` (its convert_resnet_checkpoints.py), and
            # its timm loader takes their pretrained_cfg's interpolation: bicubic (timm's resnet.py, `_rcfg`).
            preprocessing=dict(image_size=(224, 224), scale=1 / 255, mean=(0.485, 0.456, 0.406),
                               std=(0.229, 0.224, 0.225), interpolation="bicubic"),  # fmt: skip
            description=f"ImageNet-1k, keras-hub preset 'resnet_{depth}_imagenet' (v1.5, timm's "
            f"'resnet{depth}.a1_in1k' converted)",
            licence="Apache-2.0 (keras-hub's Kaggle model page)",
            top1=None,
        )
    }


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
        weights={
            **(_keras_applications_weights(depth) if shortcut and depth in KERAS_APPLICATIONS_MD5 else {}),
            **(_keras_hub_resnet_weights(depth) if shortcut and not keras_layout else {}),
            **(_timm_resnet_weights(depth) if shortcut and not keras_layout else {}),
        },
    )


# timm's copies on the Hugging Face hub (`timm/<model>.<tag>`, `model.safetensors`), verified by their sha256
# (`keras_vitres.weights.hf_hub`). Preprocessing as their `pretrained_cfg` in timm (timm/models/resnet.py,
# vision_transformer.py, vision_transformer_hybrid.py, resnetv2.py: input size, crop_pct, interpolation, mean/std).
TIMM_LICENCE = "Apache-2.0 (timm's pretrained_cfg)"
IMAGENET_MEAN_STD = dict(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# Revisions and sha256 as the hub's own pages publish them, read 2026-12-08: `revision` a commit whose file tree
# lists the file as last changed by the commit that wrote its current contents; `sha256` the "Git LFS Details" of
# the file's page, paired with a revision only where that page names the same commit. The others have neither
# published here; their files are checked against the hub's report (docs/weights.md, "What is checked").
HF = "https://huggingface.co/timm/"
TIMM_PINS = {  # timm model: (revision or None, sha256 or None, where both are published)
    "resnet18.tv_in1k": ("a987fd6b60f845221bfff84b6f0191273ba56ead",
                         "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
                         f"{HF}resnet18.tv_in1k/blob/main/model.safetensors (last changed by a987fd6, "
                         f"{HF}resnet18.tv_in1k/blob/a987fd6b60f845221bfff84b6f0191273ba56ead/pytorch_model.bin)"),
    "resnet50.tv_in1k": ("aa6c2d36d56bc0209040c02b5a7b7d7bf11d57b8",
                         "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888",
                         f"{HF}resnet50.tv_in1k/blob/aa6c2d36d56bc0209040c02b5a7b7d7bf11d57b8/model.safetensors"),
    "resnet152.tv_in1k": (None, "15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2",
                          f"{HF}resnet152.tv_in1k/blob/main/model.safetensors"),
    "vit_base_patch16_224.orig_in21k": ("677f7d814cf0d89b7e65b1ea49277ed508a62363",
                                        "1cf14745201dfaffba38831c7cc1003c51618569d0a5dd31a895fe604c427253",
                                        f"{HF}vit_base_patch16_224.orig_in21k/blob/main/model.safetensors (last changed "
                                        f"by 2e13465, its only commit: .../commits/main/model.safetensors), "
                                        f"{HF}vit_base_patch16_224.orig_in21k/tree/677f7d814cf0d89b7e65b1ea49277ed508a62363"),
    "vit_base_patch32_224.orig_in21k": ("650de1ce511b09a5c52424a00fec4ae8f22d402c", None,
                                        f"{HF}vit_base_patch32_224.orig_in21k/tree/650de1ce511b09a5c52424a00fec4ae8f22d402c"),
    "vit_large_patch16_224.orig_in21k": ("569744c475cb8bdbc98da41f91f3a52d9987e7d9", None,
                                         f"{HF}vit_large_patch16_224.orig_in21k/tree/569744c475cb8bdbc98da41f91f3a52d9987e7d9"),
    "vit_large_patch32_224.orig_in21k": ("0bc18a14905f52e5e322f7b566a101fb67771577", None,
                                         f"{HF}vit_large_patch32_224.orig_in21k/tree/0bc18a14905f52e5e322f7b566a101fb67771577"),
    "vit_huge_patch14_224.orig_in21k": ("df7624d578ed2f1d55a4e31f375c73e969d2fa79", None,
                                        f"{HF}vit_huge_patch14_224.orig_in21k/tree/df7624d578ed2f1d55a4e31f375c73e969d2fa79"),
    "vit_base_patch16_384.orig_in21k_ft_in1k": ("a9c045638f0ae6090b6e601ea6e4965ef52cd140", None,
                                                f"{HF}vit_base_patch16_384.orig_in21k_ft_in1k/tree/main (head a9c0456), "
                                                f"{HF}vit_base_patch16_384.orig_in21k_ft_in1k/commit/"
                                                "a9c045638f0ae6090b6e601ea6e4965ef52cd140"),
    "vit_base_r50_s16_224.orig_in21k": (None, "a03ec9cf78476304ef12edb58ef42c72f159c16d35a3cfd2277fae7a061af813",
                                        f"{HF}vit_base_r50_s16_224.orig_in21k/blob/refs%2Fpr%2F2/model.safetensors "
                                        "(last changed by a5736b3, as on main)"),
    "vit_base_r50_s16_384.orig_in21k_ft_in1k": ("de1802dabe5c370db01958230454061757dea669", None,
                                                f"{HF}vit_base_r50_s16_384.orig_in21k_ft_in1k/tree/"
                                                "de1802dabe5c370db01958230454061757dea669"),
    "resnetv2_50x1_bit.goog_in21k_ft_in1k": ("2954bbd0ccd7b328b612473a24a15783e1fcd205", None,
                                             f"{HF}resnetv2_50x1_bit.goog_in21k_ft_in1k/tree/"
                                             "2954bbd0ccd7b328b612473a24a15783e1fcd205"),
    "resnetv2_101x1_bit.goog_in21k": ("b4e028cbb10361b430ce3c8521d8703eafba40ac",
                                      "89c645b9480d6c72c3f95deefa67ab4e1c5ee3823f09af7fd68e27f6a9ab51d8",
                                      f"{HF}resnetv2_101x1_bit.goog_in21k/blob/b4e028cbb10361b430ce3c8521d8703eafba40ac/"
                                      "model.safetensors"),
    "resnetv2_101x3_bit.goog_in21k": ("1310408b89cbe81475af87865e8ccd76fb23fc13", None,
                                      f"{HF}resnetv2_101x3_bit.goog_in21k/commits/1310408b89cbe81475af87865e8ccd76fb23fc13"),
    "resnetv2_101x3_bit.goog_in21k_ft_in1k": ("96b8566ca9d1d567bba26d99583b12f503789373", None,
                                              f"{HF}resnetv2_101x3_bit.goog_in21k_ft_in1k/tree/"
                                              "96b8566ca9d1d567bba26d99583b12f503789373"),
    "resnetv2_152x2_bit.goog_in21k_ft_in1k": ("ce7e6f4ff59c8e87cc3d1f088f47fbc7632b7598", None,
                                              f"{HF}resnetv2_152x2_bit.goog_in21k_ft_in1k/commit/"
                                              "ce7e6f4ff59c8e87cc3d1f088f47fbc7632b7598"),
    "resnetv2_152x4_bit.goog_in21k": ("c74ca9574a5f92d46b634632e45e2dd399f18300",
                                      "1fa545b0ee4ba4b10278857ea06ea1e2507a5fabd7b3f0f53ff149e36f66aad9",
                                      f"{HF}resnetv2_152x4_bit.goog_in21k/blob/main/model.safetensors (last changed by "
                                      f"c74ca95), {HF}resnetv2_152x4_bit.goog_in21k/tree/"
                                      "c74ca9574a5f92d46b634632e45e2dd399f18300"),
    "resnetv2_152x4_bit.goog_in21k_ft_in1k": ("5afe11ea6fc68c0b8f0103bf49e6c306384772ba", None,
                                              f"{HF}resnetv2_152x4_bit.goog_in21k_ft_in1k/tree/"
                                              "5afe11ea6fc68c0b8f0103bf49e6c306384772ba"),
}  # fmt: skip


def _timm(model, *, config, size, crop, interpolation, normalisation, description, licence=TIMM_LICENCE):
    """A named-weights entry for timm's `model` ("resnet50.tv_in1k") on the Hugging Face hub, with its pins."""
    revision, sha256, pin_source = TIMM_PINS.get(model, (None, None, None))
    pins = {key: value for key, value in (("revision", revision), ("sha256", sha256), ("pin_source", pin_source)) if value}
    return dict(
        source="hf_hub",
        repo_id=f"timm/{model}",
        filename="model.safetensors",
        **pins,
        config=config,
        preprocessing=dict(image_size=(size, size), crop_fraction=crop, interpolation=interpolation, **normalisation),
        description=f"{description}, timm's {model!r} on the Hugging Face hub",
        licence=licence,
        top1=None,
    )


def _timm_resnet_weights(depth):
    """torchvision's original ImageNet ResNets (v1.5) as timm publishes them (`resnet{depth}.tv_in1k`)."""
    return {
        "timm_tv_in1k": _timm(
            f"resnet{depth}.tv_in1k", config=dict(version="v1.5", use_bias=False, bn_epsilon=1e-5), size=224,
            crop=0.875, interpolation="bilinear", normalisation=IMAGENET_MEAN_STD,
            description="ImageNet-1k, torchvision's original weights (v1.5)", licence="BSD-3-Clause (torchvision)",
        )
    }


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
        weights={**_keras_hub_vit_weights(size, patch), **_timm_vit_weights(size, patch)},
    )


def _timm_vit_weights(size, patch):
    """The paper's checkpoints as timm publishes them (`.orig_in21k`, `.orig_in21k_ft_in1k`): ImageNet-21k
    backbones (timm keeps neither head nor pre-logits) and the ImageNet-1k fine-tunes, where timm has them."""
    tags = {  # weight name: (timm model, resolution, crop fraction)
        "timm_imagenet21k": (f"vit_{size}_patch{patch}_224.orig_in21k", 224, 0.9),
        "timm_imagenet": (f"vit_{size}_patch{patch}_224.orig_in21k_ft_in1k", 224, 0.9),
        "timm_imagenet_384": (f"vit_{size}_patch{patch}_384.orig_in21k_ft_in1k", 384, 1.0),
    }
    published = {("base", 16): ("timm_imagenet21k", "timm_imagenet", "timm_imagenet_384"),
                 ("base", 32): ("timm_imagenet21k",), ("large", 16): ("timm_imagenet21k",),
                 ("large", 32): ("timm_imagenet21k", "timm_imagenet_384"), ("huge", 14): ("timm_imagenet21k",)}
    weights = {}
    for name in published.get((size, patch), ()):
        model, resolution, crop = tags[name]
        weights[name] = _timm(
            model, config=dict(approximate_gelu=False), size=resolution, crop=crop, interpolation="bicubic",
            normalisation=VIT_HUB, description=f"ImageNet-21k then ImageNet-1k at {resolution}x{resolution}"
            if name != "timm_imagenet21k" else "ImageNet-21k pre-training (backbone: the head starts at zero)",
            licence="Apache-2.0 (timm's pretrained_cfg; the paper's checkpoints, google-research/vision_transformer: "
            "Apache-2.0)",
        )
    return weights


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
        weights=_bit_weights(depth, width),
    )


def _bit_weights(depth, width):
    """BiT-M (ImageNet-21k) and BiT-M fine-tuned on ImageNet-1k: the official `BiT-M-R{d}x{w}.npz` and
    `BiT-M-R{d}x{w}-ILSVRC2012.npz` (storage.googleapis.com/bit_models, no published hash) as timm publishes them
    on the Hugging Face hub, verified by their sha256 (pinned where published, else the hub's report). The 21k head (21,843 classes) loads when the
    model has that many classes, and starts at zero (BiT §3.3) otherwise."""
    model = f"resnetv2_{depth}x{width}_bit"
    tuned = 480 if (depth, width) == (152, 4) else 448
    return {
        "imagenet21k": _timm(f"{model}.goog_in21k", config={}, size=224, crop=0.875, interpolation="bilinear",
                             normalisation=VIT_HUB, description="BiT-M: ImageNet-21k pre-training"),
        "imagenet21k+imagenet2012": _timm(
            f"{model}.goog_in21k_ft_in1k", config={}, size=tuned, crop=1.0, interpolation="bilinear",
            normalisation=VIT_HUB, description=f"BiT-M fine-tuned on ImageNet-1k at {tuned}x{tuned}"),
    }


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
        # The ViT repository's imagenet21k/R50+ViT-B_16.npz and imagenet21k+imagenet2012/R50+ViT-B_16.npz
        # (storage.googleapis.com/vit_models, no published hash) as timm publishes them.
        weights={
            "imagenet21k": _timm("vit_base_r50_s16_224.orig_in21k", config=dict(trunk="bit", approximate_gelu=False),
                                 size=224, crop=0.9, interpolation="bicubic", normalisation=VIT_HUB,
                                 description="ImageNet-21k pre-training (backbone: the head starts at zero)"),
            "imagenet21k+imagenet2012": _timm(
                "vit_base_r50_s16_384.orig_in21k_ft_in1k", config=dict(trunk="bit", approximate_gelu=False), size=384,
                crop=1.0, interpolation="bicubic", normalisation=VIT_HUB,
                description="ImageNet-21k then ImageNet-1k at 384x384"),
        },
    ),
}  # fmt: skip



def list_presets():
    """Returns the names of every preset, sorted."""
    return sorted(PRESETS)


def get_preset(name):
    """Returns the row of a preset, or raises a ValueError that suggests close names."""
    if not isinstance(name, str):  # a list or dict is unhashable, and bytes would never match
        raise ValueError(f"`name` must be a preset name (a str); received name={name!r}. `list_presets()` lists all "
                         f"{len(PRESETS)}.")
    if name not in PRESETS:
        raise ValueError(f"Unknown preset: received name={name!r}.{_did_you_mean(name, PRESETS)} `list_presets()` "
                         f"lists all {len(PRESETS)}.")
    return PRESETS[name]


def preset_weights(name):
    """Returns the named weights a preset declares: {weight name: entry} (a copy; see the module docstring).

    Examples:
        >>> sorted(preset_weights("resnet50"))
        ['imagenet', 'keras_hub_imagenet', 'timm_tv_in1k']
        >>> preset_weights("resnet50")["imagenet"]["files"]["top"]["md5"]
        '2cb95161c43110f7111970584f804107'
    """
    return copy.deepcopy(get_preset(name)["weights"])


def resolve_weights(name, weights):
    """The entry of `weights` when it names weights of preset `name`; None when it is None or a path.

    A plain word (no folder, no file suffix) that is not a file and not one of the preset's names is a ValueError
    listing the names the preset has.
    """
    declared = get_preset(name)["weights"]
    if not isinstance(weights, str):
        return None
    if weights in declared:
        return declared[weights]
    if os.sep in weights or "/" in weights or "." in weights or os.path.exists(weights):
        return None  # a local file: the builder's loaders read it
    known = sorted(declared) or "none (pass the path of a local weights file)"
    raise ValueError(
        f"Unknown weights for preset {name!r}: received weights={weights!r}.{_did_you_mean(weights, declared)} Its "
        f"named weights are {known}; `weights` may also be None or the path of a local weights file."
    )


def _did_you_mean(value, names):
    close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
