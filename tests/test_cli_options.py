"""The command line's shared grammar (cli/_options.py): choices listed in --help and checked, one --size order
(WIDTHxHEIGHT), one corruptions list, and --json that parses when piped, for every command."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _probe_models import gemm_trans_b0
from _probes import make_probe
from typer.testing import CliRunner

from onnx_geom.cli import _options
from onnx_geom.cli._console import print_json
from onnx_geom.cli.app import app
from onnx_geom.errors import DataError

RUNNER = CliRunner()


def invoke(*args, **kwargs):
    return RUNNER.invoke(app, [str(a) for a in args], **kwargs)


def one_sentence(result, *contains):
    """A refusal: exit code 1, one line on stderr starting with 'error:', nothing on stdout, no traceback."""
    text = result.stderr.strip()
    assert result.exit_code == 1, result.output
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in result.output, text
    assert result.stdout == ""
    for part in contains:
        assert part in text, text
    return text


# --- choices ---------------------------------------------------------------------------------------------------


def test_each_choice_enum_is_the_library_tuple():
    from onnx_geom.comparison import DISTANCES
    from onnx_geom.corruptions import PROFILES
    from onnx_geom.datasets._cifar import CIFAR10_FILES
    from onnx_geom.probe import PRESETS
    from onnx_geom.probe_info import LAYOUTS
    from onnx_geom.runner import DEVICES
    from onnx_geom.sweep import EXECUTORS
    from onnx_geom.viewers import ATTRIBUTIONS, PANELS

    pairs = [
        (_options.Attribution, ATTRIBUTIONS),
        (_options.Device, DEVICES),
        (_options.Executor, EXECUTORS),
        (_options.Profile, PROFILES),
        (_options.Preset, tuple(PRESETS)),
        (_options.Layout, LAYOUTS),
        (_options.Distance, DISTANCES),
        (_options.Panel, PANELS),
        (_options.Split, tuple(CIFAR10_FILES)),
    ]
    for enum, library in pairs:
        assert tuple(choice.value for choice in enum) == tuple(library), enum


CHOICES = [  # command, option, the choices --help must list
    ("probe", "--preset", "none|cifar10|cifar100|imagenet"),
    ("probe", "--layout", "NCHW|NHWC|flat"),
    ("corrupt", "--profile", "cifar|imagenet"),
    ("corrupt", "--split", "test|train"),
    ("run", "--device", "auto|cpu|cuda|tensorrt"),
    ("run", "--profile", "cifar|imagenet"),
    ("run", "--executor", "local|ray"),
    ("compare", "--distance", "geometry|geometry_raw|cka|kappa|agreement"),
    ("view", "--panel", "table|similarity|samples|local|global|attribution"),
    ("view", "--attribution", "margin|cos|length|true-logit|predicted-logit|occlusion"),
]


@pytest.mark.parametrize(("command", "option", "choices"), CHOICES)
def test_help_lists_the_choices(command, option, choices):
    result = invoke(command, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if f" {option} " in x)
    assert f"<{choices}>" in line, line


@pytest.fixture
def model(tmp_path):
    onnx.save(make_probe(seed=1, shape=(16, 16, 3))[0], tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def test_a_choice_not_offered_is_one_sentence_and_nothing_runs(tmp_path, model):
    wrong = [
        (["probe", model, "-o", tmp_path / "p.onnx", "--preset", "mnist"], "--preset", "'none', 'cifar10'"),
        (["probe", model, "-o", tmp_path / "p.onnx", "--layout", "CHW"], "--layout", "'NCHW', 'NHWC', 'flat'"),
        (["corrupt", tmp_path, "-o", tmp_path / "c", "--profile", "mnist"], "--profile", "'cifar', 'imagenet'"),
        (["corrupt", tmp_path, "-o", tmp_path / "c", "--split", "val"], "--split", "'test', 'train'"),
        (["run", model, "-d", tmp_path / "d.npz", "-o", tmp_path / "s", "--device", "gpu"], "--device", "'tensorrt'"),
        (
            ["compare", tmp_path, "--distance", "cosine"],
            "--distance",
            "'geometry', 'geometry_raw', 'cka', 'kappa', 'agreement'",
        ),
        (["view", tmp_path, "--panel", "map"], "--panel", "'table', 'similarity'"),
    ]
    for args, option, choices in wrong:
        value = args[-1]
        one_sentence(invoke(*args), f"Invalid value for '{option}': '{value}' is not one of", choices)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_usage_errors_are_one_sentence_too(tmp_path, model):
    one_sentence(invoke("run", model, "-o", tmp_path / "s"), "Missing option '--data'", "onnx-geom run --help")
    one_sentence(invoke("metrics", tmp_path, "--bogus"), "No such option: --bogus")
    one_sentence(invoke("corrupt", tmp_path, "-o", tmp_path / "c", "--seed", "x"), "'--seed'")
    one_sentence(invoke("view", tmp_path / "nowhere"), "nowhere' does not exist")
    one_sentence(invoke("view", model), "is a file")
    # output paths: onnx_geom._files.check_output, the one check of every output (tests/test_outputs.py)
    one_sentence(invoke("metrics", tmp_path, "--csv", tmp_path), "is the input folder itself")
    one_sentence(invoke("probe", model, "-o", tmp_path), "is a folder, not a file")
    one_sentence(invoke("demo", "-o", model), "is a file, not a folder")
    one_sentence(invoke("nonsense"), "No such command 'nonsense'")
    one_sentence(invoke("--bogus"), "No such option: --bogus", "see `onnx-geom --help`")
    assert invoke().exit_code == 2  # `onnx-geom` alone still prints the help


# --- --size: WIDTHxHEIGHT everywhere ------------------------------------------------------------------------------


def test_size_reads_width_then_height():
    assert _options.parse_size("40x30") == (40, 30) and _options.parse_size("40x30").height == 30
    for bad in ("40", "40x", "x30", "40x30x3", "0x30", "40x0", "-4x3", "4.5x3", "big"):
        with pytest.raises(Exception, match="is not WIDTHxHEIGHT"):
            _options.parse_size(bad)


@pytest.mark.parametrize("command", ["probe", "view"])
def test_every_size_help_states_the_order(command):
    result = invoke(command, "--help", env={"COLUMNS": "200"})
    line = next(x for x in result.stdout.splitlines() if " --size " in x)
    assert line.count("WIDTHxHEIGHT") == 2, line  # the metavar and the help


def test_probe_size_is_width_by_height_end_to_end(tmp_path):
    source, reference = gemm_trans_b0(np.random.default_rng(3))
    dims = source.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"  # NCHW with a free spatial size
    onnx.save(source, tmp_path / "free.onnx")
    result = invoke("probe", tmp_path / "free.onnx", "-o", tmp_path / "p.onnx", "--size", "40x30", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["input_shape"] == [30, 40, 3]  # (H, W, C): 30 high, 40 wide
    shape = [d.dim_value for d in onnx.load(tmp_path / "p.onnx").graph.input[0].type.tensor_type.shape.dim[1:]]
    assert shape == [30, 40, 3]
    images = np.random.default_rng(0).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": images})[0]
    _, expected, _ = reference(images.astype(np.float64).transpose(0, 3, 1, 2) / 255)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="images"):  # a 40-high, 30-wide image is not what it takes
        session.run(["logits"], {"images": images.transpose(0, 2, 1, 3).copy()})


# --- one corruptions grammar ----------------------------------------------------------------------------------


def test_corruptions_grammar():
    from onnx_geom.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS

    parse = _options.parse_corruptions
    assert len(CORRUPTIONS) == 19 and len(BENCHMARK_CORRUPTIONS) == 15
    assert parse(None) is None and parse(["all"]) is None and parse(["fog,all"]) is None
    assert parse(["snow, fog", "fog", "contrast"]) == ["snow", "fog", "contrast"]
    assert parse(["benchmark"]) == list(BENCHMARK_CORRUPTIONS)
    extra = sorted(set(CORRUPTIONS) - set(BENCHMARK_CORRUPTIONS))
    assert parse(["benchmark", ",".join(extra)]) == [*BENCHMARK_CORRUPTIONS, *extra]
    assert parse(["none"], clean_only=True) == [] and parse(["none", "fog"], clean_only=True) == ["fog"]
    assert parse(["mine"], check=False) == ["mine"]
    with pytest.raises(DataError, match=r"^unknown corruption\(s\) none; choose from all, benchmark, gaussian_noise, "):
        parse(["none"])
    with pytest.raises(DataError, match=r"unknown corruption\(s\) blur, rain; choose from all, benchmark, none, "):
        parse(["blur,fog", "rain", "blur"], clean_only=True)
    with pytest.raises(DataError, match="names no corruption"):
        parse([" , "])


@pytest.mark.parametrize(("command", "keywords"), [("run", "all, benchmark, none"), ("corrupt", "all, benchmark"),
                                                   ("demo", "all, benchmark")])  # fmt: skip
def test_every_command_refuses_unknown_corruptions_with_the_same_sentence(tmp_path, model, command, keywords):
    args = {
        "run": ["run", model, "-d", tmp_path / "d.npz", "-o", tmp_path / "s"],
        "corrupt": ["corrupt", tmp_path / "d.npz", "-o", tmp_path / "c"],
        "demo": ["demo", "-o", tmp_path / "demo"],
    }[command]
    from onnx_geom.corruptions import CORRUPTIONS

    text = one_sentence(invoke(*args, "-c", "fog,blur", "--corruptions", "rain"))
    assert text == f"error: unknown corruption(s) blur, rain; choose from {keywords}, {', '.join(CORRUPTIONS)}."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_corrupt_reads_repeated_and_comma_lists(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(3))
    result = invoke("corrupt", tmp_path / "d.npz", "-o", tmp_path / "c", "-c", "contrast", "-c", "fog,contrast",
                    "--severities", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == ["contrast", "fog"]
    assert sorted(p.name for p in (tmp_path / "c").glob("*.npy")) == ["contrast.npy", "fog.npy", "labels.npy"]


def test_run_with_a_folder_reads_all_as_the_folder_and_checks_names_there(tmp_path, model):
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(4) % 4)
    assert invoke("corrupt", tmp_path / "d.npz", "-o", tmp_path / "c", "-c", "fog", "--severities", "1").exit_code == 0
    run = ["run", model, "-d", tmp_path / "d.npz", "--corrupted", tmp_path / "c", "--severities", "1", "--json"]
    one_sentence(invoke(*run, "-o", tmp_path / "s1", "-c", "fog,mine"), "has no mine.npy; it has fog.")
    result = invoke(*run, "-o", tmp_path / "s2")  # all: every set in the folder
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["accuracy"]["m"]) == {"clean", "fog"}


# --- one JSON printer ---------------------------------------------------------------------------------------------


def test_print_json_is_plain_and_nan_safe(capsys, tmp_path):
    long = tmp_path / ("x" * 300)
    print_json({"nan": float("nan"), "inf": np.float32("inf"), "array": np.arange(3), "path": long, "n": np.int64(2)})
    text = capsys.readouterr().out
    assert json.loads(text) == {"nan": None, "inf": None, "array": [0, 1, 2], "path": str(long), "n": 2}
    assert "\x1b" not in text and str(long) in text


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory):
    """A folder with a path far longer than any terminal line, holding two probes and 25 images."""
    root = tmp_path_factory.mktemp("json") / ("a-folder-name-long-enough-to-wrap-" * 5) / ("and-deeper-" * 8)
    root.mkdir(parents=True)
    shape = (16, 16, 3)
    for name, seed, features in (("dense", 1, 8), ("other", 2, 5)):
        onnx.save(make_probe(seed=seed, shape=shape, features=features)[0], root / f"{name}.probe.onnx")
    rng = np.random.default_rng(4)
    np.savez(
        root / "data.npz", images=rng.integers(0, 256, (25, *shape), dtype=np.uint8), labels=rng.integers(0, 4, 25)
    )
    return root


def piped_json(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_command_json_parses_when_piped(long_dir, monkeypatch):
    from onnx_geom.store import Study, Unit

    assert len(str(long_dir)) > 250
    data = np.load(long_dir / "data.npz")
    images, labels = data["images"], data["labels"]
    dense, other, study = long_dir / "dense.probe.onnx", long_dir / "other.probe.onnx", long_dir / "study"

    probe = piped_json("probe", dense, "--check", "--json")
    assert probe["probe"] == str(dense) and probe["max_logit_error"] <= probe["logit_tolerance"]
    assert piped_json("probe", dense, "--inspect", "--json")["model"] == str(dense)

    corrupt = piped_json("corrupt", long_dir / "data.npz", "-o", long_dir / "c", "-c", "fog", "--severities", "1",
                         "--json")  # fmt: skip
    assert corrupt["output"] == str(long_dir / "c") and corrupt["images"] == 25 and corrupt["written"] == ["fog"]

    run = piped_json("run", dense, other, "-d", long_dir / "data.npz", "-o", study, "-c", "fog", "--severities", "1",
                     "--device", "cpu", "--json")  # fmt: skip
    session = ort.InferenceSession(str(dense), providers=["CPUExecutionProvider"])
    direct = np.mean(session.run(["logits"], {"images": images})[0].argmax(1) == labels)
    assert run["study"] == str(study) and run["accuracy"]["dense"]["clean"] == pytest.approx(direct)

    info = piped_json("info", study, "--json")
    assert info["path"] == str(study) and info["dataset"]["n"] == 25
    assert {m: row["complete"] for m, row in info["models"].items()} == {"dense": 2, "other": 2}

    rows = piped_json("metrics", study, "--json")
    handle = Study.open(study)
    for row in rows:  # accuracy and mean length from the stored arrays, not from the geometry
        unit = Unit(row["model"], row["corruption"], row["severity"])
        logits, features = np.asarray(handle.read(unit, "logits")), np.asarray(handle.read(unit, "features"))
        assert row["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
        assert row["mean_length"] == pytest.approx(np.linalg.norm(features, axis=1).mean(), rel=1e-5)
    assert len(rows) == 4

    comparison = piped_json("compare", study, "--json", "--distance", "agreement")
    pred = {  # clean, then fog/1
        m: [np.asarray(handle.read(Unit(m, *c), "logits")).argmax(1) for c in (("clean", 0), ("fog", 1))]
        for m in ("dense", "other")
    }
    [pair] = comparison["pairs"]  # agreement over every unit the two share
    assert pair["agreement_all"] == pytest.approx(
        np.mean(np.concatenate(pred["dense"]) == np.concatenate(pred["other"]))
    )
    for record in comparison["summary"]:
        assert record["clean_accuracy"] == pytest.approx(np.mean(pred[record["model"]][0] == labels))
    assert not any(isinstance(v, float) and math.isnan(v) for v in _leaves(comparison))

    import onnx_geom.viewers as viewers

    monkeypatch.setattr(viewers, "screenshot", lambda data, path, panel=None: path)  # no EGL needed for the JSON
    demo = piped_json("demo", "-o", long_dir / "demo", "--headless", "--models", "dense", "-c", "fog",
                      "--severities", "1", "--limit", "16", "--json")  # fmt: skip
    assert demo["study"] == str(long_dir / "demo" / "study") and len(demo["screenshots"]) == 7
    assert demo["screenshots"][0] == str(long_dir / "demo" / "screenshots" / "window.png")
    assert set(demo["accuracy"]["dense"]) == {"clean", "fog"}


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
