"""Headless rendering (EGL, Mesa llvmpipe is enough): screenshots of the window and each panel, their structure,
and the linking of views driven through the canvas' own mouse events."""

import functools

import numpy as np
import pytest
from _viewer_checks import finish_background, table_cells
from scipy import ndimage

from onnx_geom.errors import DataError
from onnx_geom.viewers import Selection, ViewerData, render, screenshot
from onnx_geom.viewers._synthetic import synthetic_services
from onnx_geom.viewers.colors import class_colors, colormap
from onnx_geom.viewers.services import ProbeExplain, ProbeFeatures, Services

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def data():
    return ViewerData.synthetic(600, 5, models=("dense", "magnitude-50", "magnitude-90"), seed=0)


def _margin_changes(image, label, features, W, b):
    """The occlusion map's expected Δmargin, written apart from onnx_geom: the documented defaults (an 8 x 8 grid of
    square patches, filled with the image's rounded mean grey), one occluded image at a time, the margin by a loop
    over the other classes."""
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    h, w = image.shape[:2]
    patch = int(np.ceil(max(h, w) / 8))
    fill = int(np.round(image.mean()))

    def margin(img):
        f = np.asarray(features(img[None])[0], np.float64)
        z = W @ f + b
        return min((z[label] - z[j]) / np.linalg.norm(W[label] - W[j]) for j in range(len(b)) if j != label)

    base = margin(image)
    rows, cols = -(-h // patch), -(-w // patch)
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            occluded = image.copy()
            occluded[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = fill
            out[r, c] = margin(occluded) - base
    return out


def _near(image, rgb, tol=0.06):
    return np.abs(image[..., :3] / 255.0 - np.asarray(rgb)[None, None, :3]).max(axis=-1) < tol


def test_local_panel_draws_every_class_in_its_own_colour(data):
    img = render(data, panel="local", selection=Selection(models=("dense",)))
    alpha = np.clip(3000 / data.n_samples, 0.08, 0.85)
    counts = []
    for rgba in class_colors(data.n_classes):
        blended = alpha * rgba[:3] + (1 - alpha) * 1.0  # translucent over white, no depth test
        counts.append(int(_near(img, blended, 0.05).sum()))
    assert min(counts) > 200, counts


def test_table_panel_has_one_cell_per_model_and_condition_in_the_right_colour(data):
    img = render(data, panel="table", selection=Selection(models=()))
    rgb = img[..., :3].astype(float)
    labels, cells = table_cells(img, 400)
    m, c = len(data.models), len(data.conditions)
    assert len(cells) == m * c
    # reading order of the cells = rows (best model first) x conditions; colour = viridis(accuracy)
    centres = ndimage.center_of_mass(labels > 0, labels, cells)
    order = sorted(range(len(cells)), key=lambda i: (round(centres[i][0] / 20), centres[i][1]))
    values = np.concatenate([data.clean_accuracy[:, None], data.accuracy.reshape(m, -1)], axis=1)
    mean = values[:, 1:].mean(axis=1)
    values = values[np.argsort(-mean, kind="stable")].ravel()
    expected = colormap(values)[:, :3]  # the absolute scale: 0% dark .. 100% yellow
    for k, i in enumerate(order):
        got = np.median(rgb[labels == cells[i]], axis=0) / 255
        np.testing.assert_allclose(got, expected[k], atol=0.04, err_msg=f"cell {k}")


def test_attribution_panel_shows_one_heatmap_cell_per_patch(data):
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    sel = Selection(models=("dense",), indices=[11])
    services = synthetic_services(data)
    canvas, views = build_canvas(
        data, sel, panels=["attribution"], size=(900, 700), services=services, attribution="occlusion"
    )
    view = views["attribution"]
    img = canvas.render()
    W, b = data.heads["dense"]
    features = functools.partial(services.features, "dense")
    ref = {"margin": _margin_changes(data.images[11], int(data.labels[11]), features, W, b)}
    gh, gw = ref["margin"].shape
    assert (gh, gw) == (8, 8) and view.grid_shape() == (8, 8)
    np.testing.assert_allclose(view.maps["margin"], ref["margin"], rtol=1e-4, atol=1e-5)
    # the Δmargin tile covers the scene square (1.15, 1.2)..(2.15, 2.2); each patch's cell is drawn there in
    # the diverging colour of its change, 80% over the grey image: check every cell at its first image pixel
    to_canvas = view.viewbox.scene.node_transform(canvas.scene)
    image = data.images[11]
    h, w = image.shape[:2]
    vmax = np.abs(ref["margin"]).max()
    patch = h // gh
    for r in range(gh):
        for c in range(gw):
            u, v = (c * patch + 0.5) / w, (r * patch + 0.5) / h
            x, y = to_canvas.map([[1.15 + u, 1.2 + v]])[0, :2]
            grey = 0.6 + 0.4 * image[r * patch, c * patch].mean() / 255
            over = colormap(np.array([0.5 + 0.5 * ref["margin"][r, c] / vmax]), "diverging")[0, :3]
            expected = 0.8 * over + 0.2 * grey
            np.testing.assert_allclose(img[int(y), int(x), :3] / 255, expected, atol=0.03, err_msg=f"cell {r},{c}")
    canvas.close()


def test_attribution_says_so_when_the_probe_is_missing(data):
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    notes = {"dense": "probe file /gone/p.onnx is not available on this machine"}
    services = Services(ProbeFeatures({}, notes), ProbeExplain({}, notes))
    canvas, views = build_canvas(
        data, Selection(models=("dense",), indices=[3]), panels=["attribution"], services=services
    )
    assert "not available" in views["attribution"].message.text and views["attribution"].maps is None
    views["attribution"].set_attribution("occlusion")
    assert "not available" in views["attribution"].message.text and views["attribution"].maps is None
    canvas.close()


def test_panel_names_agree_between_the_api_and_the_layout():
    from onnx_geom.viewers import PANELS
    from onnx_geom.viewers.views import VIEWS

    assert tuple(VIEWS) == PANELS


def test_screenshot_refuses_unknown_panel_and_size(data, tmp_path):
    with pytest.raises(DataError, match="unknown panel"):
        screenshot(data, tmp_path / "x.png", panel="nope")
    with pytest.raises(DataError, match="out of range"):
        screenshot(data, tmp_path / "x.png", size=(10, 10))
    assert not (tmp_path / "x.png").exists()


@pytest.fixture(scope="module")
def _canvas(data):
    """One whole window for the module (the first frame compiles every shader: seconds on llvmpipe)."""
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.interaction import Interaction
    from onnx_geom.viewers.layout import build_canvas

    sel = Selection(models=("dense",), condition=("fog", 3))
    canvas, views = build_canvas(data, sel, size=(1280, 800), services=synthetic_services(data))
    interaction = Interaction(canvas, views)
    canvas.render()  # lays the grid out
    yield sel, canvas, views, interaction
    interaction.close()
    for view in views.values():
        view.close()
    canvas.close()


@pytest.fixture()
def live(_canvas):
    sel = _canvas[0]
    sel.indices, sel.models, sel.condition = [], ("dense",), ("fog", 3)
    return _canvas


def test_whole_window_has_six_filled_panels(live):
    sel, canvas, views, _ = live
    sel.indices = [1, 5, 9]
    img = canvas.render()
    assert img.shape == (800, 1280, 4)
    for name, view in views.items():
        box = view.viewbox
        o = canvas.scene.node_transform(box).inverse.map([[0, 0], list(box.size)])[:, :2].astype(int)
        cell = img[o[0, 1] + 2 : o[1, 1] - 2, o[0, 0] + 2 : o[1, 0] - 2, :3]
        assert (cell < 200).any(axis=-1).mean() > 0.01, name  # every panel drew something
        assert len(np.unique(cell.reshape(-1, 3), axis=0)) > 30, name


def _drag(canvas, view, a, b, mods, via=()):
    """Drag with ``mods`` held from fraction ``a`` to ``b`` of ``view``'s box (canvas events, as Qt would)."""
    box = view.viewbox
    o = canvas.scene.node_transform(box).inverse.map([[0, 0], list(box.size)])[:, :2]
    at = lambda f: tuple(o[0] + (o[1] - o[0]) * np.asarray(f))
    canvas.events.mouse_press(pos=at(a), button=1, modifiers=mods)
    for f in (*via, b):
        canvas.events.mouse_move(pos=at(f), button=1, buttons=[1], modifiers=mods)
    canvas.events.mouse_release(pos=at(b), button=1, modifiers=mods)
    return [at(f) for f in (a, *via, b)]


def test_box_in_local_view_highlights_the_same_samples_everywhere(live, data):
    from vispy.util import keys

    sel, canvas, views, _interaction = live
    local = views["local"]
    uploads = (local.uploads, views["global"].uploads)
    big = []  # spy on VisPy itself, not only our counter
    for visual in (local.cloud, views["global"].all_lines, views["global"].image):
        original = visual.set_data
        visual.set_data = lambda *a, _o=original, **k: (big.append(1), _o(*a, **k))[1]
    corners = _drag(canvas, local, (0.25, 0.25), (0.7, 0.75), (keys.SHIFT,))
    chosen = sel.indices
    geom = data.geometry("dense", "fog", 3)
    assert 0 < chosen.size < data.n_samples
    # independent check: the dragged box, mapped to data coordinates, holds exactly these samples
    box = canvas.scene.node_transform(local.viewbox.scene).map(np.asarray(corners))[:, :2]
    lo, hi = box.min(0), box.max(0)
    x, y = geom["angle_true"], geom["length"]
    np.testing.assert_array_equal(chosen, np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])))
    np.testing.assert_array_equal(local.highlighted(), chosen)
    np.testing.assert_array_equal(views["global"].highlighted(), chosen)
    np.testing.assert_array_equal(views["samples"].highlighted(), np.sort(chosen[:9]))
    assert views["attribution"].maps is not None and sel.focus == chosen[0]
    assert (local.uploads, views["global"].uploads) == uploads and not big  # big layers not re-uploaded
    sel.condition = ("gaussian_noise", 1)
    assert local.uploads == uploads[0] + 1 and views["global"].uploads == uploads[1] + 1 and len(big) == 2
    for visual in (local.cloud, views["global"].all_lines, views["global"].image):
        del visual.set_data
    np.testing.assert_array_equal(views["global"].highlighted(), chosen)


def test_lasso_selects_the_points_inside_the_drawn_polygon(live, data):
    from matplotlib.path import Path as MplPath
    from vispy.util import keys

    sel, canvas, views, _interaction = live
    local = views["local"]
    path = _drag(canvas, local, (0.2, 0.2), (0.2, 0.8), (keys.CONTROL,), via=[(0.8, 0.3), (0.6, 0.9)])
    to_scene = canvas.scene.node_transform(local.viewbox.scene)
    poly = to_scene.map(np.asarray(path))[:, :2]
    geom = data.geometry("dense", "fog", 3)
    pts = np.stack([geom["angle_true"], geom["length"]], 1)
    expected = np.flatnonzero(MplPath(poly).contains_points(pts))
    assert expected.size > 0
    np.testing.assert_array_equal(sel.indices, expected)


def test_clicks_in_table_and_model_map_choose_models_and_condition(live, data):
    from vispy.util import keys

    sel, canvas, views, _interaction = live
    table = views["table"]
    to_canvas = table.viewbox.scene.node_transform(canvas.scene)
    row = int(np.flatnonzero(table.order == data.models.index("magnitude-90"))[0])
    pos = to_canvas.map([[2.5, row + 0.5]])[0, :2]  # column 2 = gaussian_noise severity 3
    canvas.events.mouse_press(pos=pos, button=1, modifiers=())
    canvas.events.mouse_release(pos=pos, button=1, modifiers=())
    assert sel.models == ("magnitude-90",) and sel.condition == ("gaussian_noise", 3)
    sim = views["similarity"]
    pos = sim.viewbox.scene.node_transform(canvas.scene).map([sim.points[0]])[0, :2]
    canvas.events.mouse_press(pos=pos, button=1, modifiers=(keys.SHIFT,))
    canvas.events.mouse_release(pos=pos, button=1, modifiers=(keys.SHIFT,))
    assert sel.models == ("magnitude-90", data.models[0])  # shift adds a second model: shift view
    assert views["local"].pairs.visible and views["local"].ends.visible


def test_hover_shows_the_sample_under_the_mouse(live, data):
    _sel, canvas, views, interaction = live
    local = views["local"]
    geom = data.geometry("dense", "fog", 3)
    i = int(
        np.argmin(
            np.abs(geom["angle_true"] - np.median(geom["angle_true"]))
            + np.abs(geom["length"] - np.median(geom["length"]))
        )
    )
    pos = local.viewbox.scene.node_transform(canvas.scene).map([[geom["angle_true"][i], geom["length"][i]]])[0, :2]
    text = interaction.show_tooltip(pos)
    j = int(text.split()[0][1:])  # "#<index> ..." the nearest sample within 8 px
    near = np.hypot(
        *(
            local.viewbox.scene.node_transform(canvas.scene).map([[geom["angle_true"][j], geom["length"][j]]])[0, :2]
            - pos
        )
    )
    assert near <= 8 and f"margin {geom['margin'][j]:.2f}" in text
    assert interaction.tip_box.visible
    assert interaction.show_tooltip((2, 2)) == ""  # outside every panel


def test_attribution_in_the_background_draws_when_the_maps_arrive_for_the_sample_still_in_focus(data):
    from concurrent.futures import ThreadPoolExecutor

    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    sel = Selection(models=("dense",))
    services = synthetic_services(data)
    canvas, views = build_canvas(
        data, sel, panels=["attribution"], size=(600, 500), services=services, attribution="occlusion"
    )
    view = views["attribution"]
    view._poll_soon = lambda: None  # no event loop here: collect by hand below, as the timer would
    with ThreadPoolExecutor(1) as worker:
        view.background = worker
        sel.indices = [11]
        assert view.maps is None and view.message.text.startswith("computing the occlusion map of #11")
        sel.indices = [5]  # the focus moves on before the first map is back
        finish_background(view)
    assert not view._pending and view.selection.focus == 5
    W, b = data.heads["dense"]
    expected = _margin_changes(data.images[5], int(data.labels[5]), functools.partial(services.features, "dense"), W, b)
    np.testing.assert_allclose(view.maps["margin"], expected, rtol=1e-4, atol=1e-5)
    assert ("occlusion", "dense", 11) in view._cache  # the first one is kept for when it comes back into focus
    canvas.close()


def test_a_unit_without_geometry_clears_the_geometry_views(data):
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    sel = Selection(models=("dense",), condition=("fog", 3), indices=[1, 2])
    canvas, views = build_canvas(data, sel, panels=["global", "local"], size=(900, 500))
    assert views["global"].all_lines.visible and views["local"].cloud.visible
    sel.condition = ("snow", 1)  # not in this study
    for view in views.values():
        assert "no geometry" in view.status and view.highlighted().size == 0
    assert not views["global"].all_lines.visible and not views["global"].ticks.visible
    assert not views["local"].cloud.visible
    sel.condition = ("fog", 3)
    assert views["global"].all_lines.visible and views["global"].ticks.visible and not views["global"].status
    canvas.close()


def test_a_focus_beyond_the_nine_shown_thumbnails_is_brought_into_the_grid(data):
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    sel = Selection(models=("dense",), indices=list(range(20)))
    canvas, views = build_canvas(data, sel, panels=["samples"], size=(600, 500))
    samples = views["samples"]
    assert list(samples.shown) == list(range(9))
    sel.focus = 15  # e.g. picked in the local view
    assert 15 in samples.shown and samples.frame.visible and len(samples.shown) == 9
    sel.focus = 3
    assert 3 in samples.shown and samples.frame.visible
    canvas.close()


@pytest.mark.parametrize("panel", ["local", "global", "samples"])
def test_samples_the_model_gave_nan_for_are_left_out_not_a_crash(panel):
    data = ViewerData.synthetic(300, 4, models=("dense",), seed=3)
    real = data.loader

    def broken(model, corruption, severity):
        geom = dict(real(model, corruption, severity))
        for key in ("length", "angle_true", "angle_pred", "margin", "cos"):
            geom[key] = geom[key].copy()
            geom[key][:20] = np.nan
        geom["pred"], geom["correct"] = geom["pred"].copy(), geom["correct"].copy()
        geom["pred"][:20], geom["correct"][:20] = -1, False
        return geom

    data.loader = broken
    sel = Selection(models=("dense",), indices=[3, 50], condition=("fog", 3))
    img = render(data, panel=panel, selection=sel, size=(500, 400))
    assert img.shape == (400, 500, 4) and (img[..., :3] < 200).any(axis=-1).mean() > 0.01  # it drew
