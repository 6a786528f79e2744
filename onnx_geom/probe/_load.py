"""Load an ONNX model safely: clear errors for bad files, external data only from inside the model's folder.

>>> model = load_model("resnet.onnx")          # doctest: +SKIP
>>> model.graph.output[0].name                 # doctest: +SKIP
'logits'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from onnx_geom.errors import InvalidModelError
from onnx_geom.probe._graph import subgraphs

__all__ = ["first_line", "iter_tensors", "load_external_data", "load_model", "model_sha256", "read_model"]


def load_model(path: str | PathLike[str]) -> ModelProto:
    """Read ``path`` into an ``onnx.ModelProto``, external data included.

    Raises :class:`~onnx_geom.errors.InvalidModelError` (one sentence) when ``path`` is not a file, not an ONNX
    model, truncated, or keeps external data outside its own folder (``../`` or an absolute location).
    """
    path = Path(path)
    model = read_model(path)
    try:  # by path: external data is checked next to the model, and models over 2 GB can be checked too
        onnx.checker.check_model(str(path))
    except Exception as err:
        raise InvalidModelError(
            f"'{path}' is not a valid ONNX model, perhaps truncated ({first_line(err)}); re-export it."
        ) from None
    load_external_data(model, path.parent)
    return model


def read_model(path: str | PathLike[str]) -> ModelProto:
    """Parse ``path`` without its external data (nor the checker); the same errors as :func:`load_model`,
    escaping external-data locations included."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise InvalidModelError(f"'{path}' is {what}, not a model file; give the path of an .onnx file.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError, RuntimeWarning-like errors, ...
        raise InvalidModelError(
            f"'{path}' is not an ONNX model or is truncated (it does not parse: {first_line(err)}); "
            "check that it is a complete .onnx file."
        ) from None
    if not model.HasField("graph") or not model.graph.output:
        raise InvalidModelError(
            f"'{path}' is not an ONNX model or is truncated (it has no graph outputs); check that it is a complete .onnx file."
        )
    _external_tensors(model, path.parent)  # refuse escaping locations before anything else
    return model


def load_external_data(model: ModelProto, folder: str | PathLike[str]) -> None:
    """Read the external data of ``model`` (kept in ``folder``) into the proto; refuses escaping locations."""
    _load_external_data(_external_tensors(model, Path(folder)))


def model_sha256(path: str | PathLike[str] | None, model: ModelProto) -> str:
    """sha256 of the model file's bytes, or of the serialised proto when there is no file."""
    digest = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(model.SerializeToString())
    return digest.hexdigest()


def iter_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Every TensorProto of ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            yield from attr.tensors
        for sub in subgraphs(node):
            yield from iter_tensors(sub)


def _external_tensors(model: ModelProto, folder: Path) -> list[tuple[TensorProto, Path, int, int | None]]:
    """(tensor, file, offset, length) of every tensor kept outside the model; refuses escaping locations."""
    root = folder.resolve()
    found = []
    for tensor in iter_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(root):
            raise InvalidModelError(
                f"tensor '{tensor.name}' keeps its data at '{location}', outside the model's folder '{folder}'; "
                "refusing to read it: move the data file next to the model and re-save it."
            )
        try:
            offset, length = int(info.get("offset") or 0), (int(info["length"]) if info.get("length") else None)
        except ValueError:
            raise InvalidModelError(
                f"tensor '{tensor.name}' has a damaged external-data offset or length; re-save the model."
            ) from None
        found.append((tensor, target, offset, length))
    return found


def _load_external_data(external: list[tuple[TensorProto, Path, int, int | None]]) -> None:
    for tensor, target, offset, length in external:
        try:
            with open(target, "rb") as handle:
                handle.seek(offset)
                data = handle.read() if length is None else handle.read(length)
        except OSError:
            raise InvalidModelError(
                f"tensor '{tensor.name}' keeps its data in '{target.name}', which cannot be read next to the model; "
                "copy the data file into the model's folder."
            ) from None
        if length is not None and len(data) != length:
            raise InvalidModelError(
                f"the external data file '{target.name}' is truncated ({len(data)} of {length} bytes for tensor "
                f"'{tensor.name}'); copy it again."
            )
        tensor.raw_data = data
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-sentence errors."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
