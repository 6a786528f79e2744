"""The attribution panel's linearization: the drawn maps against the engine's numbers (onnx_geom.linearize on an
ONNX probe of the same model), the sum-check text against values computed here from the features, the
explain service on a real study (probe files, a corruption remade from the seed: the study's stored margins),
sessions built once per model, off the GUI thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _explain_study import demo_study, synthetic_probe
from _viewer_checks import finish_background
from typer.testing import CliRunner

from onnx_geom.linearize import Linearizer
from onnx_geom.store import Study, Unit
from onnx_geom.viewers import Selection, ViewerData, render
from onnx_geom.viewers._synthetic import synthetic_services
from onnx_geom.viewers.colors import colormap
from onnx_geom.viewers.services import FunctionExplain, ProbeExplain, Services

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def data():
    return ViewerData.synthetic(300, 5, models=("dense", "magnitude-50", "magnitude-90"), seed=0)


@pytest.fixture(scope="module")
def engine(data):
    """The engine on ONNX probes of the synthetic models: ``engine(model, i)`` -> its Linearization of sample i."""
    linearizers = {m: Linearizer(synthetic_probe(data, m), device="cpu") for m in data.models}
    return lambda model, i: linearizers[model](data.images[[i]], data.labels[[i]])


def _canvas(data, selection, services, attribution="margin", size=(900, 700)):
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    canvas, views = build_canvas(
        data, selection, panels=["attribution"], size=size, services=services, attribution=attribution
    )
    return canvas, views["attribution"]


def _expected_sum(contributions, bias, value, digits=2):
    """The sum check as the panel must print it, formatted here: a negative bias is subtracted."""
    op = "-" if bias < 0 else "+"
    return f"{contributions:.{digits}f} {op} {abs(bias):.{digits}f} = {value:.{digits}f}"


def _check_tile(img, view, canvas, corner, values, scale):
    """Every pixel of a drawn map, at its centre: the diverging colour of ``values / scale``, centred on zero."""
    to_canvas = view.viewbox.scene.node_transform(canvas.scene)
    h, w = values.shape
    for r in range(h):
        for c in range(w):
            x, y = to_canvas.map([[corner[0] + (c + 0.5) / max(h, w), corner[1] + (r + 0.5) / max(h, w)]])[0, :2]
            expected = colormap(np.array([0.5 + 0.5 * np.clip(values[r, c] / scale, -1, 1)]), "diverging")[0, :3]
            np.testing.assert_allclose(img[int(y), int(x), :3] / 255, expected, atol=0.03, err_msg=f"pixel {r},{c}")


def _scale(*maps):
    """Full colour at the 99th percentile of |contribution| (as docs/view.md says), computed here."""
    return np.percentile(np.abs(np.concatenate([m.ravel() for m in maps])), 99)


def _margin(features, W, b, y):
    """The margin from features, by a loop over the other classes (float64)."""
    f, W, b = np.asarray(features, np.float64), np.asarray(W, np.float64), np.asarray(b, np.float64)
    z = W @ f + b
    return min((z[y] - z[j]) / np.linalg.norm(W[y] - W[j]) for j in range(len(b)) if j != y)


def test_the_synthetic_explain_function_is_the_engine_on_the_same_model(data, engine):
    services = synthetic_services(data)
    for model in data.models:
        mine = services.explain(model, data.images[[7, 8]], data.labels[[7, 8]])
        for s, i in enumerate((7, 8)):
            ref = engine(model, i)
            for q in ("margin", "cos", "length"):
                part = getattr(ref, q)
                np.testing.assert_allclose(mine.quantities[q].map[s], part.map[0], rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(mine.quantities[q].bias[s], part.bias[0], rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(mine.quantities[q].value[s], part.value[0], rtol=1e-5, atol=1e-6)
            y = int(data.labels[i])
            truth = ref.W[0, y] * data.images[i].astype(np.float32)
            np.testing.assert_allclose(mine.quantities["true_logit"].map[s], truth, rtol=1e-4, atol=1e-6)


def test_linear_maps_of_the_reference_and_a_pruned_model_and_their_difference_are_drawn_true(data, engine):
    sel = Selection(models=("magnitude-90",), indices=[11])
    probes = {m: synthetic_probe(data, m) for m in data.models}
    services = Services(explain=ProbeExplain(probes, device="cpu"))  # the engine itself
    canvas, view = _canvas(data, sel, services)
    img = canvas.render()
    assert view.pair() == ("magnitude-90", "dense") and data.reference == "dense"
    ref, mine = engine("dense", 11), engine("magnitude-90", 11)
    ref_map, my_map = ref.margin.map[0].sum(-1), mine.margin.map[0].sum(-1)
    vmax = _scale(ref_map, my_map)
    diff = my_map - ref_map
    _check_tile(img, view, canvas, (0.0, 0.0), ref_map, vmax)
    _check_tile(img, view, canvas, (1.15, 0.0), my_map, vmax)
    _check_tile(img, view, canvas, (1.15, 1.3), diff, _scale(diff))
    # the sum check, with the values computed here from the features
    features = ((data.images[11].reshape(-1) / 255.0) - 0.5) @ data.images.probe.astype(np.float64)
    y = int(data.labels[11])
    captions = list(view.captions.text)
    for name, res in (("dense", ref), ("magnitude-90", mine)):
        value = _margin(features, *data.heads[name], y)
        contributions = res.margin.map[0].sum(dtype=np.float64)
        assert contributions + res.margin.bias[0] == pytest.approx(value, rel=1e-5, abs=1e-6)
        caption = next(c for c in captions if c.startswith(name + "\n"))
        assert caption.endswith(_expected_sum(contributions, res.margin.bias[0], value)), caption
        pred = int(np.argmax(data.heads[name][0] @ features + data.heads[name][1]))
        assert f"predicts {data.class_names[pred]}, rival {data.class_names[res.rival[0]]}" in caption
    d = [a - b for a, b in zip(view.maps["sums"]["selected"], view.maps["sums"]["reference"], strict=True)]
    assert any(c.startswith("difference") and c.endswith(_expected_sum(*d)) for c in captions), captions
    assert "margin = pixel contributions + bias (exact local linear map)" in view.info.text
    assert f"full colour at ±{vmax:.3g} per pixel" in view.info.text
    assert f"magnitude-90 - dense, full colour at ±{_scale(diff):.3g}" in view.info.text
    canvas.close()


@pytest.mark.parametrize("attribution", ["true-logit", "cos", "length", "predicted-logit"])
def test_one_model_alone_when_it_is_the_reference(data, engine, attribution):
    sel = Selection(models=("dense",), indices=[4])
    canvas, view = _canvas(data, sel, synthetic_services(data), attribution)
    img = canvas.render()
    assert view.pair() == ("dense", None)
    res = engine("dense", 4)
    image = data.images[4].astype(np.float64)
    features = ((image.reshape(-1) / 255.0) - 0.5) @ data.images.probe.astype(np.float64)
    W, b = (np.asarray(a, np.float64) for a in data.heads["dense"])
    y, z = int(data.labels[4]), W @ features + b
    if attribution.endswith("logit"):
        k = y if attribution == "true-logit" else int(np.argmax(z))
        values, bias, value, digits = res.W[0, k] * image, res.b[0, k], z[k], 2
    else:
        part = getattr(res, attribution)
        values, bias = part.map[0], part.bias[0]
        if attribution == "cos":
            value, digits = W[y] @ features / (np.linalg.norm(W[y]) * np.linalg.norm(features)), 4
        else:
            value, digits = np.linalg.norm(features), 2
    pixels = values.sum(-1)
    _check_tile(img, view, canvas, (1.15, 0.65), pixels, _scale(pixels))
    caption = next(c for c in view.captions.text if c.startswith("dense\n"))
    assert caption.endswith(_expected_sum(values.sum(), bias, value, digits)), caption
    assert "dense is the reference" in view.info.text
    canvas.close()


def test_linear_maps_in_the_background_and_switching_to_occlusion(data, engine):
    sel = Selection(models=("magnitude-50",))
    services = synthetic_services(data)
    canvas, view = _canvas(data, sel, services, size=(600, 500))
    view._poll_soon = lambda: None  # no event loop here: collect by hand below, as the timer would
    with ThreadPoolExecutor(1) as worker:
        view.background = worker
        sel.indices = [11]
        assert view.maps is None and view.message.text.startswith("computing the linear maps of #11")
        sel.indices = [5]  # the focus moves on before the first maps are back
        finish_background(view)
        assert not view._pending and sel.focus == 5 and view.maps is not None
        expected = engine("magnitude-50", 5).margin.map[0].sum(-1)  # the engine on the ONNX probe, not the service
        np.testing.assert_allclose(view.maps["selected"], expected, rtol=1e-5, atol=1e-7)
        assert ("linear", "magnitude-50", ("clean", 0), 11) in view._cache
        view.set_attribution("occlusion")
        assert view.maps is None and view.message.text.startswith("computing the occlusion map of #5")
        finish_background(view)
    assert view.grid_shape() == (8, 8) and "margin" in view.maps
    assert view.subtitle() == "occlusion"
    view.set_attribution("margin")  # cached: drawn at once
    assert view.maps["pair"] == ("magnitude-50", "dense")
    with pytest.raises(ValueError, match="unknown attribution 'nope'"):
        view.set_attribution("nope")
    canvas.close()


def test_a_model_without_an_explanation_says_why():
    data = ViewerData.synthetic(50, 3, models=("dense", "pruned-90"), seed=1)
    services = Services(explain=FunctionExplain({}))
    canvas, view = _canvas(data, Selection(models=("pruned-90",), indices=[2]), services, size=(400, 300))
    assert view.maps is None and view.message.text == "no explain function for model dense"
    canvas.close()


@pytest.fixture(scope="module")
def demo():
    return demo_study()


def test_on_a_study_the_maps_add_up_to_the_stored_margins_and_linearizers_are_built_once(demo):
    data = ViewerData.from_study(demo.study)
    assert data.reference == "dense"
    services = Services.for_data(data)
    sel = Selection(models=("magnitude_95",), condition=("fog", 3), indices=[5])
    canvas, view = _canvas(data, sel, services, size=(500, 450))
    study = Study.open(demo.study)
    for i in (5, 9, 5, 12):
        sel.focus = i
        if i not in sel.indices:
            sel.indices = [i]
        assert view.maps is not None, view.message.text
        for role, model in (("selected", "magnitude_95"), ("reference", "dense")):
            contributions, bias, value = view.maps["sums"][role]
            stored = study.read(Unit(model, "fog", 3), "geometry/margin")[i]
            # the fog image was remade from the study's seed: the margin is the one the sweep measured
            assert value == pytest.approx(stored, rel=1e-5, abs=1e-5)
            assert contributions + bias == pytest.approx(stored, rel=1e-5, abs=1e-4)
            np.testing.assert_allclose(view.maps[role].sum(), contributions, rtol=1e-5, atol=1e-5)
    assert services.explain.builds == 2  # one linearizer per model, kept
    assert "fog/3" in next(c for c in view.captions.text if c.startswith("#12"))
    canvas.close()


@pytest.mark.slow  # two CLI screenshots of a real study (new canvases, shaders compiled on the CPU): about 3 s
def test_view_cli_takes_the_attribution_option(demo, tmp_path):
    from PIL import Image

    from onnx_geom.cli.app import app

    shots = {}
    for attribution in ("margin", "occlusion"):
        out = tmp_path / f"{attribution}.png"
        args = ["view", str(demo.study), "--screenshot", str(out), "--panel", "attribution", "--size", "500x400"]
        result = CliRunner().invoke(app, [*args, "--attribution", attribution])
        assert result.exit_code == 0, result.output
        shots[attribution] = img = np.asarray(Image.open(out))[..., :3].astype(int)
        coloured = (img.max(-1) - img.min(-1)) > 40  # the diverging maps: saturated pixels (the images are grey)
        assert coloured.mean() > 0.005, attribution
    assert (np.abs(shots["margin"] - shots["occlusion"]).max(-1) > 40).mean() > 0.01  # not the same picture
    bad = CliRunner().invoke(app, [*args, "--attribution", "nope"])
    assert bad.exit_code == 1 and "'nope' is not one of 'margin'" in bad.output


def test_render_refuses_an_unknown_attribution(data):
    with pytest.raises(ValueError, match="unknown attribution"):
        render(data, panel="attribution", attribution="gradients")
