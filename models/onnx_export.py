"""Export a saved SentimentClassifier to the served runtime: ONNX, dynamically quantised to int8.

The graph is traced with torch.onnx's dynamo exporter (batch and sequence axes dynamic), then
onnxruntime's `quantize_dynamic` stores the MatMul weights as int8, one scale per output channel, and
quantises the activations per pass at run time: no calibration data needed.

Per-channel, MatMul-only is the variant closest to fp32 of those measured (trained MiniLM, 1,142
drugsCom test reviews, 2026-11-27): labels agreeing with fp32 98.4% (per-tensor MatMul+Gather, the
onnxruntime default: 96.4%), accuracy -0.18 and macro F1 -0.15 points (default: -0.96 / -0.90), at
the same speed. The embedding table stays fp32 (a lookup, no arithmetic to save): 59 MB instead of 23.

Variants (VARIANTS; `benchmarks/onnx_variants.py`), trained MiniLM, 1,142 test reviews, 2026-12-06 18:28 UTC,
AMD EPYC, 2 CPUs, no VNNI (AVX2 only), load average 7-15 from other work on the machine:

| variant | accuracy | macro F1 | vs fp32 (points) | labels = fp32 | texts/s, median / best of 5 |
|---|---|---|---|---|---|
| fp32 (torch) | 0.8564 | 0.8443 | - | - | - |
| plain (default) | 0.8608 | 0.8493 | +0.44 / +0.50 | 98.3% | 10.9 / 14.4 |
| fused | 0.8625 | 0.8510 | +0.61 / +0.67 | 98.3% | 9.8 / 24.5 |

The fused graph is not the default: under that load its speed was not shown to be better (rounds 24.5 /
8.0 / 9.8 / 8.9 / 10.2 against 10.9 / 14.4 / 10.1 / 10.4 / 12.3 texts/s, alternating), and it moves
accuracy by more than 0.5 points from fp32 (upwards). Measure it again on a quiet machine before choosing it.

Example::

    export_int8("models/1/artifacts/classifier", "models/1/onnx-int8")   # -> the runtime directory
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from .classifier import META_FILE, SentimentClassifier
from .onnx_classifier import MODEL_FILE, TOKENIZER_FILE

RUNTIME_NAME = "onnx-int8"
OPSET = 18
FUSED_OPSET = 17   # the TorchScript exporter's; the fused operators come from the com.microsoft domain
# plain: the dynamo graph, MatMul weights int8. fused: the TorchScript graph with eager attention, through
# onnxruntime's BERT optimizer (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu),
# then MatMul and Attention weights int8 (Attention -> QAttention).
VARIANTS = ("plain", "fused")
DEFAULT_VARIANT = "plain"


def export_int8(classifier_dir: str | Path, out_dir: str | Path, variant: str = DEFAULT_VARIANT) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    classifier_dir, out_dir = Path(classifier_dir), Path(out_dir)
    if not (classifier_dir / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{classifier_dir} has no {TOKENIZER_FILE}: re-save the classifier with transformers >= 4")
    classifier = SentimentClassifier.load(classifier_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-onnx-") as tmp, _quiet():
        fp32 = Path(tmp) / "model.fp32.onnx"
        if variant == "fused":
            _export_fused(classifier, fp32)
            ops = ["MatMul", "Attention"]
            # ONNX shape inference knows no com.microsoft operator, so the MatMuls after an Attention have no
            # type; the quantiser then asks for this default (onnxruntime/quantization/onnx_quantizer.py
            # _get_default_tensor_type; quantize.py documents DefaultTensorType in extra_options).
            extra = {"DefaultTensorType": 1}   # onnx.TensorProto.FLOAT
        else:
            _export_dynamo(classifier, fp32)
            ops, extra = ["MatMul"], {}
        quantize_dynamic(str(fp32), str(out_dir / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=ops, extra_options=extra)
    for name in (TOKENIZER_FILE, "vocab.txt"):
        if (classifier_dir / name).is_file():
            shutil.copyfile(classifier_dir / name, out_dir / name)
    tokenizer = classifier.tokenizer
    meta = {**json.loads((classifier_dir / META_FILE).read_text()), "runtime": RUNTIME_NAME, "graph": variant,
            "pad_token": tokenizer.pad_token or "[PAD]", "pad_token_id": int(tokenizer.pad_token_id or 0)}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def _export_dynamo(classifier: SentimentClassifier, path: Path) -> None:
    network = _LogitsOnly(classifier.network).eval()
    sample = classifier.encode(["an example review that is long enough", "short"])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode():
        program = torch.onnx.export(
            network, (sample["input_ids"], sample["attention_mask"]), dynamo=True, opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            verbose=False)
        program.save(str(path))


def _export_fused(classifier: SentimentClassifier, path: Path) -> None:
    """onnxruntime's BERT fusions match the TorchScript exporter's graph of eager attention (measured with
    onnxruntime 1.32: the dynamo graph, or SDPA attention, gets SkipLayerNormalization and BiasGelu but no
    Attention). num_heads and hidden_size are given: detection from the graph failed on it.
    API: onnxruntime/python/tools/transformers/optimizer.py optimize_model(input, model_type, num_heads,
    hidden_size, optimization_options, opt_level, use_gpu, only_onnxruntime); opt_level 0 = its Python
    fusions only, so the saved graph stays portable across CPUs (the session optimises at load)."""
    from onnxruntime.transformers.optimizer import optimize_model

    encoder = classifier.network.encoder
    encoder.config._attn_implementation = "eager"   # explicit MatMul/Softmax attention: what FusionAttention matches
    network = _LogitsOnly(classifier.network).eval()
    sample = classifier.encode(["an example review that is long enough", "short"])
    traced = path.with_suffix(".traced.onnx")
    with torch.inference_mode():
        torch.onnx.export(
            network, (sample["input_ids"], sample["attention_mask"]), str(traced), dynamo=False,
            opset_version=FUSED_OPSET, input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch"}})
    optimized = optimize_model(str(traced), model_type="bert", num_heads=encoder.config.num_attention_heads,
                               hidden_size=encoder.config.hidden_size, opt_level=0, use_gpu=False)
    optimized.save_model_to_file(str(path))


@contextlib.contextmanager
def _quiet():
    """The exporter narrates every stage on stdout and warns about torchvision ops we do not use, the
    quantiser suggests pre-processing on the root logger: none of it is for our users."""
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "onnxscript", "onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _LogitsOnly(torch.nn.Module):
    """The network with exactly the two inputs the served graph takes (token_type_ids stay zero)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.network(input_ids=input_ids, attention_mask=attention_mask)
