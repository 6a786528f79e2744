"""`onnx-geom metrics` and `onnx-geom compare` end to end on a study."""

import csv
import json

import numpy as np
import pytest
from geometry_study import make_study
from typer.testing import CliRunner

from onnx_geom.cli.app import app


@pytest.fixture
def study(monkeypatch, tmp_path):
    from onnx_geom.cli import _console

    monkeypatch.setattr(_console.out, "width", 200)
    s = make_study(tmp_path / "study")
    return tmp_path / "study", s


@pytest.fixture
def measured(tmp_path):
    """A study whose geometry is already computed."""
    return tmp_path / "measured", make_study(tmp_path / "measured", geometry=True)


def test_metrics_json_csv_and_table(study, tmp_path):
    path, s = study
    result = CliRunner().invoke(app, ["metrics", str(path), "--json", "--csv", str(tmp_path / "samples.csv")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 21 and {"accuracy", "median_margin"} <= set(rows[0])
    with open(tmp_path / "samples.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 21 * 120
    first = table[0]
    assert (first["model"], first["corruption"], first["severity"], first["sample"]) == ("dense", "clean", "0", "0")
    unit = s.units(group="geometry")[0]
    assert float(first["margin"]) == pytest.approx(float(s.read(unit, "geometry/margin")[0]), rel=1e-6)
    assert first["correct"] in ("true", "false")
    assert sum(r["correct"] == "true" for r in table[:120]) / 120 == pytest.approx(rows[0]["accuracy"])
    W, b = (np.asarray(a, np.float64) for a in s.head("dense"))  # and both from the stored features, by hand
    z = s.read(unit, "features").astype(np.float64) @ W.T + b
    assert (rows[0]["model"], rows[0]["corruption"]) == ("dense", "clean")
    assert rows[0]["accuracy"] == pytest.approx(np.mean(z.argmax(1) == s.labels))
    human = CliRunner().invoke(app, ["metrics", str(path)])
    assert human.exit_code == 0 and "motion_blur" in human.stdout and "1,3" in human.stdout
    fog = [r["accuracy"] for r in rows if (r["model"], r["corruption"]) == ("mag90", "gaussian_noise")]
    line = next(x for x in human.stdout.splitlines() if "mag90" in x and "gaussian_noise" in x)
    assert f"{sum(fog) / 2:.4g}" in line


def test_metrics_parquet(measured, tmp_path, pyarrow_parquet):
    pq = pyarrow_parquet
    path, _ = measured
    result = CliRunner().invoke(app, ["metrics", str(path), "--parquet", str(tmp_path / "s.parquet")])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.num_rows == 21 * 120 and table.column("model")[0].as_py() == "dense"


def test_metrics_parquet_without_pyarrow_is_one_clear_line(study, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    path, s = study
    result = CliRunner().invoke(app, ["metrics", str(path), "--parquet", str(tmp_path / "s.parquet")])
    assert result.exit_code == 1 and "needs pyarrow" in result.output and "Traceback" not in result.output
    assert not s.units(group="geometry")  # nothing computed before the refusal


def test_missing_study_is_one_clear_line(study, tmp_path):
    for command in ("metrics", "compare"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "nope")])
        assert result.exit_code == 1 and "no study at" in result.output and "Traceback" not in result.output


def test_compare_writes_tables_and_prints_headlines(study, measured, tmp_path):
    unmeasured = CliRunner().invoke(app, ["compare", str(study[0])])
    assert unmeasured.exit_code == 1 and "run `onnx-geom metrics STUDY` first" in unmeasured.output
    path, _s = measured
    result = CliRunner().invoke(app, ["compare", str(path), "-o", str(tmp_path / "cmp"), "--reference", "mag50"])
    assert result.exit_code == 0, result.output
    assert "against the reference mag50" in result.stdout and "robust samples" in result.stdout
    after = result.stdout.split("against the reference mag50")[1]
    ref_line = next(x for x in after.splitlines() if x.startswith("mag50 "))
    assert ref_line.split()[1] == "1"  # the reference's CKA with itself
    assert (tmp_path / "cmp" / "mst.csv").read_text().count("\n") == 3  # header + M - 1 edges
    data = json.loads(CliRunner().invoke(app, ["compare", str(path), "--json"]).stdout)
    one = json.loads(CliRunner().invoke(app, ["compare", str(path), "--json", "--threshold", "2"]).stdout)
    assert len(one["groups"]) == 1 and len(data["groups"]) > 1
    assert data["reference"] == "dense" and len(data["embedding"]) == 3
    assert np.isfinite(np.array(data["distance"])).all()
    no_folder = CliRunner().invoke(app, ["compare", str(path), "--parquet"])
    assert no_folder.exit_code == 1 and "add -o DIR" in no_folder.output
    assert CliRunner().invoke(app, ["compare", str(path), "--parquet", "-o", str(tmp_path / "pq")]).exit_code == 0
    assert (tmp_path / "pq" / "summary.parquet").is_file() and not (tmp_path / "pq" / "summary.csv").exists()
    bad = CliRunner().invoke(app, ["compare", str(path), "--reference", "zzz"])
    assert bad.exit_code == 1 and "reference model 'zzz'" in bad.output


def test_unwritable_outputs_are_one_clear_line(measured, tmp_path):
    path, _ = measured
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["metrics", str(path), "--csv", str(blocker / "sub" / "s.csv")])
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["compare", str(path), "-o", str(blocker / "cmp")])
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output
    ok = CliRunner().invoke(app, ["metrics", str(path), "--csv", str(tmp_path / "new" / "dir" / "s.csv")])
    assert ok.exit_code == 0 and (tmp_path / "new" / "dir" / "s.csv").exists()


def test_empty_study_and_non_study_folder_are_one_clear_line(tmp_path):
    from onnx_geom.store import Study

    Study.create(
        tmp_path / "empty", images=np.zeros((3, 1, 1, 1), np.uint8), labels=np.zeros(3, int), dataset_name="none"
    )
    result = CliRunner().invoke(app, ["metrics", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "has no complete unit yet" in result.output
    (tmp_path / "plain").mkdir()
    for command in ("metrics", "compare"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "plain")])
        assert result.exit_code == 1 and "not an onnx-geom study" in result.output and "Traceback" not in result.output


def test_view_uses_the_comparison_compare_stored(measured, monkeypatch, tmp_path):
    import onnx_geom.comparison
    from onnx_geom.store import Study
    from onnx_geom.viewers import ViewerData

    path, _ = measured
    assert CliRunner().invoke(app, ["compare", str(path), "-o", str(tmp_path / "cmp")]).exit_code == 0
    assert (tmp_path / "cmp" / "summary.csv").is_file()
    stored = Study.open(path).read_comparison()
    assert stored is not None
    real, calls = onnx_geom.comparison.compare_study, []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_geom.comparison, "compare_study", counting)
    data = ViewerData.from_study(path)
    assert calls == [] and data.embedding_note in (None, "")
    np.testing.assert_array_equal(data.embedding, stored.embedding)
    ViewerData.from_study(path, reference="mag50")  # other parameters than the stored ones: computed
    assert calls == [{"reference": "mag50"}]
    # stored naming the default reference explicitly (as the demo stores it): still the stored one
    default = stored.reference
    assert CliRunner().invoke(app, ["compare", str(path), "--reference", default]).exit_code == 0
    calls.clear()
    ViewerData.from_study(path)
    assert calls == []


def test_compare_on_a_read_only_study_only_computes(measured, monkeypatch):
    import os

    path, _ = measured
    real = os.access  # as if the folder were read-only (the tests run as root, whom chmod does not stop)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK else real(p, mode, **kw))
    result = CliRunner().invoke(app, ["compare", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["parameters"]["distance"] == "geometry"
    assert not (path / "comparison").exists()


def test_compare_json_names_the_corruptions_each_average_used_and_left_out(measured, tmp_path):
    path, _s = measured
    result = CliRunner().invoke(app, ["compare", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fifteen = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression"]  # fmt: skip
    in_study = ["gaussian_noise", "defocus_blur", "motion_blur"]
    av = data["averages"]
    assert set(av) == {"mean_corruption_accuracy", "mce", "mce_extra", "relative_mce"}
    assert av["mce"]["used"] == in_study
    assert av["mce"]["excluded"] == [
        {"corruption": c, "reason": "not in the study"} for c in fifteen if c not in in_study
    ]
    assert {e["corruption"] for e in av["mce_extra"]["excluded"]} == {"speckle_noise", "gaussian_blur", "spatter",
                                                                       "saturate"}  # fmt: skip
    assert av["mce_extra"]["undefined"] == "no corruption remains"
    rel = av["relative_mce"]
    assert rel["undefined"].startswith(f"only {len(rel['used'])} corruptions remain; relative mCE needs at least 5")
    assert all(r["relative_mce"] is None for r in data["summary"])  # NaN in JSON
    rows = {r["corruption"]: r for r in data["corruption_status"]}
    assert rows["fog"]["mce"] == "not in the study" and rows["motion_blur"]["mce"] == "used"
    # printed: the averages, the one line of exclusions, the map's fidelity, the data basis of the columns
    human = CliRunner().invoke(app, ["compare", str(path), "--min-reference-drop", "0.5"]).stdout
    assert "averages: mean corruption accuracy over 3 corruptions; mCE over 3 of the 15" in human
    line = next(x for x in human.splitlines() if x.startswith("excluded: "))
    assert "shot_noise" in line and "not in the study" in line
    assert "the reference must lose at least 50 percentage points" in human
    assert "model map (geometry distance, classical MDS): keeps" in human and "_clean: clean data only" in human
    assert "cka clean" in human and "cka debiased" in human


def test_compare_with_published_reference_errors(measured, tmp_path):
    path, s = measured
    lines = ["corruption,severity,error", "clean,0,0.2"]
    lines += [f"{c},{sv},{e}" for c, e in (("gaussian_noise", 0.4), ("defocus_blur", 0.5)) for sv in (1, 3)]
    (tmp_path / "ref.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["compare", str(path), "--json", "--reference-errors", str(tmp_path / "ref.csv")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mce_reference"] == "the given reference errors"
    assert {"corruption": "motion_blur", "reason": "not in the reference errors"} in data["averages"]["mce"]["excluded"]
    labels = s.labels
    dense = next(r for r in data["summary"] if r["model"] == "dense")
    ces = [
        sum(1 - np.mean(s.read(u, "logits").argmax(1) == labels) for u in units) / (2 * e)
        for units, e in (
            ([s.units(model="dense")[i] for i in (3, 4)], 0.4),  # gaussian_noise 1, 3
            ([s.units(model="dense")[i] for i in (1, 2)], 0.5),  # defocus_blur 1, 3
        )
    ]
    assert [u.corruption for u in s.units(model="dense")][1:5] == ["defocus_blur"] * 2 + ["gaussian_noise"] * 2
    assert dense["mce"] == pytest.approx(np.mean(ces))
    (tmp_path / "bad.csv").write_text("corruption,severity,error\nfog,1,40\n")
    bad = CliRunner().invoke(app, ["compare", str(path), "--reference-errors", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 1 and "outside [0, 1]" in bad.output and "Traceback" not in bad.output
