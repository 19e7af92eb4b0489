"""The package's floors: every module imports only from its own floor or the floors below it (docs/architecture.md).

Imports are read with `ast` from every file of keras_vitres/, lazy ones inside functions included, and so are
module names written as strings for `importlib.import_module` (the package root's lazy names).
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_vitres"

# Lowest first. A module may import from its own floor and any floor below; the root re-exports everything.
FLOORS = [
    {"version"},
    {"layers", "data"},
    {"weights"},
    {"models", "export"},
    {"presets"},
    {"training"},
    {"analysis", "benchmark", "serialization"},
    {"cli"},
    {"__init__"},
]
FLOOR = {part: level for level, parts in enumerate(FLOORS) for part in parts}
MODULE_NAME = re.compile(r"keras_vitres(\.\w+)+")


def part_of(module):
    """The top-level part of keras_vitres that `module` ("keras_vitres.models.vit") belongs to."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imported_modules(tree):
    """(line, module) for every keras_vitres module the file imports or names as a whole string."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "keras_vitres":  # `from keras_vitres import layers` names a subpackage or a root name
                yield from ((node.lineno, f"keras_vitres.{alias.name}" if alias.name in FLOOR else "keras_vitres")
                            for alias in node.names)
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
            if part_of(node.value) in FLOOR:  # not a file name such as "keras_vitres.json"
                yield node.lineno, node.value


def upward_imports(path, package=PACKAGE):
    """One line for each import in `path` (a file of `package`) from a floor above its own."""
    own = part_of(".".join(("keras_vitres", *path.relative_to(package).with_suffix("").parts)))
    found = []
    for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
        if module.split(".")[0] != "keras_vitres":
            continue
        target = part_of(module)
        if FLOOR[target] > FLOOR[own]:
            found.append(f"{path.relative_to(package.parent)}:{line} ({own}) imports {module} ({target})")
    return found


def test_every_part_of_the_package_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts == set(FLOOR)


def test_no_module_imports_from_a_higher_floor():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in upward_imports(path)]
    assert not found, "imports from a higher floor:\n" + "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from keras_vitres.presets import build_model", "imports keras_vitres.presets (presets)"),
    ("import keras_vitres", "imports keras_vitres (__init__)"),
    ("def f():\n    from keras_vitres import training", "imports keras_vitres.training (training)"),
    ("MODULES = {'a': 'keras_vitres.cli.main'}", "imports keras_vitres.cli.main (cli)"),
])  # fmt: skip
def test_the_check_finds_an_upward_import(tmp_path, source, expected):
    package = tmp_path / "keras_vitres"
    (package / "models").mkdir(parents=True)
    (package / "models" / "bad.py").write_text(source)
    [line] = upward_imports(package / "models" / "bad.py", package)
    assert line.endswith(expected) and line.startswith("keras_vitres/models/bad.py:")
