"""The viewer on a study with clean data only (`onnx-geom run ... -c none`, then `metrics`): every panel draws, the
table is one clean column."""

import numpy as np
import pytest
from _study_files import make_cli_study
from _viewer_checks import table_cells
from PIL import Image
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.viewers import ViewerData, render

pytestmark = pytest.mark.gui
RUNNER = CliRunner()
PANELS = ("table", "similarity", "samples", "local", "global", "attribution")


@pytest.fixture(scope="module")
def clean_only(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    args = make_cli_study(root, RUNNER)  # (clean + fog; only its probes and data are used here)
    args[args.index("-c") + 1] = "none"
    study = root / "clean-only"
    for command in ([*args, "-o", str(study)], ["metrics", str(study)]):
        result = RUNNER.invoke(app, command)
        assert result.exit_code == 0, result.output
    return study


def test_the_data_has_no_corruption_column(clean_only):
    data = ViewerData.from_study(clean_only)
    assert data.corruptions == [] and data.severities == [] and data.conditions == [("clean", 0)]
    assert data.accuracy.shape == (2, 0, 0) and np.isfinite(data.clean_accuracy).all()


@pytest.mark.parametrize("panel", PANELS)
def test_every_panel_draws(clean_only, panel):
    img = render(clean_only, panel=panel, size=(480, 320))
    assert img.shape == (320, 480, 4)
    assert (img[..., :3] < 200).any(axis=-1).mean() > 0.002, panel  # not blank
    if panel == "table":  # one cell per model: a table of one clean column
        assert len(table_cells(img, 200)[1]) == 2


@pytest.mark.slow
def test_the_whole_window_through_the_cli(clean_only, tmp_path):
    out = tmp_path / "all.png"
    result = RUNNER.invoke(app, ["view", str(clean_only), "--screenshot", str(out), "--size", "960x600"])
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out))
    for r in range(2):  # 2 x 3 panels, each drew something (the samples panel: its hint)
        for c in range(3):
            cell = img[r * 300 + 30 : (r + 1) * 300 - 10, c * 320 + 10 : (c + 1) * 320 - 10, :3]
            assert (cell < 200).any(axis=-1).mean() > 0.001, (r, c)
