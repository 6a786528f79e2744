"""Errors that onnx-geom raises for bad input.

Every error a user can cause derives from :class:`OnnxGeomError` and carries one sentence that says what is
wrong and what to do. The CLI prints that sentence and exits with code 1; library callers can catch the base
class, or the built-in class each error also derives from (``FileNotFoundError``, ``ValueError``, ...).

>>> try:
...     raise DataError("labels has 9 entries but images has 10; give one label per image.")
... except ValueError as err:
...     print(err)
labels has 9 entries but images has 10; give one label per image.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "DataError",
    "DataNotFoundError",
    "DeviceError",
    "HeadNotFoundError",
    "InvalidModelError",
    "OnnxGeomError",
    "OutputError",
    "ProbeCheckError",
    "StudyError",
    "StudyLockedError",
    "StudyNotFoundError",
    "UnsafePickleError",
]


class OnnxGeomError(Exception):
    """Base class of every user-facing error: the message is one clear sentence."""


class InvalidModelError(OnnxGeomError, ValueError):
    """The file is not a usable ONNX model (not ONNX, truncated, unsafe external data, wrong input...)."""


class HeadNotFoundError(OnnxGeomError, LookupError):
    """No final linear classifier could be chosen (none found, or several equally good)."""


class ProbeCheckError(OnnxGeomError, AssertionError):
    """A probe failed its self-check (logits != features @ W.T + b, or original outputs changed)."""


class DataError(OnnxGeomError, ValueError):
    """A data set, image batch or label array has the wrong shape, dtype or content."""


class DataNotFoundError(OnnxGeomError, FileNotFoundError):
    """A data folder or file is missing, or holds nothing onnx-geom can read."""


class UnsafePickleError(OnnxGeomError, ValueError):
    """A pickle asked for something other than plain containers, bytes and numbers; nothing was run."""


class StudyError(OnnxGeomError, ValueError):
    """A study (the Zarr store of a sweep) is unreadable or does not match the request."""


class StudyNotFoundError(StudyError, FileNotFoundError):
    """The study folder, or a model/unit inside it, does not exist."""


class StudyLockedError(StudyError):
    """Another process is writing the same part of a study right now."""


class OutputError(OnnxGeomError, ValueError):
    """An output path that onnx-geom must not or cannot write: inside a study or another Zarr store, over the
    command's own input, a folder where a file belongs (or the reverse), not writable, or a write that failed."""


class DeviceError(OnnxGeomError, RuntimeError):
    """A requested execution device (CUDA, TensorRT) cannot be used on this machine."""


class ClusterError(OnnxGeomError, RuntimeError):
    """A Ray cluster that cannot run a sweep: Ray not installed, an address that cannot be reached, a GPU share
    asked of a cluster without GPUs, a node that cannot see the study, workers that died."""
