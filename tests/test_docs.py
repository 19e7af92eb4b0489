"""Every code block of README.md and docs/ runs, or says why it cannot (the docs convention).

- ```python blocks run in order, one shared namespace per file, in a temporary working directory; a block written
  as an interactive session (lines starting with `>>> `) is checked as a doctest, outputs included.
- ```console blocks run each line starting with `$ keras-vitres` as a command (other lines are output, or
  commands the tests do not run); the command must exit with status 0.
- Any block whose fence line is directly preceded by `<!-- illustrative: <reason> -->` is not run; every other
  block (bash, text, yaml, a bare fence, ...) must carry that line, or the test fails naming file and line.

One test per file, so a failure names the file. Files whose blocks train networks are marked slow.
"""

import dataclasses
import doctest
import os
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ("python", "console")
ILLUSTRATIVE = re.compile(r"^\s*<!--\s*illustrative:\s*(?P<reason>\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
COMMAND_TIMEOUT_S = 900

# Files whose executed blocks train, benchmark or export networks (10 s and more on 2 cores), with the reason.
SLOW_DOCS = {
    "docs/training.md": "its examples train networks",
    "docs/analyses.md": "its examples train small networks for the analyses",
    "docs/benchmarks.md": "its example measures a network in benchmark worker processes",
    "docs/serving.md": "its examples export two SavedModels, one through the CLI in a subprocess",
}


@dataclasses.dataclass
class Block:
    """A fenced code block: its language (first word of the info string), code, and where it starts (1-based)."""

    language: str
    code: str
    line: int
    illustrative: str = None  # the reason, when the fence is directly preceded by the illustrative line


def parse_blocks(text):
    """Returns the fenced code blocks of a Markdown text, in order (fences may be indented, e.g. in lists)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"].expandtabs())
        language = match["info"].split()[0].lower().strip("{}.") if match["info"].split() else ""
        previous = ILLUSTRATIVE.match(lines[i - 1]) if i > 0 else None
        body, j = [], i + 1
        while j < len(lines):
            closing = re.match(r"^[ \t]*(`{3,}|~{3,})[ \t]*$", lines[j])
            if closing and closing[1][0] == fence[0] and len(closing[1]) >= len(fence):
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
            j += 1
        blocks.append(Block(language, "\n".join(body) + "\n", i + 1, previous["reason"] if previous else None))
        i = j + 1
    return blocks


def console_commands(code):
    """The `keras-vitres` command lines of a console block (after `$ `), continuation lines joined."""
    commands, pending = [], None
    for raw in code.splitlines():
        line = raw.rstrip()
        if pending is not None:
            pending += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                commands.append(pending)
                pending = None
            continue
        if line.lstrip().startswith("$ keras-vitres"):
            command = line.lstrip()[2:]
            if command.endswith("\\"):
                pending = command.rstrip("\\").strip()
            else:
                commands.append(command)
    if pending is not None:
        commands.append(pending)
    return commands


def missing_markers(blocks):
    """Blocks that would not be run and carry no illustrative line."""
    return [b for b in blocks if b.illustrative is None and b.language not in EXECUTED]


def run_python(block, namespace, where):
    if re.search(r"^\s*>>> ", block.code, flags=re.MULTILINE):
        parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        test = parser.get_doctest(block.code, namespace, where, where, 0)
        output = []
        result = runner.run(test, out=output.append, clear_globs=False)
        if result.failed:
            pytest.fail(f"{where}: doctest block failed:\n{''.join(output)}", pytrace=False)
        return
    try:
        exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - running the docs is the point
    except Exception:
        pytest.fail(f"{where}: python block raised:\n{traceback.format_exc(limit=-6)}", pytrace=False)


def run_console(block, where, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for command in console_commands(block.code):
        argv = shlex.split(command)
        process = subprocess.run(
            [sys.executable, "-m", "keras_vitres.cli.main", *argv[1:]],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
        )
        if process.returncode != 0:
            pytest.fail(
                f"{where}: `{command}` exited with status {process.returncode}\n"
                f"stdout:\n{process.stdout[-3000:]}\nstderr:\n{process.stderr[-3000:]}",
                pytrace=False,
            )


def doc_files():
    files = [ROOT / "README.md"] if (ROOT / "README.md").exists() else []
    files += sorted((ROOT / "docs").rglob("*.md"))
    params = []
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        marks = [pytest.mark.slow] if name in SLOW_DOCS else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", doc_files())
def test_doc_code_blocks(name, tmp_path, monkeypatch):
    blocks = parse_blocks((ROOT / name).read_text(encoding="utf-8"))
    unmarked = missing_markers(blocks)
    if unmarked:
        lines = ", ".join(f"{name}:{b.line} ({b.language or 'no language'})" for b in unmarked)
        pytest.fail(
            f"code blocks that are neither python nor console need `<!-- illustrative: <reason> -->` directly "
            f"above the fence: {lines}",
            pytrace=False,
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    for block in blocks:
        if block.illustrative is not None:
            continue
        where = f"{name}:{block.line}"
        if block.language == "python":
            run_python(block, namespace, where)
        else:
            run_console(block, where, tmp_path)


def nav_pages():
    """The Markdown pages of mkdocs.yml's nav, as paths from the repository root."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    nav = nav[: re.search(r"^\S", nav, flags=re.MULTILINE).start()]  # up to the next top-level key
    return [f"docs/{page}" for page in re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav, flags=re.MULTILINE)]


def test_every_nav_page_and_the_readme_have_their_blocks_run():
    covered = {param.values[0] for param in doc_files()}
    pages = nav_pages()
    assert len(pages) >= 10 and "docs/analyses.md" in pages and "docs/api/analysis.md" in pages, pages
    assert not set(pages + ["README.md"]) - covered, set(pages + ["README.md"]) - covered


# Docstring examples: `Examples:` sections indented under the heading (Google style), so that mkdocstrings
# renders them as code, and every one of them run as a doctest.

PACKAGE = ROOT / "keras_vitres"
EXAMPLE_HEADING = re.compile(r"^(?P<indent>[ \t]*)(?P<heading>Examples?|Usage|Example usage)\s*:\s*$")


def docstrings(path):
    """(line, docstring) of the module, class and function docstrings of a Python file."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield (node.body[0].lineno, doc)


def example_section_problems(doc):
    """What is wrong with a docstring's example sections: the heading must be `Examples:` and its lines indented
    under it, or mkdocstrings' Google parser renders the `>>>` lines as nested block quotes."""
    problems, lines = [], doc.splitlines()
    for i, line in enumerate(lines):
        match = EXAMPLE_HEADING.match(line)
        if not match:
            continue
        if match["heading"] != "Examples":
            problems.append(f"heading {match['heading']!r} (use 'Examples:')")
        body = [text for text in lines[i + 1:] if text.strip()]
        if body and len(body[0]) - len(body[0].lstrip()) <= len(match["indent"]):
            problems.append("section body not indented under its heading")
    if any(line.lstrip().startswith(">>> ") for line in lines) and not any(
        EXAMPLE_HEADING.match(line) for line in lines
    ):
        problems.append("doctest lines outside an 'Examples:' section")
    return problems


def test_example_section_checker():
    good = "Summary.\n\nExamples:\n    >>> 1 + 1\n    2\n"
    assert example_section_problems(good) == []
    assert example_section_problems("Summary.\n\nExample:\n\n>>> 1 + 1\n2\n") == [
        "heading 'Example' (use 'Examples:')",
        "section body not indented under its heading",
    ]
    assert example_section_problems("Summary.\n\n>>> 1\n1\n") == ["doctest lines outside an 'Examples:' section"]


def test_docstring_examples_are_google_style_sections():
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {problem}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, doc in docstrings(path)
        for problem in example_section_problems(doc)
    ]
    assert not problems, "\n".join(problems)


def modules_with_examples():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(">>> " in doc for _, doc in docstrings(path)):
            names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def test_docstring_examples_are_found():
    assert {"keras_vitres.models.resnet", "keras_vitres.analysis.vit"} <= set(modules_with_examples())


@pytest.mark.parametrize("module_name", modules_with_examples())
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{module_name}: {result}"


# The checker itself: it must find what it claims to find.

SAMPLE = """# Title

```python
x = 1
```

<!-- illustrative: needs a GPU -->
```python
raise RuntimeError
```

1. A list item:

    ```console
    $ keras-vitres presets --filter resnet20 \\
        --json
    output line
    $ pip install something
    ```

````markdown
```python
inner
```
````

```bash
echo unmarked
```

<!-- illustrative: a config file -->

```yaml
a: 1
```
"""


def test_parse_blocks_finds_languages_lines_and_markers():
    blocks = parse_blocks(SAMPLE)
    assert [(b.language, b.line, b.illustrative) for b in blocks] == [
        ("python", 3, None),
        ("python", 8, "needs a GPU"),
        ("console", 14, None),
        ("markdown", 21, None),
        ("bash", 27, None),
        ("yaml", 33, None),  # a blank line between marker and fence does not count
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[3].code == "```python\ninner\n```\n"  # a longer fence holds shorter ones
    assert console_commands(blocks[2].code) == ["keras-vitres presets --filter resnet20 --json"]
    assert [b.line for b in missing_markers(blocks)] == [21, 27, 33]


def test_python_blocks_share_a_namespace_and_doctests_check_output():
    namespace = {}
    run_python(Block("python", "y = 2\n", 1), namespace, "x.md:1")
    run_python(Block("python", ">>> y + 1\n3\n", 5), namespace, "x.md:5")
    with pytest.raises(pytest.fail.Exception, match="x.md:9"):
        run_python(Block("python", ">>> y + 1\n4\n", 9), namespace, "x.md:9")
    with pytest.raises(pytest.fail.Exception, match="x.md:12: python block raised"):
        run_python(Block("python", "undefined_name\n", 12), namespace, "x.md:12")


def test_console_commands_must_succeed(tmp_path):
    run_console(Block("console", "$ keras-vitres presets --filter resnet20\nout\n", 1), "x.md:1", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="x.md:4: `keras-vitres no-such-command` exited"):
        run_console(Block("console", "$ keras-vitres no-such-command\n", 4), "x.md:4", tmp_path)


def test_mkdocs_builds_strict(tmp_path):
    """`mkdocs build --strict` (about 5 s): every nav page exists, every link resolves, every docstring parses."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    process = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").exists()
