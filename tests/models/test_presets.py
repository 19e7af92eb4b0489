"""The registry: every preset builds with its pinned parameter counts, and names resolve (or suggest)."""

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.presets import NAMED_BUILDERS, PRESETS, get_preset, list_presets
from keras_vitres.presets.build import build_model
from tests.helpers import trainable_params

# Under JAX too (CI's second step): one build per builder and block type; the counts do not depend on the backend.
JAX_PRESETS = {"resnet20", "plain20", "resnet18", "resnet50", "vit_tiny_patch16_224", "vit_digits_patch4_32",
               "bit_r50x1"}  # fmt: skip

# Building these takes 4-20 s each (up to 632M parameters); CI runs them in its slow step.
SLOW_PRESETS = {n for n in PRESETS if n.startswith(("vit_large", "vit_huge", "resnet1202", "resnet101", "resnet152",
                                                      "bit_r50x3", "bit_r101", "bit_r152"))}  # fmt: skip

# The papers' own figures (ResNet Table 6, ViT Table 1) to the precision they print them.
PAPER_PARAMS_MILLIONS = {
    "resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7, "resnet1202": 19.4,
    "vit_base_patch16_224": 86, "vit_large_patch16_224": 307, "vit_huge_patch14_224": 632, "resnet50": 25.6,
}  # fmt: skip


# The slow presets are built once, in tests/reliability/test_safe_mode_presets.py, which checks the same counts and
# name on that build (building ViT-H or BiT-R152x4 takes 10-35 s; twice would double it).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.backend_agnostic) if n in JAX_PRESETS else n
                                  for n in sorted(set(PRESETS) - SLOW_PRESETS)])  # fmt: skip
def test_preset_builds_with_pinned_parameter_count(name):
    row = PRESETS[name]
    model = build_model(name)
    assert model.name == name
    assert model.count_params() == row["params"]
    assert trainable_params(model) == row["trainable_params"]


def test_every_preset_has_pinned_counts_and_a_paper():
    for name, row in PRESETS.items():
        assert isinstance(row["params"], int) and row["params"] > 0, name
        assert isinstance(row["trainable_params"], int) and 0 < row["trainable_params"] <= row["params"], name
        assert row["paper"].startswith("arXiv:"), name
        assert row["builder"] in ("ResNet", "BiTResNet", "VisionTransformer", "HybridViT"), name


@pytest.mark.parametrize("name, millions", sorted(PAPER_PARAMS_MILLIONS.items()))
def test_pinned_counts_agree_with_the_papers(name, millions):
    """Within half a unit of the last digit the paper prints, or 1.5% (the ViT paper truncates: 86.6M -> "86M")."""
    count = PRESETS[name]["trainable_params"] / 1e6
    half_unit = 0.5 * 10 ** -len(str(millions).partition(".")[2])
    assert abs(count - millions) <= max(half_unit, 0.015 * millions)


def test_hybrid_count_is_its_trunk_plus_a_vit():
    """R50+ViT-B/16 = the paper's trunk (3, 4, 9 group-norm bottlenecks) + 1x1 patch embedding of 1024 channels +
    ViT-B/16's rest. The batch-norm trunk has as many trainable parameters, plus the BN moving statistics."""
    bn_trunk = keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(3, 4, 9),
                                   stage_filters=(64, 128, 256), version="v1.5", include_top=False)  # fmt: skip
    bn_statistics = sum(int(np.prod(w.shape)) for w in bn_trunk.non_trainable_weights)
    vit_b16 = PRESETS["vit_base_patch16_224"]["params"]
    patch_16x16 = 16 * 16 * 3 * 768 + 768
    patch_1x1 = 1024 * 768 + 768
    expected = bn_trunk.count_params() - bn_statistics + patch_1x1 + vit_b16 - patch_16x16
    assert PRESETS["r50_vit_base_patch16_224"]["params"] == expected
    batchnorm = keras_vitres.build_model("r50_vit_base_patch16_224", trunk="batchnorm")
    assert batchnorm.count_params() == expected + bn_statistics == 98_698_920


def test_named_builders_are_exported_and_documented():
    expected = {"ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110", "ResNet1202", "PlainNet20", "PlainNet56",
                "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ViTTi16", "ViTS16", "ViTB16", "ViTB32",
                "ViTL16", "ViTL32", "ViTH14", "R50ViTB16", "BiTR50x1", "BiTR152x4"}  # fmt: skip
    assert expected <= set(NAMED_BUILDERS)
    for name in expected:
        builder = getattr(keras_vitres, name)
        assert builder.__name__ == name and "arXiv:" in builder.__doc__
        assert name in keras_vitres.__all__


def test_named_builder_takes_overrides():
    model = keras_vitres.ResNet20(classes=100, classifier_activation=None)
    assert model.output_shape == (None, 100)
    assert model.get_layer("predictions").activation is keras.activations.linear


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ValueError, match=r"name='vit_base_patch16'.*Did you mean 'vit_base_patch16_224'"):
        get_preset("vit_base_patch16")
    with pytest.raises(ValueError, match="name='resnet21'.*'resnet20'"):
        build_model("resnet21")


def test_list_presets_is_sorted_and_complete():
    names = list_presets()
    assert names == sorted(PRESETS)
    assert {"resnet20", "resnet1202", "plain20", "resnet50", "vit_base_patch16_224", "vit_huge_patch14_224"} <= set(names)
