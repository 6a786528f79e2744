"""The viewer at many classes, samples and models (issue 16): every class has its axis, density above a stated
number of samples, navigable axes, the class picker and colourings, the table's scale and labels, the model
map's names. Small synthetic studies: the big runs are in benchmarks/ (bench_viewer, bench_scale)."""

import numpy as np
import pytest

from onnx_geom.errors import DataError
from onnx_geom.viewers import Selection, ViewerData
from onnx_geom.viewers.classes import class_order, sample_colors
from onnx_geom.viewers.views import global_geometry as gg
from onnx_geom.viewers.views import local_geometry as lg


@pytest.fixture(scope="module")
def egl():
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    return build_canvas


def _canvas_rows(canvas, view, ys):
    """Canvas pixel rows of scene heights ``ys`` in ``view``."""
    to_canvas = view.viewbox.scene.node_transform(canvas.scene)
    return [int(np.rint(to_canvas.map([[0.0, y]])[0, 1])) for y in ys]


# -- global geometry ---------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_global_view_draws_one_axis_per_class_at_k100_not_four(egl):
    data = ViewerData.synthetic(2500, 100, models=("dense",), corruptions=(), severities=(), dim=32, seed=0)
    sel = Selection(models=("dense",))
    canvas, views = egl(data, sel, panels=["global"], size=(1100, 450))
    view = views["global"]
    img = canvas.render()
    assert view.n_axes == 100 + 3 and view.band == (0, 100)
    assert sorted(view.band_classes.tolist()) == list(range(100))  # every class, each once, in similarity order
    assert view.axis_names[-3:] == ["angle", "length", "margin"]
    # the drawn axes, counted on the picture: a tick above each axis, where no density is drawn
    rows = _canvas_rows(canvas, view, [1.005, 1.015])
    band = img[min(rows) : max(rows) + 1, :, :3].min(axis=0).min(axis=-1) < 150  # dark pixels along the row
    to_canvas = view.viewbox.scene.node_transform(canvas.scene)
    xs = np.round(to_canvas.map(np.stack([view.xs, np.ones_like(view.xs)], 1))[:, 0]).astype(int)
    assert all(band[x - 1 : x + 2].any() for x in xs)  # every axis drawn where it belongs
    span = band[xs[0] - 2 : xs[99] + 3].astype(int)
    assert (np.diff(span) == 1).sum() == 100  # and the 100 class axes are 100 separate lines
    # and the values drawn are the angles to those classes
    geom = data.geometry("dense", "clean", 0)
    c = int(view.band_classes[7])
    lo, hi = gg.axis_ranges(np.degrees(np.arccos(np.clip(geom["cos"][:, view.band_classes], -1, 1))), shared=100)[:, 0]
    expected = (np.degrees(np.arccos(np.clip(geom["cos"][:, c], -1, 1))) - lo) / (hi - lo)
    np.testing.assert_allclose(np.asarray(view.scaled[:, 7], np.float64), expected, atol=1e-5)
    canvas.close()


@pytest.mark.gui
@pytest.mark.parametrize("n", [gg.DENSITY_ABOVE, gg.DENSITY_ABOVE + 1])
def test_density_is_drawn_above_the_stated_number_of_samples(egl, n):
    data = ViewerData.synthetic(n, 5, models=("dense",), corruptions=(), severities=(), seed=1)
    canvas, views = egl(data, Selection(models=("dense",), indices=[0, 1]), panels=["global"], size=(500, 400))
    view = views["global"]
    img = canvas.render()
    dense = n > gg.DENSITY_ABOVE
    assert view.image.visible == dense and view.key.visible == dense and view.all_lines.visible != dense
    assert ("density of" in view.subtitle()) == dense
    # the density map's greens are on the picture only when the density is drawn
    green = (img[..., 1].astype(int) - img[..., 0] > 40) & (img[..., 1].astype(int) - img[..., 2] > 10)
    assert (green.mean() > 0.02) == dense
    if dense:
        assert view.counts_max > 1 and view.key.high.text == f"{view.counts_max:,}"
    canvas.close()


def _brute_density(scaled, steps, rows, gaps):
    """The density's definition, sample by sample (independent of the histogram shortcut)."""
    top = rows - 1
    offsets = np.concatenate([[0], np.cumsum(np.asarray(gaps) * steps)])
    out = np.zeros((rows, offsets[-1] + 1), np.int64)
    for y in scaled:
        q = np.clip(np.rint(np.nan_to_num(y) * top), -top, 2 * top)
        for k in range(len(y) - 1):
            if not (np.isfinite(y[k]) and np.isfinite(y[k + 1])):
                continue
            cols = gaps[k] * steps
            for s in range(cols):
                r = int(np.rint((q[k] * cols + (q[k + 1] - q[k]) * s) / cols))
                if 0 <= r <= top:
                    out[r, offsets[k] + s] += 1
        if np.isfinite(y[-1]) and 0 <= q[-1] <= top:
            out[int(q[-1]), -1] += 1
    return out


def test_line_density_from_pair_histograms_equals_drawing_each_line():
    rng = np.random.default_rng(4)
    scaled = rng.uniform(-0.6, 1.6, (300, 5)).astype(np.float32)
    scaled[5, 2] = np.nan
    scaled[6, 0] = 7.0  # far outside: clipped to one panel height
    gaps = np.array([1, 1, 3, 2])
    fast = gg.density_image(scaled, steps=3, rows=16, gaps=gaps)
    np.testing.assert_array_equal(fast, _brute_density(scaled, 3, 16, gaps))


@pytest.mark.gui
def test_class_axes_at_k1000_are_a_band_moved_and_zoomed_from_the_strip(egl):
    data = ViewerData.synthetic(400, 1000, models=("dense",), corruptions=(), severities=(), dim=24, seed=2)
    sel = Selection(models=("dense",))
    canvas, views = egl(data, sel, panels=["global"], size=(900, 450))
    view = views["global"]
    order = data.class_order()
    assert view.band == (0, 100) and view.strip.visible and "by similarity" in view.subtitle()
    assert view.subtitle().startswith("axes 1-100 of 1,000")
    span = view.band[1] - 1
    assert view.pick_point(np.array([0.5 * span, np.mean(gg.STRIP)]), np.array([0.1, 0.01]))  # the strip's middle
    assert view.band == (450, 100)
    # shift+drag over the strip: exactly the classes dragged over
    lo, hi = np.array([0.1 * span, gg.STRIP[0]]), np.array([0.13 * span, gg.STRIP[1]])
    first, last = view._strip_position(lo[0]), view._strip_position(hi[0])
    assert view.pick_box(lo, hi)
    assert view.band == (first, last - first + 1) and 25 < view.band[1] < 35
    # picking a class brings its axis into the band, marked
    far = int(order.order[900])
    sel.classes = [far]
    assert far in view.band_classes and view.marks.visible
    assert view.scaled.shape[1] == view.n_axes and len(view.names.text) <= view.n_axes  # the band's columns were read
    assert "of 1,000" in view.subtitle()
    canvas.close()


def test_the_global_view_reads_only_the_band_of_cosines():
    data = ViewerData.synthetic(300, 400, models=("dense",), corruptions=(), severities=(), seed=3)
    asked = []
    real = data.loader

    class Geometry(dict):
        def columns(self, key, cols):
            asked.append(len(cols))
            return np.asarray(dict.__getitem__(self, key))[:, cols]

        def __getitem__(self, key):
            if key == "cos":
                raise AssertionError("the whole (N, K) cosines were read")
            return dict.__getitem__(self, key)

    data.loader = lambda *unit: Geometry(real(*unit))
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers.layout import build_canvas

    canvas, _views = build_canvas(data, Selection(models=("dense",)), panels=["global", "local"], size=(600, 300))
    assert asked == [gg.BAND]
    canvas.close()


# -- classes: order, groups, picker, colours ---------------------------------------------------------------------
def test_class_order_puts_alike_class_directions_side_by_side_and_groups_them():
    rng = np.random.default_rng(5)
    families, per = 6, 7
    parents = rng.standard_normal((families, 48))
    member = rng.permutation(np.repeat(np.arange(families), per))
    W = parents[member] + 0.3 * rng.standard_normal((families * per, 48))
    names = [f"c{i}" for i in range(len(W))]
    order = class_order(W, names, source="dense")
    assert order.how == "similarity of dense's class directions"
    runs = member[order.order]
    assert (np.diff(runs) != 0).sum() == families - 1  # each family one run of neighbours
    assert order.n_groups == families  # round(sqrt(42)) = 6 groups: the families
    assert len({tuple(np.unique(member[order.groups == g])) for g in range(families)}) == families
    assert (np.diff(order.groups[order.order]) >= 0).all()  # numbered along the order
    few = class_order(W[:10], names[:10])
    assert few.how == "class number" and few.order.tolist() == list(range(10))


def test_class_picker_grammar():
    W = np.random.default_rng(1).standard_normal((20, 8))
    names = [f"dog {i}" if i < 3 else f"cat {i}" if i < 6 else f"n{i:02d}" for i in range(20)]
    order = class_order(W, names)
    assert order.parse("dog").tolist() == [0, 1, 2]  # every name that holds the text
    assert order.parse("cat 4, 7").tolist() == [4, 7]
    assert order.parse("10-12").tolist() == [10, 11, 12]
    assert order.parse(f"g{order.n_groups}").tolist() == sorted(order.members(order.n_groups - 1).tolist())
    assert order.parse(" ").tolist() == []
    with pytest.raises(DataError, match="no class matches 'zebra'"):
        order.parse("dog, zebra")
    assert order.describe([0, 1]) == "dog 0, dog 1"
    assert order.describe(range(20)).endswith("classes")


def test_sample_colours_follow_the_mode_and_the_picked_classes():
    order = class_order(None, [f"c{i}" for i in range(30)])
    labels = np.arange(6)
    geom = {
        "correct": np.array([1, 0, 1, 0, 1, 1], bool),
        "margin": np.array([-2.0, -1, 0, 1, 2, np.nan]),
        "pred": np.array([0, 1, 2, -1, 4, 5]),
    }
    colours, legend = sample_colors("auto", labels=labels, geom=geom, order=order)  # 30 classes: correctness
    assert [t for t, _ in legend] == ["correct", "wrong"]
    np.testing.assert_array_equal(colours[1], legend[1][1])
    np.testing.assert_array_equal(colours[0], legend[0][1])
    colours, legend = sample_colors("margin", labels=labels, geom=geom, order=order)
    assert colours[0, 0] > colours[0, 2] and colours[4, 2] > colours[4, 0]  # orange below 0, purple above
    colours, legend = sample_colors("auto", labels=labels, geom=geom, order=order, picked=[2, 4])
    assert [t for t, _ in legend] == ["c2", "c4", "other classes"]
    assert np.allclose(colours[[0, 1, 3, 5]], colours[0]) and not np.allclose(colours[2], colours[4])
    with pytest.raises(DataError, match="unknown colouring"):
        sample_colors("rainbow", labels=labels, geom=geom, order=order)


def test_selection_classes_and_colouring_fire_once_per_change():
    sel = Selection(models=("a",), classes=[3, 1])
    seen = []
    sel.events.classes.connect(lambda s: seen.append(("classes", s.classes.tolist())))
    sel.events.color_by.connect(lambda s: seen.append(("color_by", s.color_by)))
    sel.classes = [1, 3, 3]
    sel.color_by = "auto"
    sel.classes = [2]
    sel.color_by = "margin"
    assert seen == [("classes", [2]), ("color_by", "margin")]
    with pytest.raises(DataError, match="unknown colouring"):
        sel.color_by = "rainbow"
    with pytest.raises(DataError):
        Selection(color_by="nope")


# -- local geometry ----------------------------------------------------------------------------------------------
def test_density_cells_hold_the_mean_colour_and_an_opacity_by_count():
    points = np.array([[0.1, 0.1], [0.15, 0.12], [0.9, 0.9], [5.0, 5.0]], np.float32)
    colours = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]], np.float32)
    image, top = lg.density_rgba(points, colours, (np.zeros(2), np.ones(2)), (2, 2))
    assert top == 2 and image.shape == (2, 2, 4)
    np.testing.assert_allclose(image[0, 0, :3], [0.5, 0, 0.5])  # two points: their mean colour, fully opaque
    assert image[0, 0, 3] == pytest.approx(1.0) and 0.2 < image[1, 1, 3] < 1.0 and image[0, 1, 3] == 0


@pytest.mark.gui
def test_local_view_at_many_classes_colours_by_correctness_then_picked_classes(egl, monkeypatch):
    monkeypatch.setattr(lg, "DENSITY_ABOVE", 1500)
    data = ViewerData.synthetic(2000, 100, models=("dense",), corruptions=(), severities=(), dim=32, seed=6)
    sel = Selection(models=("dense",))
    canvas, views = egl(data, sel, panels=["local"], size=(500, 400))
    local = views["local"]
    assert list(local.legend.text.text) == ["correct", "wrong"] and "by correctness" in local.subtitle()
    assert local.density.visible and local.key.visible and not local.cloud.visible  # 2,000 > 1,500: density
    sel.classes = data.class_order().parse("class 7, class 9")
    assert list(local.legend.text.text) == ["class 7", "class 9", "other classes"]
    mine = np.isin(data.labels, [7, 9])
    assert local.cloud.visible and len(local.cloud._data) == mine.sum()  # picked classes' samples as points on top
    assert "class 7, class 9" in local.subtitle()
    sel.classes, sel.color_by = [], "group"
    assert local.legend.text.text[0] == "predicted in group 1"
    img = canvas.render()
    assert (img[..., :3] < 200).any(axis=-1).mean() > 0.05
    canvas.close()


# -- table and model map -----------------------------------------------------------------------------------------
def _many_models(m):
    models = [f"pruned-{i:02d}" for i in range(m)]
    from onnx_geom.corruptions import CORRUPTIONS

    return ViewerData.synthetic(200, 10, models=models, corruptions=list(CORRUPTIONS), severities=(1, 2, 3, 4, 5))


@pytest.mark.gui
def test_table_of_100_models_x_96_conditions_names_rows_it_has_room_for_and_switches_scale(egl):
    from onnx_geom.viewers.colors import colormap

    data = _many_models(100)
    sel = Selection(models=("pruned-42",), condition=("fog", 3))
    canvas, views = egl(data, sel, panels=["table"], size=(700, 500))
    table = views["table"]
    canvas.render()
    assert table.values.shape == (100, 96)
    named = list(table.row_text.text)
    assert 10 < len(named) < 100 and "pruned-42" in named  # the selected model's row always named
    ys = sorted(p[1] for p in table.row_text.pos)
    row_px = table.viewbox.size[1] / abs(table.viewbox.camera.rect.height)
    assert min(np.diff(ys)) * row_px >= 10 - 1e-6  # written names at least 10 pixels apart
    assert "pruned-42, fog 3: " in table.subtitle() and table.subtitle().endswith("%")
    assert table.key.low.text == "0%" and table.key.high.text == "100%"
    np.testing.assert_allclose(table.shade(np.array([0.0, 0.5, 1.0])), [0, 0.5, 1])
    # a click on the key: the relative scale, its ends said with the decimals they need
    centre = np.array([(table.key._box[0] + table.key._box[2]) / 2, (table.key._box[1] + table.key._box[3]) / 2, 0, 1])
    xy = table.viewbox.node_transform(table.viewbox.scene).map(centre)[:2]
    assert table.pick_point(xy, np.array([0.1, 0.1])) and table.scale == "relative"
    assert "RELATIVE" in table.key.caption.text and table.key.low.text != table.key.high.text
    lo, hi = table.range
    np.testing.assert_allclose(table.shade(np.array([lo, hi])), [0, 1])
    cell = table.image._data[6, 6, :3]  # the first cell's colour, on the relative scale now
    np.testing.assert_allclose(cell, colormap(np.array([table.shade(table.values[0, 0])]))[0, :3], atol=1e-6)
    assert "accuracy" in table.hover(np.array([3.5, 10.5]), np.array([0.1, 0.1]))
    canvas.close()


@pytest.mark.gui
def test_model_map_of_100_models_writes_the_names_that_fit_nearest_first(egl):
    from onnx_geom.viewers.views.similarity import place_some_labels

    data = _many_models(100)
    sel = Selection(models=("pruned-10",))
    canvas, views = egl(data, sel, panels=["similarity"], size=(600, 450))
    view = views["similarity"]
    canvas.render()
    shown = list(view.labels.text)
    assert 5 < len(shown) < 100 and "pruned-10" in shown and f"{len(shown)} of 100 names" in view.subtitle()
    assert "pruned-99" in view.hover(view.points[99], np.array([1e-3, 1e-3]))  # the others on hover
    # no two written names overlap, and none covers a dot (the placement's own rule, checked apart from it)
    points = np.random.default_rng(0).normal(size=(60, 2))
    widths = np.full(60, 0.6)
    centres, written = place_some_labels(points, widths, 0.15, 0.05, priority=np.arange(60)[::-1], always=1)
    assert written[59] and 0 < written.sum() < 60
    half = np.stack([widths / 2, np.full(60, 0.075)], 1)
    idx = np.flatnonzero(written)
    for a in idx:
        for b in idx:
            if a < b:
                assert not (np.abs(centres[a] - centres[b]) < half[a] + half[b]).all()
        others = np.delete(points, a, axis=0)
        assert not (np.abs(others - centres[a]) < half[a]).all(axis=1).any()
    canvas.close()
