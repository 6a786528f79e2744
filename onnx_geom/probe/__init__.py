"""The probe: any ONNX image classifier -> one uniform interface (uint8 images in; logits + features out).

>>> from onnx_geom.probe import probe, save_probe, find_heads
>>> model = probe("resnet.onnx", preset="imagenet")   # doctest: +SKIP
>>> save_probe(model, "resnet.probe.onnx")           # doctest: +SKIP

Modules: ``_load`` (safe loading), ``_graph`` (graph index), ``_heads`` (finding the linear head),
``_preprocess`` (the uint8 -> model-input prefix), ``_surgery`` (building the probe), ``_check`` (self-check).
"""

from onnx_geom.probe._check import ProbeReport, check_probe
from onnx_geom.probe._heads import HeadCandidate, find_heads
from onnx_geom.probe._load import load_model
from onnx_geom.probe._preprocess import PRESETS, preprocess_numpy
from onnx_geom.probe._surgery import probe, save_probe

__all__ = [
    "PRESETS",
    "HeadCandidate",
    "ProbeReport",
    "check_probe",
    "find_heads",
    "load_model",
    "preprocess_numpy",
    "probe",
    "save_probe",
]
