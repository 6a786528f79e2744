"""`onnx-geom demo` headless on a reduced subset: the study is complete, the tables, screenshots and report exist."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.demo import load_test_split, zoo_models
from onnx_geom.store import Study, Unit

pytestmark = pytest.mark.gui  # renders through EGL

MODELS, CORRUPTIONS, SEVERITIES, LIMIT = ["dense", "magnitude_95"], ["fog", "contrast"], [1, 5], 48


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = [
        "demo",
        "-o",
        str(out),
        "--headless",
        "--models",
        ",".join(MODELS),
        "--corruptions",
        ",".join(CORRUPTIONS),
        "--severities",
        ",".join(map(str, SEVERITIES)),
        "--limit",
        str(LIMIT),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.slow  # the demo_dir fixture runs the demo: about 15 s
def test_the_study_is_complete_with_geometry(demo_dir):
    out, summary = demo_dir
    study = Study.open(out / "study")
    expected = {Unit(m, "clean", 0) for m in MODELS} | {
        Unit(m, c, s) for m in MODELS for c in CORRUPTIONS for s in SEVERITIES
    }
    assert set(study.units()) == expected
    assert set(study.units(group="geometry")) == expected
    assert (out / "compare" / "summary.csv").is_file() and (out / "compare" / "comparison.json").is_file()
    assert set(summary["seconds"]) == {"probe", "sweep", "metrics", "compare"}


@pytest.mark.slow  # the demo_dir fixture runs the demo: about 15 s
def test_clean_accuracy_equals_the_zoo_model_run_directly(demo_dir):
    _out, summary = demo_dir
    images, labels = load_test_split()
    images, labels = images[:LIMIT], labels[:LIMIT]
    for name in MODELS:  # the zoo model itself, fed floats in [0, 1] as it was trained: independent of the probe
        session = ort.InferenceSession(str(zoo_models()[name]), providers=["CPUExecutionProvider"])
        x = (images.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
        scores = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert summary["accuracy"][name]["clean"] == pytest.approx(np.mean(scores.argmax(1) == labels))


@pytest.mark.slow  # the demo_dir fixture runs the demo: about 15 s
def test_every_view_has_a_screenshot_that_is_not_blank(demo_dir):
    _out, summary = demo_dir
    assert len(summary["screenshots"]) == 7
    for path in summary["screenshots"]:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
        colours = np.unique(pixels.reshape(-1, 3) // 16, axis=0)
        assert pixels.std() > 10 and len(colours) > 8, path  # greyscale thumbnails have few


def test_an_unknown_zoo_model_is_one_sentence(tmp_path):
    result = CliRunner().invoke(app, ["demo", "-o", str(tmp_path), "--headless", "--models", "resnet9000"])
    assert result.exit_code == 1
    assert "the zoo has no model 'resnet9000'" in result.output and "Traceback" not in result.output


@pytest.mark.slow  # the demo_dir fixture runs the demo: about 15 s
def test_sample_thumbnails_are_the_images_the_model_saw_under_the_condition(demo_dir):
    from onnx_geom.viewers import ViewerData

    out, _ = demo_dir
    study = Study.open(out / "study")
    data = ViewerData.from_study(study)
    idx = np.array([40, 3, 17])
    for condition in [("fog", 5), ("contrast", 1), ("clean", 0)]:
        thumbs = data.thumbnails(idx, condition)
        assert data.remakes(condition)
        # the zoo model itself on the thumbnails gives the logits the sweep stored for those samples
        session = ort.InferenceSession(str(zoo_models()["dense"]), providers=["CPUExecutionProvider"])
        x = (thumbs.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
        stored = np.asarray(study.read(Unit("dense", *condition), "logits"))[idx]
        np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], stored, atol=1e-4)
    assert not (data.thumbnails(idx, ("fog", 5)) == data.thumbnails(idx)).all()


@pytest.mark.slow  # the demo_dir fixture runs the demo: about 15 s
def test_the_demo_writes_its_report_and_says_where(demo_dir):
    out, summary = demo_dir
    report = out / "report.html"
    assert summary["report"] == str(report) and summary["report_notes"] == []
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text
    assert "<h2>Findings</h2>" in text and text.count('<img src="data:image/png;base64,') >= 5
    result = CliRunner().invoke(app, ["demo", "-o", str(out), "--headless", "--models", ",".join(MODELS), "--corruptions",
                                      ",".join(CORRUPTIONS), "--severities", ",".join(map(str, SEVERITIES)), "--limit",
                                      str(LIMIT)])  # fmt: skip
    assert result.exit_code == 0, result.output  # run again: everything reused, the report rewritten
    assert f"report: {report}" in result.output.replace("\n", "") and "open it in any browser" in result.output
