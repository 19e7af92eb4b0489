"""timm's `pretrained_cfg` for a model, read from timm's own source files without importing timm (which needs
PyTorch): the `default_cfgs` table of `timm/models/<family>.py` and the `_cfg` helpers it calls, evaluated with
`ast`. The source is `$KERAS_VITRES_TIMM_SOURCE` (the `timm` folder of `pip install --no-deps --target DIR timm`),
else an installed timm; None where neither exists."""

import ast
import importlib.util
import os
from pathlib import Path


def timm_folder():
    if os.environ.get("KERAS_VITRES_TIMM_SOURCE"):
        return Path(os.environ["KERAS_VITRES_TIMM_SOURCE"])
    spec = importlib.util.find_spec("timm")
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _constants(folder):
    """Module-level names of timm/data/constants.py (IMAGENET_DEFAULT_MEAN, ...) with literal values."""
    names = {}
    for node in ast.parse((folder / "data" / "constants.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return names


class _Module:
    """The cfg helpers (`def _cfg(url='', **kwargs): return {...}`) and `default_cfgs` of one timm model file."""

    def __init__(self, path, constants):
        self.tree = ast.parse(path.read_text())
        self.functions = {node.name: node for node in self.tree.body if isinstance(node, ast.FunctionDef)}
        self.constants = constants

    def value(self, node, scope):
        if isinstance(node, ast.Name):
            return scope.get(node.id, self.constants.get(node.id))
        if isinstance(node, ast.Dict):
            return self.mapping(node, scope)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kwargs = {}
            for keyword in node.keywords:  # `**dict({...}, **kwargs)`: merge; `name=value`: set
                kwargs.update(self.value(keyword.value, scope) if keyword.arg is None else
                              {keyword.arg: self.value(keyword.value, scope)})  # fmt: skip
            if node.func.id == "dict":
                return {**(self.value(node.args[0], scope) if node.args else {}), **kwargs}
            return self.call(node.func.id, kwargs)
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None

    def mapping(self, node, scope):
        result = {}
        for key, value in zip(node.keys, node.values):
            result.update(self.value(value, scope) if key is None else {ast.literal_eval(key): self.value(value, scope)})
        return result

    def call(self, name, kwargs):
        """The dict a cfg helper returns for these keyword arguments (its defaults, then `**kwargs`)."""
        function = self.functions[name]
        scope = {arg.arg: ast.literal_eval(default) for arg, default in
                 zip(function.args.args[-len(function.args.defaults):], function.args.defaults)} if function.args.defaults else {}  # fmt: skip
        scope.update({k: v for k, v in kwargs.items() if k in scope})
        if function.args.kwarg:
            scope[function.args.kwarg.arg] = {k: v for k, v in kwargs.items() if k not in {a.arg for a in function.args.args}}
        (returned,) = [node.value for node in ast.walk(function) if isinstance(node, ast.Return)]
        return self.value(returned, scope)

    def default_cfgs(self):
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "default_cfgs":
                table = node.value.args[0] if isinstance(node.value, ast.Call) else node.value
                return {ast.literal_eval(k): v for k, v in zip(table.keys, table.values)}
        return {}


def pretrained_cfg(model, family, folder=None):
    """timm's pretrained_cfg of `model` ("resnet18.a1_in1k") in `timm/models/<family>.py`, as a dict."""
    folder = folder or timm_folder()
    module = _Module(folder / "models" / f"{family}.py", _constants(folder))
    return module.value(module.default_cfgs()[model], {})
