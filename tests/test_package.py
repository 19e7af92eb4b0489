"""The package root is light: `import keras_vitres` and the CLI's help, version and presets import no framework
(checked by `sys.modules` in a fresh process), every public name resolves on first use, `.keras` files load after
`import keras_vitres.serialization` (and through the package's loader without it), and preset rows declare named
checkpoints that `build_model` resolves."""

import hashlib
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.presets import PRESETS
from keras_vitres.presets.build import build_model
from keras_vitres.weights.download import HASHES, SCHEMES

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def run_fresh(code, **env):
    """Runs `code` in a fresh Python process from the repository root; returns its stdout."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), **env}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=environment, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def frameworks_after(code):
    """The frameworks in `sys.modules` after `code` ran in a fresh process (SystemExit from argparse allowed)."""
    out = run_fresh(f"""
        import contextlib, io, json, sys
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            exec({code!r})
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({list(FRAMEWORKS)!r}))))
    """)
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import keras_vitres",
    "import keras_vitres; dir(keras_vitres); keras_vitres.__all__; keras_vitres.list_presets(); keras_vitres.ViTB16",
    "from keras_vitres.cli.main import main; main(['--help'])",
    "from keras_vitres.cli.main import main; main(['--version'])",
    "from keras_vitres.cli.main import main; main(['presets'])",
    "from keras_vitres.cli.main import main; main(['presets', '--json', '--filter', 'vit'])",
    "from keras_vitres.cli.main import main; main(['train', '--help'])",
])  # fmt: skip
def test_the_root_and_the_light_commands_import_no_framework(code):
    assert frameworks_after(code) == []


def test_a_framework_is_imported_by_the_names_that_need_it():
    """The check above can fail: the same probe sees Keras once a builder is used."""
    assert "keras" in frameworks_after("import keras_vitres; keras_vitres.ResNet")


def test_every_public_name_resolves_and_is_listed():
    for name in keras_vitres.__all__:
        assert getattr(keras_vitres, name) is not None, name
    assert set(keras_vitres.__all__) <= set(dir(keras_vitres))
    assert keras_vitres.ResNet20.__name__ == "ResNet20" and keras_vitres.layers.ClassToken.__name__ == "ClassToken"
    assert keras_vitres.build_model is build_model
    with pytest.raises(AttributeError, match="has no attribute 'ResNet21'"):
        keras_vitres.ResNet21  # noqa: B018


def registered_classes():
    """{registered name: class} of every class the package registers with Keras, every module imported (aliases of
    former names included)."""
    for module in pkgutil.walk_packages(keras_vitres.__path__, "keras_vitres."):
        importlib.import_module(module.name)
    return {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("keras_vitres>")}


def test_a_saved_model_loads_after_the_documented_import_and_through_the_package_without_it(tmp_path):
    """In a fresh process: without `import keras_vitres.serialization`, Keras names the missing class (the package's
    loading function needs nothing); after it, `keras.saving.load_model` reads the model with its optimizer's
    schedule, and every class the package registers is registered."""
    from keras_vitres.training.schedules import StepDecay, Warmup

    model = keras_vitres.ResNet(8, input_shape=(16, 16, 3), classes=3)
    model.compile(optimizer=keras.optimizers.SGD(Warmup(StepDecay(0.1, boundaries=(10,)), warmup_steps=2)),
                  loss="sparse_categorical_crossentropy")
    path = tmp_path / "resnet8.keras"
    model.save(path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    expected = keras.ops.convert_to_numpy(model(images))
    out = run_fresh(f"""
        import json, sys
        import keras_vitres
        assert "keras" not in sys.modules
        import keras, numpy as np

        def registered():
            return sorted(k for k in keras.saving.get_custom_objects() if k.startswith("keras_vitres>"))

        images = np.load({str(tmp_path / "images.npy")!r})
        try:
            keras.saving.load_model({str(path)!r})
        except TypeError as error:
            print(json.dumps(dict(error=str(error))))
        from keras_vitres.weights.loaders import load_keras_model
        model = load_keras_model({str(path)!r})
        np.save({str(tmp_path / "package.npy")!r}, keras.ops.convert_to_numpy(model(images)))
        print(json.dumps(dict(after_package=registered())))
        import keras_vitres.serialization
        model = keras.saving.load_model({str(path)!r})
        np.save({str(tmp_path / "keras.npy")!r}, keras.ops.convert_to_numpy(model(images)))
        schedule = model.optimizer.get_config()["learning_rate"]["registered_name"]
        print(json.dumps(dict(schedule=schedule, after_import=registered())))
    """)  # fmt: skip
    found = {key: value for line in out.splitlines() if line.startswith("{") for key, value in json.loads(line).items()}
    # What a user sees without the import: Keras' message, naming a class that is not one of Keras' own.
    assert "Could not locate class 'FusedBatchNormalization'" in found["error"], found["error"][:2000]
    assert "'registered_name': 'keras_vitres>FusedBatchNormalization'" in found["error"]
    for name in ("package", "keras"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, atol=1e-5, rtol=0)
    assert found["schedule"] == "keras_vitres>Warmup"
    registered = registered_classes()
    assert found["after_import"] == sorted(registered)
    # The package's loader reads no compile state: it registers every layer a model of the package can hold (the
    # layers and ExactAreaCutMix); only the learning-rate schedules, which a compiled optimizer names, wait.
    model_layers = {name for name, cls in registered.items() if cls.__module__.startswith("keras_vitres.layers.")}
    assert len(model_layers) >= 15 and "keras_vitres>ExactAreaCutMix" in found["after_package"]
    assert {registered[name].__module__ for name in set(registered) - set(found["after_package"])} == {
        "keras_vitres.training.schedules"}


def test_the_builders_call_the_weight_loaders_without_a_registry():
    import keras_vitres.models.common as common

    assert not hasattr(common, "WEIGHT_LOADERS")  # the loaders are called, not registered
    assert common.load_weights is keras_vitres.weights.load_weights
    assert set(keras_vitres.weights.LOADERS) >= {".npz", ".safetensors", ".h5", ".pth"}


def test_every_preset_declares_its_named_checkpoints():
    for name, row in PRESETS.items():
        assert isinstance(row["weights"], dict), name
        for checkpoint_name, checkpoint in row["weights"].items():
            where = (name, checkpoint_name)
            source = checkpoint["source"]
            if source == "url":
                assert checkpoint["url"].split(":")[0] in SCHEMES and HASHES["sha256"].match(checkpoint["sha256"]), where
            elif source == "keras.applications":
                assert checkpoint["base_url"].startswith("https://"), where
                assert all(re.fullmatch(r"[0-9a-f]{32}", f["md5"]) for f in checkpoint["files"].values()), where
            elif source == "keras_hub":
                assert checkpoint["handle"].startswith("kaggle://keras/"), where
            else:
                assert source == "hf_hub" and checkpoint["repo_id"] and checkpoint["filename"], where


@pytest.fixture
def declared_checkpoint(tmp_path, monkeypatch):
    """resnet20 declaring a checkpoint "test" (a file URL of a `.weights.h5` written here) that needs 3 classes."""
    source = build_model("resnet20", classes=3)
    source.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("float32")
                        for i, w in enumerate(source.get_weights())])  # fmt: skip
    path = tmp_path / "published" / "resnet20_test.weights.h5"
    path.parent.mkdir()
    source.save_weights(path)
    checkpoint = dict(source="url", url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                      fname="resnet20_test.weights.h5", config=dict(classes=3), preprocessing=dict())  # fmt: skip
    monkeypatch.setitem(PRESETS, "resnet20", {**PRESETS["resnet20"], "weights": {"test": checkpoint}})
    monkeypatch.setenv("KERAS_VITRES_CACHE", str(tmp_path / "cache"))
    return source


def test_a_declared_checkpoint_resolves_by_name_through_the_preset(declared_checkpoint, tmp_path):
    for model in (build_model("resnet20", weights="test"), keras_vitres.ResNet20(weights="test")):
        assert model.output_shape == (None, 3)  # the checkpoint's own configuration
        for mine, theirs in zip(model.get_weights(), declared_checkpoint.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert (tmp_path / "cache" / "resnet20_test.weights.h5").is_file()  # verified and cached
    with pytest.raises(ValueError, match=r"Unknown weights for preset 'resnet20': received weights='imagenet'\. "
                                         r"Its named weights are \['test'\]"):
        build_model("resnet20", weights="imagenet")  # not declared, and no such file
    with pytest.raises(FileNotFoundError, match=r"`weights` file not found: weights='imagenet.h5'"):
        build_model("resnet20", weights="imagenet.h5")  # a path: for the builder
