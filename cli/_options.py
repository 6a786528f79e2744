"""The command line's shared grammar: the fixed choices, the one ``--size``, the one corruptions list, and the
options several commands take, declared once so that their ``--help`` reads the same everywhere.

The choices are ``str`` Enums only so that Typer checks them and lists them in ``--help``; commands hand the
library their plain ``.value`` (``tests/test_cli_options.py`` checks each Enum against the library's own tuple,
which is not imported here: it lives in modules too heavy for ``onnx-geom --help``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any, NamedTuple

import typer

from onnx_geom.errors import DataError
from onnx_geom.viewers import ATTRIBUTIONS, PANELS  # numpy only: VisPy and Qt load inside the view command


class Device(str, Enum):
    """Where onnxruntime runs (``onnx_geom.runner.DEVICES``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class Executor(str, Enum):
    """Where a sweep runs (``onnx_geom.sweep.EXECUTORS``)."""

    local = "local"
    ray = "ray"


class Profile(str, Enum):
    """Constants of the corruptions (``onnx_geom.corruptions.PROFILES``)."""

    cifar = "cifar"
    imagenet = "imagenet"


class Preset(str, Enum):
    """Normalisation a probe bakes in (``onnx_geom.probe.PRESETS``)."""

    none = "none"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagenet = "imagenet"


class Layout(str, Enum):
    """How a model takes its images (``onnx_geom.probe_info.LAYOUTS``)."""

    NCHW = "NCHW"
    NHWC = "NHWC"
    flat = "flat"


class Distance(str, Enum):
    """Distance of the model map (``onnx_geom.comparison.DISTANCES``)."""

    geometry = "geometry"
    geometry_raw = "geometry_raw"
    cka = "cka"
    kappa = "kappa"
    agreement = "agreement"


class Split(str, Enum):
    """Which CIFAR batches to read."""

    test = "test"
    train = "train"


#: The viewer's panels (``onnx_geom.viewers.PANELS``).
Panel = Enum("Panel", [(name, name) for name in PANELS], type=str)  # type: ignore[misc]
#: What the viewer's attribution panel shows (``onnx_geom.viewers.ATTRIBUTIONS``).
Attribution = Enum("Attribution", [(name.replace("-", "_"), name) for name in ATTRIBUTIONS], type=str)  # type: ignore[misc]


def plain(choice: Enum | None) -> Any:
    """The library's plain value of a choice (``None`` stays ``None``)."""
    return None if choice is None else choice.value


class Size(NamedTuple):
    """An image or window size: ``--size`` is WIDTHxHEIGHT everywhere, as image tools and screens write it."""

    width: int
    height: int


def parse_size(text: str | Size) -> Size:
    """``"1280x800"`` -> ``Size(width=1280, height=800)``: width first, then height.

    >>> parse_size("640X480"), parse_size(" 40 x 30 ")
    (Size(width=640, height=480), Size(width=40, height=30))
    """
    if isinstance(text, Size):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise typer.BadParameter(f"{text!r} is not WIDTHxHEIGHT in whole pixels (like 1280x800).")
    return Size(int(match[1]), int(match[2]))


def size_option(help: str) -> Any:
    """A ``--size WIDTHxHEIGHT`` option read by :func:`parse_size`; ``help`` says what is sized (and states the
    order)."""
    return typer.Option("--size", parser=parse_size, metavar="WIDTHxHEIGHT", help=help)


_KEYWORDS = {"all": "the 19, the default", "benchmark": "the 15", "none": "clean data only"}


def parse_corruptions(
    values: Sequence[str] | None, *, clean_only: bool = False, check: bool = True
) -> list[str] | None:
    """The corruptions an option names: names, comma-separated or repeated (or both), and the keywords ``all``,
    ``benchmark`` and, where ``clean_only`` makes sense, ``none`` (no corruption: clean data only).

    Returns the names in the order given, each once; ``None`` for ``all`` (also the default): the command's
    every corruption (the 19; for a run reading a ``--corrupted`` folder, every one in it). ``check=False``
    leaves names that are not ours to the caller (a folder may hold others). Anything else is a
    :class:`DataError` naming the unknown ones and the choices.

    >>> parse_corruptions(["fog,snow", "fog"]), parse_corruptions(None), parse_corruptions(["none"], clean_only=True)
    (['fog', 'snow'], None, [])
    >>> len(parse_corruptions(["benchmark", "speckle_noise"]))
    16
    """
    from onnx_geom.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS

    keywords = [k for k in _KEYWORDS if clean_only or k != "none"]
    words = [word.strip() for item in (values or ["all"]) for word in str(item).split(",") if word.strip()]
    if not words:
        raise DataError(f"--corruptions names no corruption; give names or one of {', '.join(keywords)}.")
    unknown = [w for w in dict.fromkeys(words) if w not in keywords and w not in CORRUPTIONS and check]
    if unknown:
        raise DataError(
            f"unknown corruption(s) {', '.join(unknown)}; choose from {', '.join(keywords)}, {', '.join(CORRUPTIONS)}."
        )
    if "all" in words:
        return None
    groups = {"benchmark": BENCHMARK_CORRUPTIONS, "none": ()}
    return list(dict.fromkeys(name for word in words for name in groups.get(word, (word,))))


def corruptions_option(*, clean_only: bool) -> Any:
    """The ``--corruptions/-c`` option read by :func:`parse_corruptions` (with ``none`` where ``clean_only``)."""
    keywords = ", ".join(f"{k} ({meaning})" for k, meaning in _KEYWORDS.items() if clean_only or k != "none")
    return typer.Option(
        "--corruptions",
        "-c",
        metavar="NAMES",
        show_default=False,
        help=f"Corruptions: names, comma-separated or repeated, or {keywords}.",
    )


def batch_size_option(default: str | bool = True) -> Any:
    """The ``--batch-size`` option; ``default`` is what ``--help`` shows as the default when it is not a number."""
    return typer.Option(min=1, show_default=default, help="Images per batch: memory against speed.")


# The options several commands take, declared once: the same flag, the same help.
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout instead of tables.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show onnxruntime's own log messages.")]
DeviceOption = Annotated[
    Device,
    typer.Option(help="Where onnxruntime runs; auto: CUDA when it really works, else the CPU (never tensorrt)."),
]
SeedOption = Annotated[
    int,
    typer.Option(help="Seed of the corruptions: per sample, so image i gets the same noise whatever the batch."),
]
ProfileOption = Annotated[
    Profile | None,
    typer.Option(help="Corruption constants (default: cifar for images up to 64 px a side, else imagenet)."),
]
SeveritiesOption = Annotated[
    str, typer.Option(help="Severities: a list (1,3,5), a range (1-5) or both (1,3-5).", metavar="LEVELS")
]
