"""A restricted unpickler for CIFAR python batches: plain containers, bytes, numbers and numpy arrays only.

Nothing named in the pickle is ever imported or called: numpy arrays are rebuilt from their raw bytes by our own
stand-ins for ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (and ``_codecs.encode``
for bytes written by Python 3); any other global is
refused with :class:`~onnx_geom.errors.UnsafePickleError` before anything runs.

>>> import pickle, numpy as np
>>> blob = pickle.dumps({b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2]}, protocol=2)
>>> loads(blob)[b"data"].tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import io
import math
import pickle
import re

import numpy as np

from onnx_geom.errors import UnsafePickleError

_SIMPLE_DTYPE = re.compile(r"^[|<>=]?[biuf]\d{1,2}$")


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` inside the pickle; never instantiated."""


class _Dtype:
    """Stand-in for ``numpy.dtype(descr, align, copy)``; accepts simple numeric dtypes only."""

    def __init__(self, descr, align=0, copy=0):
        text = descr.decode("latin1") if isinstance(descr, bytes) else str(descr)
        if not _SIMPLE_DTYPE.match(text):
            raise UnsafePickleError(f"the pickle asks for numpy dtype {text!r}; only plain numeric dtypes are allowed.")
        self.descr, self.order = text, "|"

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else b"|"
        self.order = order.decode("latin1") if isinstance(order, bytes) else str(order)

    def dtype(self) -> np.dtype:
        dt = np.dtype(self.descr)
        return dt.newbyteorder("<" if self.order == "<" else ">") if self.order in "<>" else dt


class _Array:
    """Stand-in for an ndarray under construction; :func:`_finish` swaps it for the real array."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _Dtype)):
            raise UnsafePickleError("the pickle holds a numpy array in an unexpected form; refusing it.")
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("the pickle holds a numpy array without raw bytes (object arrays are refused).")
        dt = dtype.dtype()
        count = math.prod(int(d) for d in shape) if all(int(d) >= 0 for d in shape) else -1
        if count * dt.itemsize != len(raw):
            raise UnsafePickleError("the pickle holds a numpy array whose bytes do not match its shape; refusing it.")
        self.array = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(cls, shape, typecode):
    if cls is not _NdarrayMarker:
        raise UnsafePickleError("the pickle asks numpy to build something other than a plain array; refusing it.")
    return _Array()


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, _Dtype) or not isinstance(buffer, (bytes, bytearray)):
        raise UnsafePickleError("the pickle holds a numpy array in an unexpected form; refusing it.")
    return np.frombuffer(bytes(buffer), dtype=dtype.dtype()).reshape(shape, order=order).copy()


def _encode(text, encoding="utf-8"):
    """Stand-in for ``_codecs.encode``: how protocol 2 spells a bytes object written by Python 3."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("the pickle asks for an unusual text encoding; refusing it.")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _Dtype,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle asks for {module}.{name}; only plain containers, bytes, numbers and numpy arrays are "
                "allowed, so it was refused and nothing in it was run."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle uses persistent ids; refusing it.")


#: The most containers and values a pickle may hold (a CIFAR-100 batch holds about 150,000).
MAX_NODES = 10_000_000


def _finish(obj, seen: dict[int, object] | None = None, budget: list[int] | None = None):
    """Swap array stand-ins for arrays. A pickle can share one object many times (a 300-byte pickle can describe
    a 2**40-leaf tree of shared lists), so shared objects are finished once (``seen``) and the number of
    distinct objects is bounded (``budget``)."""
    seen = {} if seen is None else seen
    budget = [MAX_NODES] if budget is None else budget
    if id(obj) in seen:
        return seen[id(obj)]
    budget[0] -= 1
    if budget[0] < 0:
        raise UnsafePickleError(f"the pickle holds more than {MAX_NODES:,} objects; a data set batch never does.")
    if isinstance(obj, _Array):
        out = obj.array
    elif isinstance(obj, dict):
        out = {_finish(k, seen, budget): _finish(v, seen, budget) for k, v in obj.items()}
    elif isinstance(obj, list):
        out = [_finish(v, seen, budget) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_finish(v, seen, budget) for v in obj)
    elif isinstance(obj, (_Dtype, _NdarrayMarker, type)):
        raise UnsafePickleError("the pickle holds a bare numpy type; refusing it.")
    else:
        out = obj
    if isinstance(obj, (dict, list, tuple, _Array)):
        seen[id(obj)] = out
    return out


def loads(data: bytes):
    """Unpickle ``data`` (Python 2 strings become bytes, as CIFAR needs) with the restrictions above."""
    try:
        return _finish(_Unpickler(io.BytesIO(data), encoding="bytes").load())
    except UnsafePickleError:
        raise
    except Exception as error:  # a damaged pickle can raise almost anything; nothing was executed
        raise UnsafePickleError(
            f"the pickle is damaged or not a data batch ({type(error).__name__}: {error})."
        ) from None
