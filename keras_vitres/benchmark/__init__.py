"""Benchmarks of our models against the peers a user would otherwise pick (keras.applications, keras-hub, timm).

`run_benchmark` measures training and inference throughput, step time, peak memory and build time, each
candidate in its own process; `report` turns the results into the table of docs/benchmarks.md.
"""

from keras_vitres.benchmark.candidates import DEFAULT_MODELS, MODELS, QUICK_MODELS, Candidate, ModelSpec
from keras_vitres.benchmark.report import format_table, markdown_section, write_docs_section
from keras_vitres.benchmark.runner import Result, run_benchmark

__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "QUICK_MODELS",
    "Candidate",
    "ModelSpec",
    "Result",
    "format_table",
    "markdown_section",
    "run_benchmark",
    "write_docs_section",
]
