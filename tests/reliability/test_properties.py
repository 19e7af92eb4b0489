"""Bad input at every public entry point, drawn by Hypothesis: builders, preset names, input dtypes, schedules, the
command line and the serving signature.

Each argument is drawn from a pool of valid values and a pool of invalid ones. A draw with no invalid argument
must build (or run); a draw with any invalid argument must raise ValueError or TypeError whose message names one
of the invalid arguments and the value it received. Nothing may hang (each example has a deadline), crash the
interpreter or leave files behind (each test runs in an empty temporary folder that must stay empty). Runs are
derandomised, so CI draws the same examples every time, and use no example database (no `.hypothesis/` folder).

Inputs that these tests once found accepted, or refused unclearly, are in the drawn pools now and are also
pinned one by one in `FIXED_GAPS` (`test_fixed_gap_raises_a_clear_error`), so each stays covered whatever
Hypothesis draws.
"""

import collections
import contextlib
import dataclasses
import io
import json
import math
import os
from datetime import timedelta

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import keras_vitres
from keras_vitres.cli.main import main
from keras_vitres.training import schedules
from tests.helpers import tiny_vit

SETTINGS = dict(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=60),  # a tiny build takes ~1 s; a hang would take forever
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INVALID = object()  # marks a drawn value as invalid in `Draw.invalid`


@dataclasses.dataclass
class Draw:
    """Drawn keyword arguments, and which of them were drawn from the invalid pools."""

    kwargs: dict
    invalid: dict  # {argument name: value}


def chance(draw, probability):
    """True with about `probability` (st.floats is biased towards 0.0, so a uniform pick among slots instead)."""
    return draw(st.sampled_from(range(round(1 / probability)))) == 0


def pick(draw, name, valid, invalid, kwargs, bad, p_invalid=1 / 12):
    """Draws `name` from `valid` or (with probability ~p_invalid) from `invalid`, recording it."""
    use_invalid = bool(invalid) and chance(draw, p_invalid)
    value = draw(st.sampled_from(invalid if use_invalid else valid))
    kwargs[name] = value
    if use_invalid:
        bad[name] = value
    return value


def names_an_invalid_argument(message, invalid):
    """Whether `message` names one of the invalid arguments together with the value it received."""
    for name, value in invalid.items():
        shown = {repr(value), str(value), repr(tuple(value)) if isinstance(value, list) else repr(value)}
        if name in message and any(s in message for s in shown):
            return True
    return False


class Tally:
    """Counts what the examples of a test did, for docs/reliability.md."""

    def __init__(self):
        self.counts = dict(examples=0, valid_ok=0, clear_errors=0)

    def valid(self):
        self.counts["examples"] += 1
        self.counts["valid_ok"] += 1

    def error(self):
        self.counts["examples"] += 1
        self.counts["clear_errors"] += 1

    def record(self, record_property):
        for key, value in self.counts.items():
            record_property(key, value)
        assert self.counts["examples"] > 0


TALLIES = collections.defaultdict(Tally)  # one per test, across its examples


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """Runs the test in an empty folder, and checks that it is still empty (and the cwd restored) afterwards."""
    start = os.getcwd()
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert os.listdir(tmp_path) == [], f"files left behind: {os.listdir(tmp_path)}"
    monkeypatch.undo()
    assert os.getcwd() == start


def check(build, drawn, tally, accept=None):
    """Runs `build(**drawn.kwargs)`: valid draws must succeed, invalid ones must fail clearly."""
    try:
        result = build(**drawn.kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert drawn.invalid, f"valid arguments {drawn.kwargs} raised {type(error).__name__}: {message}"
        assert names_an_invalid_argument(message, drawn.invalid), (
            f"the error for {drawn.invalid} does not name the argument and value: {type(error).__name__}: {message}"
        )
        tally.error()
        return None
    assert not drawn.invalid, f"invalid arguments {drawn.invalid} were accepted"
    if accept is not None:
        accept(result)
    tally.valid()
    return result


# --- builders ----------------------------------------------------------------------------------------------------


@st.composite
def resnet_arguments(draw):
    kwargs, bad = {}, {}
    stem = pick(draw, "stem", ["cifar", "imagenet"], ["CIFAR", "", None, 3], kwargs, bad)
    if stem == "imagenet":
        pick(draw, "depth", [18], [20, 0, 1202, "18", 18.0, None], kwargs, bad)
        # tiny, so that a build takes a second
        pick(draw, "stage_filters", [(8, 8, 16, 16)], [(0, 8, 16, 16), (8.5, 8, 16, 16), 8], kwargs, bad)
    else:
        pick(draw, "depth", [8, 14, 20], [0, 7, 9, -4, 20.0, "20", True, None], kwargs, bad)
        pick(draw, "stage_filters", [(8, 8, 16), [8, 8, 16]], [(0, 8, 16), (8.5, 8, 16), (8, 8, -16)], kwargs, bad)
    pick(draw, "shortcut", ["auto", "A", "B", "C", None], ["D", "a", 1, ""], kwargs, bad)
    pick(draw, "version", ["v1", "v1.5"], ["v3", "v2", None], kwargs, bad)
    bad_shapes = [(32, 32), (0, 32, 3), (32, 32, -1), (32, 32, 3.0), "32", (32, 32, None), (3, 32, 32)]
    if stem == "imagenet":  # at least 32x32, as keras.applications
        shapes, bad_shapes = [(32, 32, 3), (32, 48, 1), (None, None, 3), None], [*bad_shapes, (16, 16, 1), (24, 40, 3)]
    else:
        shapes = [(32, 32, 3), (16, 16, 1), (None, None, 3), (24, 40, 3), None]
    pick(draw, "input_shape", shapes, bad_shapes, kwargs, bad)
    include_top = pick(draw, "include_top", [True, False], [1, "yes", None], kwargs, bad)
    pick(draw, "classes", [1, 3, 10], [0, -1, 2.5, True, "10"], kwargs, bad)
    if include_top is not True and "classes" in bad:  # classes only matter with a classifier
        del bad["classes"]
    pick(draw, "pooling", [None, "avg", "max"], ["mean", "token", 1], kwargs, bad)
    pick(draw, "classifier_activation", ["softmax", None, "linear"], ["nonsense", 3], kwargs, bad)
    if stem not in ("cifar", "imagenet"):  # the stem decides everything else: only it can be reported
        bad = {"stem": stem}
    return Draw(kwargs, bad)


def check_model_output(model):
    assert isinstance(model, keras.Model)
    x = np.full((1, *(d or 32 for d in model.input_shape[1:])), 100.0, "float32")
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(model(x, training=False))))


@settings(max_examples=12, **SETTINGS)
@given(drawn=resnet_arguments())
def test_resnet_builder_arguments(drawn, empty_cwd, record_property):
    tally = TALLIES["test_resnet_builder_arguments"]
    check(keras_vitres.ResNet, drawn, tally, accept=check_model_output)
    keras.backend.clear_session()
    tally.record(record_property)


@st.composite
def vit_arguments(draw):
    kwargs, bad = {}, {}
    patch = pick(
        draw, "patch_size", [4, 8, (4, 8)], [0, -4, "8", 3.5, (8,), (0, 8), (8.0, 8), True], kwargs, bad
    )
    heads = pick(draw, "num_heads", [1, 2, 4], [0, -2, 2.0], kwargs, bad)
    hidden = pick(draw, "hidden_dim", [8, 16, 32], [30, 2.0 * 8, "16", 0, -8], kwargs, bad)
    if "num_heads" not in bad and "hidden_dim" not in bad and hidden % heads:
        bad["hidden_dim"] = hidden  # not a multiple of num_heads: invalid together
    pick(draw, "num_layers", [1, 2], [0, -1, 1.5], kwargs, bad)
    pick(draw, "mlp_dim", [16, 32], [0, 16.0], kwargs, bad)
    pick(draw, "representation_size", [None, 8], [-3, 0, 8.5], kwargs, bad)
    use_class_token = pick(draw, "use_class_token", [True, False], [], kwargs, bad)
    shape = pick(
        draw,
        "input_shape",
        [(16, 16, 3), (32, 32, 3), (32, 16, 1)],
        [(None, None, 3), (30, 30, 3), (16, 16), (0, 16, 3), (16, -16, 3)],
        kwargs,
        bad,
    )
    if "input_shape" not in bad and "patch_size" not in bad:
        ph, pw = patch if isinstance(patch, tuple) else (patch, patch)
        if shape[0] % ph or shape[1] % pw:
            bad["input_shape"] = shape
    include_top = pick(draw, "include_top", [True, False], [1, None], kwargs, bad)
    pick(draw, "classes", [1, 5], [0, 1.5, "5"], kwargs, bad)
    if include_top is not True:
        bad.pop("classes", None)
    pooling = pick(draw, "pooling", [None, "token", "avg", "max"], ["mean", "cls"], kwargs, bad)
    if pooling == "token" and not use_class_token:
        bad["pooling"] = pooling  # the class token's pooling without a class token
    kwargs["approximate_gelu"] = draw(st.booleans())
    return Draw(kwargs, bad)


@settings(max_examples=15, **SETTINGS)
@given(drawn=vit_arguments())
def test_vision_transformer_builder_arguments(drawn, empty_cwd, record_property):
    tally = TALLIES["test_vision_transformer_builder_arguments"]
    check(keras_vitres.VisionTransformer, drawn, tally, accept=check_model_output)
    keras.backend.clear_session()
    tally.record(record_property)


# --- preset names ------------------------------------------------------------------------------------------------

PRESETS = keras_vitres.list_presets()
CHEAP = ["resnet20", "plain20"]  # built when drawn (~1 s each); the registry test pins every other count


@st.composite
def mutated_preset_name(draw):
    name = draw(st.sampled_from(PRESETS))
    edit = draw(st.sampled_from(["delete", "insert", "replace", "upper", "pad", "swap_digit"]))
    i = draw(st.integers(0, len(name) - 1))
    char = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-. O"))
    if edit == "delete":
        name = name[:i] + name[i + 1 :]
    elif edit == "insert":
        name = name[:i] + char + name[i:]
    elif edit == "replace":
        name = name[:i] + char + name[i + 1 :]
    elif edit == "upper":
        name = name.upper()
    elif edit == "pad":
        name = f" {name}\n"
    else:
        name = name.replace("0", "O").replace("1", "l")
    assume(name not in PRESETS)
    return name


@settings(max_examples=40, **SETTINGS)
@given(
    name=st.one_of(
        st.sampled_from(PRESETS),
        mutated_preset_name(),
        st.text(max_size=20),
        st.sampled_from([None, 123, 1.5, b"resnet20", ["resnet20"], ("resnet20",)]),
    )
)
def test_preset_names(name, empty_cwd, record_property):
    tally = TALLIES["test_preset_names"]
    if name in PRESETS:
        row = keras_vitres.get_preset(name)
        assert row["params"] > 0 and row["paper"]
        if name in CHEAP:
            assert keras_vitres.build_model(name).count_params() == row["params"]
            keras.backend.clear_session()
        tally.valid()
    else:
        with pytest.raises(ValueError) as caught:
            keras_vitres.build_model(name)
        assert f"received name={name!r}" in str(caught.value) and "list_presets()" in str(caught.value)
        tally.error()
    tally.record(record_property)


# --- input dtypes ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_models():
    return [
        keras_vitres.ResNet(8, stem="cifar", stage_filters=(8, 8, 16)),
        keras_vitres.VisionTransformer(
            patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=16, input_shape=(32, 32, 3), classes=10
        ),
    ]


DTYPES = ["float16", "bfloat16", "float32", "float64", "uint8", "int8", "int32", "int64", "bool"]


@settings(max_examples=25, **SETTINGS)
@given(
    dtype=st.sampled_from(DTYPES),
    batch=st.integers(1, 3),
    which=st.integers(0, 1),
    scale=st.sampled_from([0.0, 1.0, 255.0]),
)
def test_models_take_any_numeric_dtype(small_models, dtype, batch, which, scale, record_property):
    tally = TALLIES["test_models_take_any_numeric_dtype"]
    import ml_dtypes

    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = (np.random.default_rng(batch).uniform(0, 1, (batch, 32, 32, 3)) * scale).astype(np_dtype)
    output = keras.ops.convert_to_numpy(small_models[which](x, training=False))
    assert output.dtype == np.float32 and output.shape == (batch, 10) and np.all(np.isfinite(output))
    tally.valid()
    tally.record(record_property)


# --- schedules ---------------------------------------------------------------------------------------------------

RATES = [0.0, 0.1, 1, 3e-4]
BAD_RATES = [-0.1, -1, "0.1", None, True, float("nan"), float("inf")]


@st.composite
def schedule_arguments(draw):
    kind = draw(st.sampled_from(["step", "warmup", "cosine", "linear"]))
    kwargs, bad = {}, {}
    if kind == "step":
        pick(draw, "initial_learning_rate", RATES, BAD_RATES, kwargs, bad)
        pick(
            draw,
            "boundaries",
            [(32000, 48000), (10,), (), [5, 6]],
            [(48000, 32000), (5, 5), (-1,), (1.5,), 5, "10"],
            kwargs,
            bad,
        )
        pick(draw, "factor", [0.1, 0.5, 1.0], [-0.1, "x"], kwargs, bad)
        return kind, Draw(kwargs, bad)
    if kind == "warmup":
        pick(draw, "schedule", [0.1, schedules.StepDecay(0.1, (100,))], [-0.1, "x", None], kwargs, bad)
        pick(draw, "warmup_steps", [0, 10, 400], [-1, 1.5, "10", True], kwargs, bad)
        pick(draw, "warmup_learning_rate", [0.0, 0.01], [-0.01, "x"], kwargs, bad)
        pick(draw, "mode", ["linear", "constant"], ["cubic", None], kwargs, bad)
        adaptive = pick(draw, "adaptive", [False, True], [], kwargs, bad)
        if adaptive and draw(st.booleans()):
            pick(draw, "released_at", [0, 5], [-5, 2.5], kwargs, bad)
        return kind, Draw(kwargs, bad)
    warmup = pick(draw, "warmup_steps", [0, 10], [-1, 2.5], kwargs, bad)
    total = pick(draw, "total_steps", [5, 100, 1000], [0, 1.5e3, "100"], kwargs, bad)
    if "warmup_steps" not in bad and "total_steps" not in bad and total <= warmup:
        bad["total_steps"] = total  # must be longer than the warmup
    pick(draw, "peak_learning_rate", [0.1, 1e-3], [-1.0, float("nan")], kwargs, bad)
    pick(draw, "initial_learning_rate", [0.0, 1e-5], [-1.0, float("inf")], kwargs, bad)
    return kind, Draw(kwargs, bad)


SCHEDULE_BUILDERS = {
    "step": schedules.StepDecay,
    "warmup": schedules.Warmup,
    "cosine": schedules.warmup_cosine_decay,
    "linear": schedules.warmup_linear_decay,
}


def check_schedule(schedule):
    rates = [float(schedule(step)) for step in (0, 1, 9, 10, 99, 100, 10**6)]
    assert all(math.isfinite(r) and r >= 0 for r in rates), rates
    clone = type(schedule).from_config(schedule.get_config())
    assert [float(clone(s)) for s in (0, 9, 10, 10**6)] == [rates[0], rates[2], rates[3], rates[6]]


@settings(max_examples=40, **SETTINGS)
@given(drawn=schedule_arguments())
def test_schedule_arguments(drawn, empty_cwd, record_property):
    tally = TALLIES["test_schedule_arguments"]
    kind, arguments = drawn
    check(SCHEDULE_BUILDERS[kind], arguments, tally, accept=check_schedule)
    tally.record(record_property)


# --- the command line --------------------------------------------------------------------------------------------


def run_cli(argv):
    """`keras-vitres ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits on bad flags
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@st.composite
def presets_flags(draw):
    flags, bad = [], []
    if draw(st.booleans()):
        flags += ["--filter", draw(st.sampled_from(["resnet", "vit_", "zzz", "", "plain1", "ViT", "\u00e9"]))]
    for flag in ("--json", "--markdown"):
        if draw(st.booleans()):
            flags.append(flag)
    if chance(draw, 0.3):
        bad.append(draw(st.sampled_from([["--nonsense"], ["--json=1"], ["--filter"], ["--build=yes"], ["-x"]])))
    for extra in bad:
        flags += extra
    return flags, [token for extra in bad for token in extra]


@settings(max_examples=30, **SETTINGS)
@given(drawn=presets_flags())
def test_presets_command_flags(drawn, empty_cwd, record_property):
    tally = TALLIES["test_presets_command_flags"]
    flags, bad = drawn
    code, out, err = run_cli(["presets", *flags])
    if bad:
        assert code == 2, (flags, code, out[:200])
        assert any(token.split("=")[0] in err for token in bad), err
        tally.error()
    elif "--filter" in flags and not any(flags[flags.index("--filter") + 1] in n for n in keras_vitres.list_presets()):
        assert code == 2 and "--filter matches no preset" in err, (flags, code, err)  # close names, never an empty table
        tally.error()
    else:
        assert code == 0, (flags, err)
        if "--markdown" in flags:
            assert out.startswith("| preset |")
        elif "--json" in flags:
            json.loads(out)
        tally.valid()
    tally.record(record_property)


RECIPES = ["digits_resnet", "cifar_resnet", "vit_small_data"]


@st.composite
def train_flags(draw):
    """Flags of `keras-vitres train`, always with --print-config so that nothing is trained."""
    flags, bad = ["--print-config"], {}

    def flag(name, valid, invalid, p_invalid=1 / 10):
        if not draw(st.booleans()):
            return
        use_invalid = bool(invalid) and chance(draw, p_invalid)
        value = draw(st.sampled_from(invalid if use_invalid else valid))
        flags.extend([name, str(value)])
        if use_invalid:
            bad[name] = str(value)

    flag("--recipe", RECIPES, ["nope", "digits", "CIFAR_RESNET"])
    flag("--preset", ["resnet20", "resnet56", "vit_tiny_patch16_224", "plain20"], ["resnet2O", "vit_tiny"])
    flag("--dataset", ["digits", "cifar10", "cifar100"], ["nope", "cifar1O"])
    flag("--epochs", [1, 3], [0, -1, "abc", 1.5])
    flag("--steps", [10, 500], [0, "ten"])
    flag("--batch-size", [8, 128], [0, -3, "x"])
    flag("--lr", [0.1, 0.01, 0], [-0.1, "fast", "nan", "inf"])
    flag("--strategy", ["auto", "one", "mirrored"], ["gpu", "tpu"])
    flag("--mixed-precision", ["auto", "float32", "mixed_bfloat16"], ["fp8"])
    flag("--jit", ["auto", "on", "off"], ["yes"])
    flag("--seed", [0, 7], ["x", 1.5])
    flag(
        "--set",
        ["warmup_steps=10", "label_smoothing=0.1", "momentum=0.8"],
        ["bogus=1", "warmup_steps=-1", "label_smoothing=1.5", "novalue"],
    )
    return flags, bad


FLAG_FIELDS = {"--lr": "learning_rate", "--set": "FIELD", "--jit": "jit"}


def flag_names(flag):
    """How an error may name a flag: as the flag, or as the configuration field it sets."""
    field = flag.lstrip("-").replace("-", "_")
    return {flag, field, FLAG_FIELDS.get(flag, field)} - {"FIELD"} | (
        {"set", "recipe field"} if flag == "--set" else set()
    )


@settings(max_examples=30, **SETTINGS)
@given(drawn=train_flags())
def test_train_command_flags_are_parsed_and_checked(drawn, empty_cwd, record_property):
    tally = TALLIES["test_train_command_flags_are_parsed_and_checked"]
    flags, bad = drawn
    code, out, err = run_cli(["train", *flags])
    if bad:
        assert code == 2, (flags, code, out[:300])
        named = [
            (name, value)
            for name, value in bad.items()
            if value.split("=")[0] in err and any(n in err for n in flag_names(name))
        ]
        assert named, f"the error does not name any of {bad}: {err}"
        tally.error()
    else:
        assert code == 0, (flags, err)
        config = json.loads(out)
        if "--epochs" in flags:
            assert config["recipe"]["epochs"] == int(flags[flags.index("--epochs") + 1])
        tally.valid()
    tally.record(record_property)


# --- the serving signature, fuzzed -------------------------------------------------------------------------------


@settings(max_examples=40, **SETTINGS)
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"\xff\xd8\xff",
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
            b"\x89PNG\r\n\x1a\n",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
            b"GIF89a",
            b"BM",
        ]
    ),
    body=st.binary(max_size=600),
)
def test_serving_bytes_signature_fuzzed(served, prefix, body, record_property):
    tally = TALLIES["test_serving_bytes_signature_fuzzed"]
    try:
        result = served.serve_bytes(image_bytes=tf.constant([prefix + body]))
    except tf.errors.InvalidArgumentError as error:
        assert any(s in error.message for s in ("JPEG", "PNG", "jpeg", "png", "image", "Image")), error.message
        tally.error()
    else:  # random bytes that happen to decode must still give a valid answer
        assert np.allclose(result["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
        tally.valid()
    # the next valid request is served
    ok = served.serve(images=tf.zeros((1, 32, 32, 3)))
    assert ok["probabilities"].shape == (1, 10)
    tally.record(record_property)


# --- fixed gaps: inputs once accepted, or refused unclearly, each pinned -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Gap:
    entry: str
    call: callable
    argument: str
    value: object
    fix: str  # what was fixed, where
    hint: str = ""  # a further part of the message (e.g. the suggested name)


def _resnet(**kwargs):
    return keras_vitres.ResNet(**{"depth": 8, "stem": "cifar", "stage_filters": (8, 8, 16), **kwargs})


def _cli_train(*flags):
    code, out, err = run_cli(["train", "--print-config", *flags])
    if code == 2:
        raise ValueError(err)
    return code


FIXED_GAPS = [
    Gap("ResNet", lambda: _resnet(depth=None, stage_blocks=5), "stage_blocks", 5,
        "models/resnet.py: `stage_blocks` must be a list or tuple (was `tuple(5)`: 'int' object is not iterable)"),
    Gap("ResNet", lambda: _resnet(stage_filters=(0, 8, 16)), "stage_filters", (0, 8, 16),
        "models/resnet.py: `stage_filters` checked as positive ints (Keras reported `filters=0`)"),
    Gap("ResNet", lambda: _resnet(stage_filters=(8.5, 8, 16)), "stage_filters", (8.5, 8, 16),
        "models/resnet.py: the same check (Keras said 'filters must be evenly divisible by groups')"),
    Gap("ResNet", lambda: _resnet(version="v3"), "version", "v3",
        "models/resnet.py: `version` checked by ResNet itself (basic-block nets accepted any value)"),
    Gap("ResNet", lambda: _resnet(classifier_activation="nonsense"), "classifier_activation", "nonsense",
        "models/common.py check_head_args: Keras' 'Could not interpret activation function identifier' re-raised "
        "naming classifier_activation"),
    Gap("ResNet", lambda: _resnet(stem="imagenet", depth=18.0, stage_filters=(8, 8, 16, 16)), "depth", 18.0,
        "models/resnet.py depth_to_stages: an int for the ImageNet stem too (18.0 built a model named 'resnet18.0')"),
    Gap("VisionTransformer", lambda: tiny_vit(patch_size=3.5), "patch_size", 3.5,
        "layers/embedding.py _pair: type checked before `tuple(value)` ('float' object is not iterable)"),
    Gap("VisionTransformer", lambda: tiny_vit(hidden_dim=0), "hidden_dim", 0,
        "models/vit.py check_vit_args: `hidden_dim >= 1` (0 % num_heads == 0 passed; Keras reported `filters=0`)"),
    Gap("VisionTransformer", lambda: tiny_vit(num_layers=-1), "num_layers", -1,
        "models/vit.py check_vit_args: an int `num_layers >= 1` (a negative value built a model with no encoder)"),
    Gap("VisionTransformer", lambda: tiny_vit(num_layers=1.5), "num_layers", 1.5,
        "models/vit.py check_vit_args: the same check (was: 'float' object cannot be interpreted as an integer)"),
    Gap("VisionTransformer", lambda: tiny_vit(mlp_dim=0), "mlp_dim", 0,
        "models/vit.py check_vit_args: an int `mlp_dim >= 1` (Keras reported `units=0`)"),
    Gap("VisionTransformer", lambda: tiny_vit(representation_size=-3), "representation_size", -3,
        "models/vit.py check_vit_args: None or an int >= 1 (Keras reported `units=-3`)"),
    Gap("build_model", lambda: keras_vitres.build_model(["resnet20"]), "name", ["resnet20"],
        "presets.py get_preset: `name` must be a str (was: TypeError unhashable type: 'list')", "list_presets()"),
    Gap("StepDecay", lambda: schedules.StepDecay(float("nan")), "initial_learning_rate", float("nan"),
        "training/schedules.py _check_rate: finite rates only (NaN and inf passed `value < 0`)"),
    Gap("StepDecay", lambda: schedules.StepDecay(0.1, boundaries=5), "boundaries", 5,
        "training/schedules.py: `boundaries` must be a list or tuple (was: 'int' object is not iterable)"),
    Gap("warmup_cosine_decay", lambda: schedules.warmup_cosine_decay(-1.0, 100, 10), "peak_learning_rate", -1.0,
        "training/schedules.py: `peak_learning_rate` checked by warmup_cosine_decay and warmup_linear_decay "
        "(Keras' CosineDecay does not check it)"),
    Gap("warmup_cosine_decay", lambda: schedules.warmup_cosine_decay(0.1, 100, 10, initial_learning_rate=-1.0),
        "initial_learning_rate", -1.0,
        "training/schedules.py: `initial_learning_rate` checked under its own name (Warmup reported "
        "`warmup_learning_rate=-1.0`, a name the caller never used)"),
    Gap("keras-vitres train", lambda: _cli_train("--lr", "nan"), "learning_rate", "nan",
        "training/recipes.py Recipe: finite numbers only (NaN passed `value < 0`)"),
    Gap("keras-vitres train", lambda: _cli_train("--preset", "resnet2O"), "preset", "resnet2O",
        "training/recipes.py Recipe: the preset checked against the registry, with close names suggested, before "
        "any work", "'resnet20'"),
    Gap("keras-vitres train", lambda: _cli_train("--dataset", "nope"), "dataset", "nope",
        "training/recipes.py Recipe: the dataset checked against the known datasets before any work", "'cifar10'"),
    Gap("keras-vitres train", lambda: _cli_train("--dataset", "cifar1O"), "dataset", "cifar1O",
        "training/recipes.py Recipe: close dataset names suggested", "Did you mean 'cifar10'"),
]


@pytest.mark.parametrize("gap", [pytest.param(g, id=f"{g.entry}-{g.argument}={g.value!r}") for g in FIXED_GAPS])
def test_fixed_gap_raises_a_clear_error(gap, empty_cwd, record_property):
    with pytest.raises((ValueError, TypeError)) as caught:
        gap.call()
    message = str(caught.value)
    assert gap.argument in message and (repr(gap.value) in message or str(gap.value) in message), message
    assert gap.hint in message, message
    record_property("input", f"{gap.entry}: {gap.argument}={gap.value!r}")
    kind = "exit status 2" if gap.entry.startswith("keras-vitres") else type(caught.value).__name__
    record_property("outcome", f"{kind}: {message.strip()}")
    record_property("fix", gap.fix)
