"""pytest configuration for the whole repository (tests/ and the doctests of onnx_geom/, cli/, viewers/).

Two rules live here because they must reach every test, doctests included:

* Documentation-only doctests are left out of collection explicitly (:data:`DOCUMENTATION_ONLY`), not skipped.
* ``ONNX_GEOM_NO_SKIPS=1`` (set by ``make ci``) turns every skip into a failure, so a missing test dependency
  or a broken environment cannot pass CI as "skipped". Tests marked ``gpu`` (whose outcome depends on a GPU
  being present or absent) and expected failures (``xfail``) are exempt.
"""

from __future__ import annotations

import doctest
import os

import pytest

#: Doctests (pytest node ids) whose every example is ``# doctest: +SKIP``: they show a call on files that do
#: not exist here (a model, a study, a data folder), so they document and cannot run. They are not collected;
#: a listed docstring that gains a runnable example is collected again (see ``pytest_collection_modifyitems``).
DOCUMENTATION_ONLY = frozenset(
    {
        "onnx_geom/comparison.py::onnx_geom.comparison",
        "onnx_geom/demo/build_zoo.py::onnx_geom.demo.build_zoo",
        "onnx_geom/frames.py::onnx_geom.frames",
        "onnx_geom/metrics.py::onnx_geom.metrics",
        "onnx_geom/probe/_check.py::onnx_geom.probe._check",
        "onnx_geom/probe/_graph.py::onnx_geom.probe._graph",
        "onnx_geom/probe/_heads.py::onnx_geom.probe._heads",
        "onnx_geom/probe/_load.py::onnx_geom.probe._load",
        "onnx_geom/probe/_surgery.py::onnx_geom.probe._surgery",
        "onnx_geom/runner.py::onnx_geom.runner",
        "onnx_geom/sweep.py::onnx_geom.sweep",
        "viewers/headless.py::viewers.headless",
        "viewers/layout.py::viewers.layout",
    }
)

NO_SKIPS_VARIABLE = "ONNX_GEOM_NO_SKIPS"


def _no_skips() -> bool:
    return os.environ.get(NO_SKIPS_VARIABLE, "") not in ("", "0")


def _documentation_only(item: pytest.Item) -> bool:
    examples = getattr(getattr(item, "dtest", None), "examples", None)
    return (
        item.nodeid in DOCUMENTATION_ONLY
        and bool(examples)
        and all(example.options.get(doctest.SKIP) for example in examples)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    left_out = [item for item in items if _documentation_only(item)]
    if left_out:
        items[:] = [item for item in items if item not in left_out]
        config.hook.pytest_deselected(items=left_out)


def _as_failure(report, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{what} was skipped ({reason}), but {NO_SKIPS_VARIABLE}=1 (CI) expects it to run here: install what it "
        f"needs (make ci installs every extra) or mark it `gpu` if it can only run on some machines."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _no_skips() and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        _as_failure(report, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if _no_skips() and report.skipped:  # a module-level skip: every test in it would vanish
        _as_failure(report, f"the whole of {collector.nodeid}")
    return report
