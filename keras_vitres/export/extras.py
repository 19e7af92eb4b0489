"""The optional libraries of the export formats, imported only when a format is used.

Each format names the setup.cfg extra that installs its libraries; a missing one raises an ImportError that says
which `pip install "keras-vitres[...]"` to run.
"""

import importlib

# Import name -> (the pip package, the extra that installs it).
EXTRA_PACKAGES = {
    "tf2onnx": ("tf2onnx", "onnx"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("nncf", "openvino"),
    "ai_edge_litert": ("ai-edge-litert", "litert"),
}


def import_extra(module, purpose):
    """Imports `module` (a key of `EXTRA_PACKAGES`, or one of its submodules) for `purpose` ("the ONNX export").

    Raises:
        ImportError: the module is not installed; the message names the extra that installs it.
    """
    top = module.split(".")[0]
    package, extra = EXTRA_PACKAGES[top]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != top:
            raise  # the package is there, but something it needs is not: its own message says what
        raise ImportError(
            f"{purpose} needs {package!r}, which is not installed; install it with "
            f"`pip install \"keras-vitres[{extra}]\"`."
        ) from None
