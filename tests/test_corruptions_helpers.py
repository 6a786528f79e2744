"""The building blocks against independent implementations (OpenCV, scikit-image, Pillow, scipy, plain loops)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from onnx_geom.corruptions import _color, _common, _filters, _fractal, _linear, _resize, _spatter, _warp, corrupt, noise
from onnx_geom.corruptions.blur import _scramble
from tests._corruption_data import smooth_images


def test_saturation_is_scikit_images_hsv_round_trip_bit_for_bit(skimage_color):
    skcolor = skimage_color
    rgb = np.random.default_rng(0).integers(0, 256, (200_000, 3)) / 255.0
    rgb[:500] = rgb[:500, :1]  # greys
    rgb[500:1000, 1] = rgb[500:1000, 0]  # ties between channels
    rgb[1000:1500, 2] = rgb[1000:1500, 1]
    rgb[1500:1600] = 0.0
    rgb = np.vstack([rgb, np.random.default_rng(1).random((20_000, 3))])
    for scale, shift in [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0), (2, 0.1), (5, 0.1), (20, 0.2), (2.5, 0.2)]:
        hsv = skcolor.rgb2hsv(rgb)
        hsv[:, 1] = np.clip(hsv[:, 1] * scale + shift, 0, 1)
        expected = skcolor.hsv2rgb(hsv)
        assert (expected == _color.saturate_planes(np.ascontiguousarray(rgb.T), scale, shift).T).all()
    assert (_color.saturate_planes(np.ascontiguousarray(rgb.T), 2.5, 0.2, channels=1)[0] == expected[:, 0]).all()


@pytest.mark.parametrize("resample", [Image.Resampling.BOX, Image.Resampling.NEAREST])
@pytest.mark.parametrize("channels", [1, 3])
def test_batch_resize_is_pillow_image_by_image(resample, channels):
    x = smooth_images(5, 32, 30, channels)
    for size in ((19, 20), (30, 32), (32, 32), (41, 13)):
        ours = _resize.resize(x, size, resample)
        for im, got in zip(x, ours, strict=True):
            pil = Image.fromarray(im[..., 0] if channels == 1 else im).resize(size, resample)
            assert (got[..., 0] if channels == 1 else got).tolist() == np.asarray(pil).tolist()


@pytest.mark.parametrize("delta", [1, 2, 4])
def test_glass_scramble_equals_the_sequential_loop(delta):
    rng = np.random.default_rng(delta)
    x = rng.integers(0, 256, (4, 24, 20, 3), dtype=np.uint8)
    hs, ws = np.arange(24 - delta, delta, -1), np.arange(20 - delta, delta, -1)
    d = rng.integers(-delta, delta, (4, len(hs), len(ws), 2))
    expected = x.copy()
    for n in range(4):
        for i, h in enumerate(hs):
            for j, w in enumerate(ws):
                expected[n, h, w] = expected[n, h + d[n, i, j, 1], w + d[n, i, j, 0]]
    assert (_scramble(x, hs, ws, d[..., 1], d[..., 0]) == expected).all()


def test_plasma_fractal_is_the_reference_given_the_same_uniforms(monkeypatch, imagecorruptions_corruptions):
    ref = imagecorruptions_corruptions
    u = np.random.default_rng(1).uniform(-1, 1, (1, _fractal.draws_needed(32)))
    used = [0]

    def uniform(low, high, shape):  # the reference draws U(-wibble, wibble): hand it ours, scaled
        k = int(np.prod(shape))
        out = u[0, used[0] : used[0] + k].reshape(shape) * high
        used[0] += k
        return out

    monkeypatch.setattr(ref.np.random, "uniform", uniform)
    expected = ref.plasma_fractal(32, 1.7)
    assert used[0] == u.shape[1]
    assert np.allclose(_fractal.plasma_fractal(u, 32, 1.7)[0], expected, atol=1e-6)


def test_disk_kernel_is_the_references(imagecorruptions_corruptions):
    ref = imagecorruptions_corruptions
    for radius, alias in [(0.3, 0.4), (1.5, 0.1), (3, 0.1), (8, 0.5), (10, 0.5)]:
        assert np.allclose(_filters.disk_kernel(radius, alias), ref.disk(radius, alias), atol=1e-7)


def test_linear_operators_equal_scipy():
    x = smooth_images(3, 30, 26)
    f = x.astype(np.float64)
    blur = _linear.apply(x, _linear.gaussian_operator(30, 26, 1.7))
    assert np.allclose(blur, ndimage.gaussian_filter(f, (0, 1.7, 1.7, 0), mode="nearest"), atol=1e-4)
    kernel = _filters.disk_kernel(4, 0.5)
    disk = _linear.apply(x, _linear.disk_terms(kernel, 30, 26, "mirror"))
    # the weights are integers / 2**20 (exact arithmetic): about 1e-4 grey levels off the float result
    assert np.allclose(disk, ndimage.correlate(f, kernel[None, :, :, None], mode="mirror"), atol=1e-3)
    for factor, centre in [(1.07, True), (1.26, False)]:
        op = _linear.operator(
            _linear.clipped_zoom_matrix(30, factor, centre=centre)[None],
            _linear.clipped_zoom_matrix(26, factor, centre=centre)[None],
        )
        ch, cw = int(np.ceil(30 / factor)), int(np.ceil(26 / factor))
        t, left = (30 - ch) // 2, (26 - cw) // 2
        z = ndimage.zoom(f[:, t : t + ch, left : left + cw], (1, factor, factor, 1), order=1)
        t0, t1 = ((z.shape[1] - 30) // 2, (z.shape[2] - 26) // 2) if centre else (0, 0)
        assert np.allclose(_linear.apply(x, op), z[:, t0 : t0 + 30, t1 : t1 + 26], atol=1e-4)


def test_canny_and_equalize_hist_match_opencv(cv2):
    rng = np.random.default_rng(0)
    liquid = ndimage.gaussian_filter(rng.normal(0.65, 0.3, (12, 32, 32)), (0, 1, 1), mode="nearest")
    liquid[liquid < 0.69] = 0
    layer = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    edges = _spatter.canny(layer, 50, 150)
    assert edges.any()
    for ours, img in zip(edges, layer, strict=True):
        assert (ours == (cv2.Canny(img, 50, 150) > 0)).all()
    levels = rng.integers(0, 21, (6, 32, 32)).astype(np.uint8)
    levels[0] = 7  # a flat image
    for ours, img in zip(_spatter.equalize_hist(levels), levels, strict=True):
        assert (ours == cv2.equalizeHist(img)).all()


def test_affine_warp_matches_opencv_within_its_fixed_point(cv2):
    x = smooth_images(3, 32, 32).astype(np.float32) / 255
    moved = _warp.affine_points(32, 32)[None] + np.random.default_rng(0).uniform(-2.5, 2.5, (3, 3, 2)).astype(
        np.float32
    )
    ours = _warp.affine_warp(x, moved)
    for i in range(3):
        m = cv2.getAffineTransform(_warp.affine_points(32, 32), moved[i])
        ref = cv2.warpAffine(x[i], m, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
        assert np.abs(ours[i] - ref).max() < 0.02  # OpenCV rounds coordinates to 1/32 pixel


def test_cifar_constants_by_hand():
    grey = np.full((64, 32, 32, 3), 128, np.uint8)
    noise = corrupt(grey, "gaussian_noise", 1, profile="cifar", rng=0).astype(float) - 128
    assert abs(noise.std() - 0.04 * 255) < 0.1  # std 0.04 in [0, 1] units, truncation adds no spread
    x = np.zeros((1, 16, 16, 1), np.uint8)
    x[0, :8] = 200  # mean 100: contrast 0.75 maps 200 -> 175, 0 -> 25
    assert sorted(np.unique(corrupt(x, "contrast", 1, profile="cifar")).tolist()) == [25, 175]
    assert int(corrupt(np.zeros((1, 16, 16, 1), np.uint8), "brightness", 5, profile="cifar").max()) == int(0.3 * 255)


def test_cifar_pixelate_is_box_down_and_box_up():
    x = smooth_images(3)
    ours = corrupt(x, "pixelate", 4, profile="cifar")
    for im, got in zip(x, ours, strict=True):
        small = Image.fromarray(im).resize((24, 24), Image.Resampling.BOX)
        assert (np.asarray(small.resize((32, 32), Image.Resampling.BOX)) == got).all()


def test_sample_draws_are_keyed_by_index_whatever_the_runs():
    whole = _common.sample_draws(3, "snow", 2, range(12), 12, 7)
    scattered = _common.sample_draws(3, "snow", 2, [9, 2, 3, 4, 11], 5, 7)
    assert (scattered == whole[[9, 2, 3, 4, 11]]).all()
    # a fixed word count per sample: the Philox blocks of index i are i * B + 1 .. i * B + B (4 words a block)
    philox = np.random.Philox(
        counter=4 * 2,
        key=int.from_bytes(
            np.random.SeedSequence(3, spawn_key=(7, 2)).generate_state(2, np.uint64).tobytes(), "little"
        ),
    )
    assert (philox.random_raw(8)[:7] == whole[4]).all()
    assert (_common.sample_draws(4, "snow", 2, None, 2, 7) != whole[:2]).all()


def test_box_muller_normals_have_normal_moments_and_tails():
    words = _common.sample_draws(0, "gaussian_noise", 1, None, 4, 250_001)
    z = _common.normals(words, 500_001).ravel()
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1) < 0.005
    # fractions beyond 1, 2, 3 sigma against the exact normal tails (about 4.5 standard errors)
    for k in (1, 2, 3):
        expected = 2 * stats.norm.sf(k)
        assert abs((np.abs(z) > k).mean() - expected) < 4.5 * np.sqrt(expected * (1 - expected) / z.size)


@pytest.mark.parametrize("c", [3, 60, 500])
def test_poisson_inversion_has_the_poisson_distribution(c):
    levels = np.repeat(np.array([0, 1, 37, 128, 255], np.uint8), 40_000)
    u = _common.uniforms(_common.sample_draws(1, "shot_noise", 1, None, 1, levels.size))[0]
    counts = noise.poisson_counts(levels, c, u)
    assert (counts[levels == 0] == 0).all()
    for level in (1, 37, 128, 255):
        k = counts[levels == level]
        lam = level / 255 * c
        # the empirical CDF against scipy's at the quartiles of the distribution (Kolmogorov-like, 5 sigma)
        for q in stats.poisson.ppf([0.25, 0.5, 0.75], lam):
            p = stats.poisson.cdf(q, lam)
            assert abs((k <= q).mean() - p) < 5 * np.sqrt(p * (1 - p) / k.size) + 1e-12
        assert abs(k.mean() - lam) < 5 * np.sqrt(lam / k.size)
    # the guide table only starts the search: the answer is the least k with u < CDF(k), by brute force
    cdf, _ = noise.poisson_table(float(c))
    brute = (cdf[levels[::997].astype(int)] <= u[::997, None]).sum(axis=1)
    assert (counts[::997] == brute).all()


def test_capped_distance_is_the_per_image_distance_by_brute_force():
    edges = np.random.default_rng(2).random((5, 20, 17)) < 0.01
    edges[1] = False  # no edge: the cap everywhere
    edges[3] = False
    edges[3, 0, 0] = True  # one far corner: distances beyond the cap are capped
    got = _spatter.capped_distance(edges, 20)
    ys, xs = np.mgrid[:20, :17]
    for image, dist in zip(edges, got, strict=True):
        ey, ex = np.nonzero(image)
        d = np.sqrt((ys[..., None] - ey) ** 2 + (xs[..., None] - ex) ** 2).min(axis=-1, initial=np.inf)
        assert np.allclose(dist, np.minimum(d, 20))
    assert (_spatter.capped_distance(np.zeros((2, 16, 16), bool), 20) == 20).all()


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest"])
def test_bilinear_sampling_equals_scipy_far_outside_the_image(mode):
    rng = np.random.default_rng(5)
    x = rng.random((3, 17, 21, 2))
    ys, xs = rng.uniform(-40, 60, (2, 3, 17, 21))
    got = _warp.sample(x, ys, xs, mode=mode)
    for i in range(3):
        for c in range(2):
            expected = ndimage.map_coordinates(x[i, ..., c], [ys[i], xs[i]], order=1, mode=mode)
            assert np.allclose(got[i, ..., c], expected, atol=1e-12)


def test_edge_pad_is_numpys():
    x = np.random.default_rng(6).random((2, 3, 5, 7))
    for pads in [(0, 0, 0, 0), (3, 0, 0, 4), (0, 2, 5, 0), (6, 1, 2, 9)]:
        top, bottom, left, right = pads
        expected = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="edge")
        assert (_filters._edge_pad(x, *pads) == expected).all()


@pytest.mark.parametrize("factor", [1.25, 2.5, 3.0, 4.5])
def test_clipped_zoom_is_scipys_zoom_of_the_centre(factor):
    x = np.random.default_rng(7).random((3, 16, 21, 2)).astype(np.float32)
    ch, cw = int(np.ceil(16 / factor)), int(np.ceil(21 / factor))
    top, left = (16 - ch) // 2, (21 - cw) // 2
    expected = np.stack(
        [ndimage.zoom(x[:, top : top + ch, left : left + cw, c], (1, factor, factor), order=1) for c in range(2)],
        axis=-1,
    )
    got = _filters.clipped_zoom(x, factor, centre=True, crop=False)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-6)
    t0, t1 = (expected.shape[1] - 16) // 2, (expected.shape[2] - 21) // 2
    assert np.allclose(
        _filters.clipped_zoom(x, factor, centre=True), expected[:, t0 : t0 + 16, t1 : t1 + 21], atol=1e-6
    )
