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
