"""Tiny classifiers in the spellings real exporters produce, each with an independent numpy forward pass.

Every builder returns ``(model, reference)`` where ``reference(x) -> (features, logits, outputs)`` computes,
in plain numpy from the original weights, the head's input (N, D), its pre-softmax output (N, K) and the
model's original outputs, for the *model input* ``x`` (already preprocessed and laid out).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: The CIFAR-10 mean and std (per channel), the cifar preset's constants.
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def run_probe(model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of a probe on uint8 ``images``, by name (onnxruntime, CPU)."""
    import onnxruntime as ort

    from onnx_geom.probe_info import PROBE_INPUT

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {PROBE_INPUT: images}), strict=True))


def random_images(model: onnx.ModelProto, n: int, seed: int = 1) -> np.ndarray:
    """``n`` random uint8 images of the probe's input shape."""
    from onnx_geom.probe_info import read_probe_info

    shape = read_probe_info(model).input_shape
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def assert_close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def preprocess(images: np.ndarray, mean, std, layout: str) -> np.ndarray:
    """Written apart from onnx_geom.probe.preprocess_numpy: per-pixel loops over channels."""
    x = np.empty(images.shape, np.float64)
    for c in range(images.shape[-1]):
        x[..., c] = (images[..., c] / 255.0 - mean[c]) / std[c]
    if layout == "NCHW":
        x = np.moveaxis(x, -1, 1)
    elif layout == "flat":
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    return x


def _model(nodes, inputs, outputs, inits, *, opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def keras_style(rng, *, n_classes=4, hidden=6, size=4):
    """tf2onnx spelling: NHWC input, ReduceMean as global pooling, MatMul + Add (bias first), Softmax, Identity."""
    w1 = rng.standard_normal((3, hidden)).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32)
    w2 = rng.standard_normal((hidden, n_classes)).astype(np.float32)
    b2 = rng.standard_normal(n_classes).astype(np.float32)
    axes = np.array([1, 2], np.int64)
    nodes = [
        helper.make_node("ReduceMean", ["input_1", "axes"], ["gap"], keepdims=0, name="global_average_pooling2d/Mean"),
        helper.make_node("MatMul", ["gap", "dense/kernel"], ["d1"], name="dense/MatMul"),
        helper.make_node("Add", ["dense/bias", "d1"], ["d1b"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["d1b"], ["dense/Relu"], name="dense/Relu"),
        helper.make_node("MatMul", ["dense/Relu", "dense_1/kernel"], ["d2"], name="dense_1/MatMul"),
        helper.make_node("Add", ["d2", "dense_1/bias"], ["d2b"], name="dense_1/BiasAdd"),
        helper.make_node("Softmax", ["d2b"], ["sm"], axis=-1, name="dense_1/Softmax"),
        helper.make_node("Identity", ["sm"], ["dense_1"], name="Identity"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__6", size, size, 3])],
        [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["unk__7", n_classes])],
        {"axes": axes, "dense/kernel": w1, "dense/bias": b1, "dense_1/kernel": w2, "dense_1/bias": b2},
        opset=18,
    )
    model.producer_name = "tf2onnx"

    def reference(x):
        features = np.maximum(x.mean(axis=(1, 2)) @ w1.astype(np.float64) + b1, 0.0)
        logits = features @ w2.astype(np.float64) + b2
        return features, logits, {"dense_1": softmax(logits)}

    return model, reference


def gemm_trans_b0(rng, *, n_classes=5, alpha=0.5, beta=2.0, size=4, reshape=True):
    """NCHW input -> GlobalAveragePool -> Reshape (or Flatten) -> Gemm(transB=0, alpha, beta, C of shape (1, K)) -> LogSoftmax."""
    B = rng.standard_normal((3, n_classes)).astype(np.float32)
    C = rng.standard_normal((1, n_classes)).astype(np.float32)
    to_2d = (
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"], name="reshape")
        if reshape
        else helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten")
    )
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="gap"),
        to_2d,
        helper.make_node("Gemm", ["flat", "B", "C"], ["scores"], alpha=alpha, beta=beta, transB=0, name="head"),
        helper.make_node("LogSoftmax", ["scores"], ["log_probs"], axis=1, name="logsoftmax"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", n_classes])],
        {"B": B, "C": C, **({"shape": np.array([0, -1], np.int64)} if reshape else {})},
    )

    def reference(x):
        features = x.mean(axis=(2, 3))
        logits = alpha * features @ B.astype(np.float64) + beta * C[0]
        return features, logits, {"log_probs": np.log(softmax(logits))}

    return model, reference


def squeezenet_tail(rng, *, n_classes=4, size=4):
    """SqueezeNet's classifier: 1x1 conv -> ReLU -> global pool -> Flatten -> Softmax (not linear in features)."""
    w = rng.standard_normal((n_classes, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="final_conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="final_relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Softmax", ["flat"], ["probs"], axis=1, name="softmax"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes])],
        {"w": w},
    )


def two_heads(rng, *, size=4):
    """Two linear heads on the same pooled features, each to its own output (e.g. an auxiliary classifier)."""
    W1 = rng.standard_normal((4, 3)).astype(np.float32)
    W2 = rng.standard_normal((6, 3)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W1"], ["main"], transB=1, name="main_head"),
        helper.make_node("Gemm", ["f", "W2"], ["aux"], transB=1, name="aux_head"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("main", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 6]),
        ],
        {"W1": W1, "W2": W2},
    )

    def reference(x):
        f = x.mean(axis=(2, 3))
        return f, {"main": f @ W1.T.astype(np.float64), "aux": f @ W2.T.astype(np.float64)}

    return model, reference


def typed_input(elem_type, shape, *, embed=False):
    """A small model whose input is ``elem_type`` with ``shape`` (token ids, integer images, sequences)."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, 4)).astype(np.float32)
    if embed:  # token ids -> embedding lookup -> mean over the sequence -> Gemm
        table = rng.standard_normal((10, 4)).astype(np.float32)
        nodes = [
            helper.make_node("Gather", ["table", "ids"], ["emb"]),
            helper.make_node("ReduceMean", ["emb", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W"], ["y"], transB=1),
        ]
        inits = {"table": table, "axes": np.array([1], np.int64), "W": W}
        name = "ids"
    else:
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["xf", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W"], ["y"], transB=1),
        ]
        inits = {"axes": np.array(list(range(1, len(shape) - 1)), np.int64), "W": W}
        name = "x"
    return _model(
        nodes,
        [helper.make_tensor_value_info(name, elem_type, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 3])],
        inits,
        opset=18,
    )


# ---------------------------------------------------------------------------------------------- token models
#
# Hand-built transformer-style tails: an 8 x 8 x 3 image (NCHW) -> 4 x 4 patches -> 4 tokens of width D ->
# one of the poolings / class-token picks below -> a MatMul + Add head -> K scores. Spellings the torch
# exporters do not produce (their own graphs are tested with real exports in test_probe_tokens.py).

TOKEN_TAILS = (
    "mean_keepdims_squeeze",  # ReduceMean(keepdims=1) -> (N, 1, D) -> MatMul + Add -> Squeeze
    "mean_keepdims_flatten",  # ... -> Flatten
    "mean_keepdims_reshape",  # ... -> Reshape(0, -1), bias of shape (1, 1, K)
    "gap_transposed",  # (N, D, T) -> GlobalAveragePool -> (N, D, 1) -> Transpose -> (N, 1, D) -> head -> Squeeze
    "gather_list_layernorm",  # Gather(indices=[0], axis=1) -> (N, 1, D) -> LayerNormalization -> head -> Reshape
    "slice_layernorm",  # Slice 0:1 -> (N, 1, D) -> LayerNormalization -> head -> Squeeze
    "slice_squeeze_layernorm",  # Slice 0:1 -> Squeeze -> (N, D) -> LayerNormalization -> head
    "tokens_first_slice",  # tokens (T, N, D) -> Slice 0:1 on axis 0 -> (1, N, D) -> head -> Squeeze(0)
    "if_squeeze",  # mean (N, 1, D) -> head -> If(dim 1 == 1, Squeeze, Identity): the legacy torch spelling
)


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def token_model(tail, *, seed=0, dim=6, n_classes=5, size=8, patch=4, spatial=None):
    """A model whose head sits on tokens, spelled as ``tail`` (one of TOKEN_TAILS, or ``per_token``: the head
    applied to every token, output (N, T, K)). ``spatial``: the input's H, W dims (default fixed ``size``;
    give names to make them dynamic). Returns (model, reference) as the builders above."""
    rng = np.random.default_rng(seed)
    grid = size // patch
    conv_w = rng.standard_normal((dim, 3, patch, patch)).astype(np.float32) * 0.3
    conv_b = rng.standard_normal(dim).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, dim).astype(np.float32)
    beta = rng.standard_normal(dim).astype(np.float32)
    W = rng.standard_normal((dim, n_classes)).astype(np.float32)  # MatMul's (D, K)
    b = rng.standard_normal(n_classes).astype(np.float32)
    inits = {
        "conv_w": conv_w,
        "conv_b": conv_b,
        "to_tokens": np.array([0, dim, -1], np.int64),
        "gamma": gamma,
        "beta": beta,
        "head_w": W,
        "head_b": b.reshape(1, 1, -1) if tail == "mean_keepdims_reshape" else b,
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "two_d": np.array([0, -1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["patches"], strides=[patch, patch], name="embed"),
        helper.make_node("Reshape", ["patches", "to_tokens"], ["channels_first"], name="to_tokens"),  # (N, D, T)
        helper.make_node("Transpose", ["channels_first"], ["tokens"], perm=[0, 2, 1], name="tokens"),  # (N, T, D)
    ]

    def head(features_name, out):
        return [
            helper.make_node("MatMul", [features_name, "head_w"], ["head_mm"], name="head/MatMul"),
            helper.make_node("Add", ["head_mm", "head_b"], [out], name="head/Add"),
        ]

    def mean_tokens(t):
        return t.mean(axis=1, keepdims=True)

    output = "scores"
    if tail.startswith("mean_keepdims") or tail == "if_squeeze":
        nodes.append(helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=1, name="pool"))
        nodes += head("pooled", "head_out")
        finish = {
            "mean_keepdims_squeeze": helper.make_node("Squeeze", ["head_out", "one"], [output], name="squeeze"),
            "mean_keepdims_flatten": helper.make_node("Flatten", ["head_out"], [output], axis=1, name="flatten"),
            "mean_keepdims_reshape": helper.make_node("Reshape", ["head_out", "two_d"], [output], name="reshape"),
        }
        if tail == "if_squeeze":
            then_branch = helper.make_graph(
                [helper.make_node("Squeeze", ["head_out", "one"], ["squeezed"])],
                "then",
                [],
                [helper.make_tensor_value_info("squeezed", TensorProto.FLOAT, None)],
            )
            else_branch = helper.make_graph(
                [helper.make_node("Identity", ["head_out"], ["kept"])],
                "else",
                [],
                [helper.make_tensor_value_info("kept", TensorProto.FLOAT, None)],
            )
            nodes += [
                helper.make_node("Shape", ["head_out"], ["head_shape"]),
                helper.make_node("Gather", ["head_shape", "one"], ["tokens_left"], axis=0),
                helper.make_node("Equal", ["tokens_left", "one"], ["is_one"]),
                helper.make_node("Squeeze", ["is_one"], ["cond"]),
                helper.make_node(
                    "If", ["cond"], [output], then_branch=then_branch, else_branch=else_branch, name="if_squeeze"
                ),
            ]
        else:
            nodes.append(finish[tail])
        pick = mean_tokens
    elif tail == "gap_transposed":
        nodes += [
            helper.make_node("GlobalAveragePool", ["channels_first"], ["gap"], name="gap"),  # (N, D, 1)
            helper.make_node("Transpose", ["gap"], ["pooled"], perm=[0, 2, 1], name="gap_t"),  # (N, 1, D)
            *head("pooled", "head_out"),
            helper.make_node("Squeeze", ["head_out", "one"], [output], name="squeeze"),
        ]
        pick = mean_tokens
    elif tail in ("gather_list_layernorm", "slice_layernorm"):
        picked = (
            helper.make_node("Gather", ["tokens", "zero"], ["cls"], axis=1, name="cls")
            if tail.startswith("gather")
            else helper.make_node("Slice", ["tokens", "zero", "one", "one"], ["cls"], name="cls")
        )
        to_2d = (
            helper.make_node("Reshape", ["head_out", "two_d"], [output], name="reshape")
            if tail.startswith("gather")
            else helper.make_node("Squeeze", ["head_out", "one"], [output], name="squeeze")
        )
        nodes += [
            picked,
            helper.make_node("LayerNormalization", ["cls", "gamma", "beta"], ["normed"], axis=-1, name="norm"),
            *head("normed", "head_out"),
            to_2d,
        ]

        def pick(t):
            return _layer_norm(t[:, :1], gamma, beta)

    elif tail == "slice_squeeze_layernorm":
        nodes += [
            helper.make_node("Slice", ["tokens", "zero", "one", "one"], ["cls3"], name="cls"),
            helper.make_node("Squeeze", ["cls3", "one"], ["cls"], name="cls_squeeze"),
            helper.make_node("LayerNormalization", ["cls", "gamma", "beta"], ["normed"], axis=-1, name="norm"),
            *head("normed", output),
        ]

        def pick(t):
            return _layer_norm(t[:, 0], gamma, beta)

    elif tail == "tokens_first_slice":
        nodes += [
            helper.make_node("Transpose", ["tokens"], ["seq_first"], perm=[1, 0, 2], name="seq_first"),  # (T, N, D)
            helper.make_node("Slice", ["seq_first", "zero", "one", "zero"], ["cls"], name="cls"),  # (1, N, D)
            *head("cls", "head_out"),
            helper.make_node("Squeeze", ["head_out", "zero"], [output], name="squeeze"),
        ]

        def pick(t):
            return t[:, :1]

    elif tail == "per_token":
        nodes += head("tokens", output)

        def pick(t):
            return t

    else:
        raise ValueError(tail)
    used = {name for node in nodes for name in node.input} | {"head_out"}  # the If branches read head_out
    inits = {name: value for name, value in inits.items() if name in used}
    hw = list(spatial) if spatial is not None else [size, size]
    out_shape = ["N", grid * grid, n_classes] if tail == "per_token" else ["N", n_classes]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *hw])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        inits,
    )

    def reference(x):
        n = len(x)
        blocks = x.reshape(n, 3, grid, patch, grid, patch)
        embedded = np.einsum("nchpwq,dcpq->nhwd", blocks, conv_w.astype(np.float64)) + conv_b
        tokens = embedded.reshape(n, grid * grid, dim)  # row-major over the patch grid, as Reshape gives
        features = pick(tokens)
        logits = features @ W.astype(np.float64) + b
        if tail == "per_token":
            return features, logits, {output: logits}
        return features.reshape(n, dim), logits.reshape(n, n_classes), {output: logits.reshape(n, n_classes)}

    return model, reference


TORCH_POOLS = (
    "mean",  # LayerNorm -> x.mean(1) -> Linear
    "mean_keepdim",  # LayerNorm -> x.mean(1, keepdim=True) -> Linear on (N, 1, D) -> .squeeze(1)
    "mean_keepdim_flatten",  # ... -> .flatten(1)
    "cls_gather",  # class token x[:, 0] -> LayerNorm -> Linear
    "cls_slice",  # class token x[:, 0:1] -> LayerNorm -> Linear on (N, 1, D) -> .squeeze(1)
    "cls_slice_squeeze",  # class token x[:, 0:1].squeeze(1) -> LayerNorm -> Linear
    "tokens",  # LayerNorm -> Linear on every token: (N, 16, K), a token classifier (not one vector per image)
)


def tiny_vit(pool, *, attention="hand", dim=16, n_classes=10, patch=8, size=32, seed=0):
    """A one-block vision transformer (torch ``nn.Module``; imports torch): a patch-embedding conv (patch 8 on
    32 x 32 x 3: 16 tokens of width 16), a pre-norm block (LayerNorm, two-head attention, hand-written softmax
    attention or ``nn.MultiheadAttention``, GELU MLP), then ``pool`` (one of TORCH_POOLS) and an ``nn.Linear``
    head ``.head`` to ``n_classes``. Its forward returns the logits, (N, K) ((N, 16, K) for ``tokens``)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = 2
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            n, t, d = x.shape
            q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
            return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))

    class MHA(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(dim, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            tokens = (size // patch) ** 2 + (1 if pool.startswith("cls") else 0)
            self.embed = nn.Conv2d(3, dim, patch, stride=patch)
            self.cls = nn.Parameter(torch.randn(1, 1, dim))
            self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.1)
            self.ln1, self.ln2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
            for ln in (self.ln1, self.ln2, self.norm):  # not the default 1, 0: LayerNorm's affine part matters
                nn.init.uniform_(ln.weight, 0.5, 1.5)
                nn.init.normal_(ln.bias, std=0.1)
            self.attn = MHA() if attention == "mha" else Attention()
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.head = nn.Linear(dim, n_classes)

        def forward(self, x):
            x = self.embed(x).flatten(2).transpose(1, 2)
            if pool.startswith("cls"):
                x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            x = x + self.pos
            x = x + self.attn(self.ln1(x))
            x = x + self.mlp(self.ln2(x))
            if pool == "mean":
                return self.head(self.norm(x).mean(1))
            if pool == "mean_keepdim":
                return self.head(self.norm(x).mean(1, keepdim=True)).squeeze(1)
            if pool == "mean_keepdim_flatten":
                return self.head(self.norm(x).mean(1, keepdim=True)).flatten(1)
            if pool == "cls_gather":
                return self.head(self.norm(x[:, 0]))
            if pool == "cls_slice":
                return self.head(self.norm(x[:, 0:1])).squeeze(1)
            if pool == "cls_slice_squeeze":
                return self.head(self.norm(x[:, 0:1].squeeze(1)))
            if pool == "tokens":
                return self.head(self.norm(x))
            raise ValueError(pool)

    return TinyViT().eval()
