"""pytest configuration of tests/: optional third-party dependencies as fixtures, child scripts left out.

A test that needs torch, OpenCV, ... asks for the fixture of that name and is skipped alone when it is missing
(and fails under ``ONNX_GEOM_NO_SKIPS=1``, see the repository's conftest.py); nothing skips a whole file.
First-party modules (onnx_geom.*) are imported plainly: they never skip.
"""

from __future__ import annotations

import pytest

collect_ignore = ["_study_child.py"]  # a child-process script: it reads sys.argv when imported


def _optional(module: str, install: str):
    @pytest.fixture(scope="session", name=module.replace(".", "_"))
    def fixture():
        return pytest.importorskip(module, reason=f"needs {module} ({install})")

    fixture.__doc__ = f"The module {module}; the test is skipped when it is not installed ({install})."
    return fixture


torch = _optional("torch", "the [torch] extra; `make install` pins it")
cv2 = _optional("cv2", "opencv-python, in the [dev] extra")
skimage_color = _optional("skimage.color", "scikit-image, in the [dev] extra")
imagecorruptions = _optional("imagecorruptions", "imagecorruptions-imaug, in the [dev] extra")
imagecorruptions_corruptions = _optional("imagecorruptions.corruptions", "imagecorruptions-imaug, in the [dev] extra")
skl2onnx = _optional("skl2onnx", "skl2onnx, in the [dev] extra")
pyarrow_parquet = _optional("pyarrow.parquet", "pyarrow, in the [dev] extra")
xarray = _optional("xarray", "xarray, in the [dev] extra")
onnxscript = _optional("onnxscript", "the [torch] extra (the dynamo exporter needs it)")


#: The reduced demo the report and notebook tests share: five zoo models (dense, two magnitude-pruned, random 95%,
#: the MLP), corruptions with an effect and one without (saturate leaves the greyscale digits unchanged), one the
#: dense model barely feels (gaussian noise: left out of relative mCE), three severities, 120 test images.
DEMO_MODELS = ("dense", "magnitude_80", "magnitude_95", "random_95", "mlp_sklearn")
DEMO_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "gaussian_blur", "fog", "contrast", "brightness", "saturate")
DEMO_SEVERITIES, DEMO_LIMIT = (1, 3, 5), 120


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory):
    """The reduced demo (:data:`DEMO_MODELS` ...), made once per session: a ``DemoResult`` (``study`` path,
    ``comparison``). About 10 s; tests that use it are marked slow."""
    from onnx_geom.demo.pipeline import run_demo

    return run_demo(tmp_path_factory.mktemp("demo-study"), models=list(DEMO_MODELS),
                    corruptions=list(DEMO_CORRUPTIONS), severities=DEMO_SEVERITIES, limit=DEMO_LIMIT)  # fmt: skip
