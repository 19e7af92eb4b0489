"""`keras-vitres presets`: natural order, weight names, and a --filter that matches nothing."""

from keras_vitres.cli.main import main


def test_presets_sorts_naturally_and_shows_weight_names(capsys):
    assert main(["presets", "--filter", "plain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["preset", "builder", "parameters", "weights"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["plain18", "plain20", "plain32", "plain34", "plain44", "plain56", "plain110"]
    assert main(["presets", "--filter", "resnet50"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "imagenet, keras_hub_imagenet" in rows["resnet50"] and "imagenet" in rows["resnet50_keras"]
    assert main(["presets", "--filter", "vit_base_patch16"]) == 0
    assert "imagenet21k, imagenet, imagenet_384" in capsys.readouterr().out


def test_a_filter_that_matches_nothing_is_an_error_with_close_names(capsys):
    assert main(["presets", "--filter", "resnet5O"]) == 2
    err = capsys.readouterr().err
    assert "--filter matches no preset: received --filter='resnet5O'" in err and "resnet50" in err


def test_docs_weights_table_lists_every_preset_and_weight_name():
    """docs/weights.md's table has a row for every preset and every weight name it declares, and no other."""
    import pathlib
    import re

    from keras_vitres.presets import PRESETS

    text = (pathlib.Path(__file__).parents[2] / "docs" / "weights.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \| (?:`([\w+]+)`|-) \|", text, flags=re.M))
    expected = {(name, weight) for name, row in PRESETS.items() for weight in row["weights"]}
    expected |= {(name, "") for name, row in PRESETS.items() if not row["weights"]}
    assert rows == expected
