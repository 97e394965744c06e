"""Evaluation: mixture list -> per-clip CSV -> summary table (Table 2 of the DCASE report).

>>> from querysep.evaluation import evaluate
>>> summary = evaluate("val.csv", "audio/", ["test-tiny"], "eval-out")  # doctest: +SKIP
>>> print(summary.table())  # doctest: +SKIP
"""

from __future__ import annotations

from .ats import ATSHook
from .report import METRIC_COLUMNS, format_table
from .runner import MetricHook, Summary, evaluate, resolve_systems
from .systems import (
    MixtureSystem,
    ModelSystem,
    OracleIRM,
    ReferenceSystem,
    System,
    SystemFactory,
    SystemOptions,
    make_system,
    register_system,
    registered_systems,
)

__all__ = [
    "METRIC_COLUMNS",
    "ATSHook",
    "MetricHook",
    "MixtureSystem",
    "ModelSystem",
    "OracleIRM",
    "ReferenceSystem",
    "Summary",
    "System",
    "SystemFactory",
    "SystemOptions",
    "evaluate",
    "format_table",
    "make_system",
    "register_system",
    "registered_systems",
    "resolve_systems",
]
