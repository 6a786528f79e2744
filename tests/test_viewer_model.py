"""The viewer's Qt/VisPy-free parts: selection events, data model, colours, picking and density maths."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from onnx_geom.errors import DataError, StudyError
from onnx_geom.viewers.attribution import occlusion
from onnx_geom.viewers.colors import class_colors, colormap
from onnx_geom.viewers.data import ViewerData
from onnx_geom.viewers.selection import Selection


def test_selection_setters_fire_once_per_real_change():
    sel = Selection(models=("a",))
    log = []
    for name in ("indices", "focus", "models", "condition", "shift_from_clean"):
        getattr(sel.events, name).connect(lambda s, name=name: log.append(name))
    sel.indices = [5, 2, 5]
    assert sel.indices.tolist() == [2, 5] and sel.focus == 2
    assert log == ["indices", "focus"]
    sel.indices = np.array([2, 5])  # same set, other container: nothing
    sel.models = ["a"]
    sel.condition = ("clean", 0)
    sel.shift_from_clean = False
    assert log == ["indices", "focus"]
    sel.indices = [5, 9]  # focus 2 left the selection -> first of the new one
    assert sel.focus == 5 and log[-2:] == ["indices", "focus"]
    sel.indices = [9, 5, 7]  # focus 5 still selected: focus unchanged
    assert sel.focus == 5 and log[-1] == "indices"
    sel.models = ("a", "b", "c")  # at most two
    assert sel.models == ("a", "b")
    with pytest.raises(ValueError):
        sel.indices.__setitem__(0, 1)  # read-only: views cannot change it behind the selection's back


def test_linked_listeners_that_set_back_do_not_loop():
    """Two views that mirror each other (napari's link pattern): each sets the other, no infinite recursion."""
    a, b = Selection(), Selection()
    calls = []
    a.events.indices.connect(lambda s: (calls.append("a"), setattr(b, "indices", s.indices)))
    b.events.indices.connect(lambda s: (calls.append("b"), setattr(a, "indices", s.indices)))
    a.indices = [1, 2]
    assert calls == ["a", "b"] and b.indices.tolist() == [1, 2]


def test_shift_pair_two_models_or_clean_to_corruption():
    sel = Selection(models=("dense",), condition=("fog", 3))
    assert sel.shift_pair() is None
    sel.shift_from_clean = True
    assert sel.shift_pair() == (("dense", "clean", 0), ("dense", "fog", 3))
    sel.models = ("dense", "pruned")
    assert sel.shift_pair() == (("dense", "fog", 3), ("pruned", "fog", 3))


def test_synthetic_data_accuracy_matches_its_own_predictions():
    data = ViewerData.synthetic(300, 4, models=("dense", "magnitude-90"), seed=1)
    assert data.accuracy.shape == (2, 2, 2) and data.conditions[0] == ("clean", 0)
    for i, m in enumerate(data.models):
        for j, c in enumerate(data.corruptions):
            for k, s in enumerate(data.severities):
                g = data.geometry(m, c, s)
                # independent of the stored `correct`: recount from the predictions and the labels
                assert data.accuracy[i, j, k] == pytest.approx(np.mean(g["pred"] == data.labels))
    assert data.tags["magnitude-90"] == {"method": "magnitude", "sparsity": 0.9}
    assert data.embedding.shape == (2, 2) and len(data.mst) == 1
    thumbs = data.thumbnails([7, 3])
    assert thumbs.shape == (2, 16, 16, 3) and np.array_equal(thumbs[1], data.images[3])
    with pytest.raises(StudyError, match="no geometry"):
        data.geometry("dense", "snow", 1)


def test_geometry_cache_is_bounded():
    data = ViewerData.synthetic(50, 3, seed=0)
    data.cache_units = 2
    for m in data.models:
        data.geometry(m, "clean", 0)
    assert len(data._cache) == 2


def test_class_colours_are_distinct_and_maps_interpolate():
    for k in (2, 8, 10, 20):
        rgb = class_colors(k)[:, :3]
        d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(k)
        assert d.min() > 0.03, k
    # viridis endpoints and midpoint (matplotlib's published values)
    import matplotlib

    ref = matplotlib.colormaps["viridis"]
    for v in (0.0, 0.5, 1.0):
        np.testing.assert_allclose(colormap(np.array([v]))[0, :3], ref(v)[:3], atol=0.02)
    assert colormap(np.array([np.nan]))[0, :3].tolist() == pytest.approx([0.85] * 3)


def test_points_in_polygon_matches_matplotlib():
    from onnx_geom.viewers.views.base import points_in_polygon  # imports vispy's scene, not a GL context

    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (5000, 2))
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    poly = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(0.3, 1, (12, 1))  # star-ish, concave
    np.testing.assert_array_equal(points_in_polygon(pts, poly), MplPath(poly).contains_points(pts))


def test_density_image_counts_every_polyline_once_per_column():
    from onnx_geom.viewers.views.global_geometry import axis_ranges, density_image

    scaled = np.array([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]], np.float32)
    img = density_image(scaled, steps=4, rows=5)
    assert img.shape == (5, 9) and (img.sum(axis=0) == 2).all()
    # sample 0 climbs 0 -> 1 over the first gap: rows 0, 1, 2, 3 (0.75 * 4 = 3) at columns 0..3
    assert [int(np.flatnonzero(img[:, c])[0]) for c in range(4)] == [0, 1, 2, 3]
    assert img[4, 4] == 2 and img[0, 8] == 1 and img[2, 8] == 1
    # a line leaving 0..1 is dropped where it is outside, not piled up on the frame
    out = density_image(np.array([[0.5, 2.0]], np.float32), steps=4, rows=5)
    # y at the 4 columns: 0.5, 0.875, 1.25, 1.625 -> rows 2 and 4 (3.5 rounds to even), then outside
    assert out.sum() == 2 and out[2, 0] == 1 and out[4, 1] == 1 and out[:, 4].sum() == 0
    values = np.arange(20, dtype=float).reshape(10, 2) * [1, 10]
    ranges = axis_ranges(values, shared=2)
    assert ranges[0, 0] == ranges[0, 1] and ranges[1, 0] == ranges[1, 1]


def _manual_geometry(f, W, b, y):
    """Written independently of onnx_geom.geometry: loops, no vectorised margin."""
    cos = (W @ f) / (np.linalg.norm(W, axis=1) * np.linalg.norm(f))
    margin = min(((W[y] - W[j]) @ f + b[y] - b[j]) / np.linalg.norm(W[y] - W[j]) for j in range(len(b)) if j != y)
    return {"angle_true": np.degrees(np.arccos(np.clip(cos[y], -1, 1))), "length": np.linalg.norm(f), "margin": margin}


def test_occlusion_matches_a_manual_loop():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    A = rng.standard_normal((12 * 10 * 3, 5))
    fn = lambda x: (x.reshape(len(x), -1) / 255.0) @ A
    W, b = rng.standard_normal((4, 5)), rng.standard_normal(4)
    maps = occlusion(image, 2, fn, W, b, patch=4, fill=100)
    assert maps["margin"].shape == (3, 3)  # ceil(12/4) x ceil(10/4)
    base = _manual_geometry(fn(image[None])[0], W, b, 2)
    for r in range(3):
        for c in range(3):
            occluded = image.copy()
            occluded[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 100
            g = _manual_geometry(fn(occluded[None])[0], W, b, 2)
            for q in ("angle_true", "length", "margin"):
                assert maps[q][r, c] == pytest.approx(g[q] - base[q], rel=1e-3, abs=1e-3), (q, r, c)
    with pytest.raises(DataError, match="uint8"):
        occlusion(image.astype(float), 0, fn, W, b)


def test_data_model_and_selection_never_import_qt_or_vispy():
    code = (
        "import sys, onnx_geom.viewers, onnx_geom.viewers.data, onnx_geom.viewers.selection, "
        "onnx_geom.viewers.attribution, onnx_geom.viewers.colors;"
        "from onnx_geom.viewers import ViewerData; ViewerData.synthetic(20, 3);"
        "bad=[m for m in sys.modules if m.startswith(('vispy','PySide6'))]; print(bad); sys.exit(bool(bad))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("models", "expected"), [(("dense", "magnitude-90", "snip-90"), "magnitude-90"), (("dense",), "dense")]
)
def test_first_view_opens_on_the_first_compared_models_worst_condition_and_the_samples_it_flips(models, expected):
    """The first model that is not the reference (dense), or the reference when it is alone."""
    from onnx_geom.viewers.layout import initial_selection

    data = ViewerData.synthetic(300, 4, models=models, seed=1)
    assert data.reference == "dense"
    recount = {
        (c, s): np.mean(data.geometry(expected, c, s)["pred"] == data.labels)
        for c in data.corruptions
        for s in data.severities
    }
    sel = initial_selection(data)
    assert sel.models == (expected,) and sel.condition == min(recount, key=recount.get)
    clean_ok = data.geometry(expected, "clean", 0)["pred"] == data.labels
    wrong_now = data.geometry(expected, *sel.condition)["pred"] != data.labels
    assert 0 < len(sel.indices) <= 8 and (clean_ok & wrong_now)[sel.indices].all()


def _boxes_touching(centres, half, points):
    """Brute force: pairs of label boxes that overlap, and (label, point) pairs where a box covers a point."""
    n = len(centres)
    boxes = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if abs(centres[i][0] - centres[j][0]) < half[i][0] + half[j][0]
        and abs(centres[i][1] - centres[j][1]) < half[i][1] + half[j][1]
    ]
    covered = [
        (i, k)
        for i in range(n)
        for k in range(len(points))
        if k != i
        and abs(points[k][0] - centres[i][0]) <= half[i][0]
        and abs(points[k][1] - centres[i][1]) <= half[i][1]
    ]
    return boxes, covered


def test_model_map_labels_avoid_each_other_other_dots_and_the_panel_edge():
    from onnx_geom.viewers.views.similarity import label_positions

    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(4) * 10.0, np.arange(3) * 4.0), -1).reshape(-1, 2)
    points = np.concatenate([grid, grid + rng.uniform(-0.1, 0.1, grid.shape)])  # 12 near-coincident pairs
    widths = rng.uniform(2.0, 4.0, len(points))
    centres = label_positions(points, widths, 1.0, 0.5)
    half = np.stack([widths / 2, np.full(len(points), 0.5)], 1)
    assert _boxes_touching(centres, half, points) == ([], [])
    # every label sits beside its own dot, `gap` from it on one axis and centred on the other
    offset = np.abs(centres - points)
    beside = np.isclose(offset[:, 0], 0.5 + half[:, 0]) & np.isclose(offset[:, 1], 0)
    above_below = np.isclose(offset[:, 1], 0.5 + half[:, 1]) & np.isclose(offset[:, 0], 0)
    assert (beside | above_below).all()
    # a dot at the right edge of the panel gets its label on the left
    edge = label_positions(np.array([[9.5, 5.0]]), np.array([3.0]), 1.0, 0.5, bounds=(np.zeros(2), np.full(2, 10.0)))
    assert edge[0, 0] == pytest.approx(9.5 - 0.5 - 1.5)


def test_thumbnails_fall_back_to_clean_images_when_the_condition_cannot_be_remade():
    data = ViewerData.synthetic(40, 3, seed=2)  # no sweep profile: corrupted images came from elsewhere
    assert data.remakes(("clean", 0)) and not data.remakes(("fog", 2))
    assert np.array_equal(data.thumbnails([5, 1], ("fog", 2)), data.images[[5, 1]])
