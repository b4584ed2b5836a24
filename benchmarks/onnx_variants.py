"""The int8 export variants side by side: accuracy, macro F1, label agreement with fp32, texts/s.

Each variant of models/onnx_export.py (VARIANTS) is exported from the same trained classifier and scored
on the same test split as the fp32 model; speed is the runtime's own batched prediction (no HTTP) over
test reviews handed over 32 at a time, as a server at concurrency 32 holds them. The variants' speed
rounds alternate (plain, fused, plain, fused, ...) so a shared machine's drift hits both alike; the
table shows the median and the best round. The machine line says the CPU and whether it has VNNI.

    .venv/bin/python benchmarks/onnx_variants.py --model DIR [--project DIR] [--rounds 5] [--texts 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402


def texts_per_s(classifier, texts: list[str], group: int = 32) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), group):
        classifier.predict_proba(texts[i:i + group], batch_size=32)
    return len(texts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained SentimentClassifier dir")
    parser.add_argument("--project", type=Path, default=None, help="project whose test split to score (default: packaged)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=256, help="test reviews per speed round")
    args = parser.parse_args()

    import numpy as np

    from mlops_cli.training.evaluation import evaluate
    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier
    from models.onnx_export import VARIANTS, export_int8
    from serving import test_split

    print(f"onnx variants {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {describe()}", flush=True)
    examples = test_split(args.project)
    texts = [examples[i % len(examples)].text for i in range(args.texts)]
    work = Path(tempfile.mkdtemp(prefix="mlops-variants-"))
    fp32 = SentimentClassifier.load(args.model)
    fp32_labels = fp32.predict_proba([e.text for e in examples]).argmax(1)
    quality = {"fp32": evaluate(fp32, examples).metrics}
    del fp32
    runtimes, export_s, agreement = {}, {}, {}
    for variant in VARIANTS:
        started = time.perf_counter()
        runtimes[variant] = OnnxClassifier.load(export_int8(args.model, work / variant, variant), threads=os.cpu_count() or 1)
        export_s[variant] = time.perf_counter() - started
        quality[variant] = evaluate(runtimes[variant], examples).metrics
        labels = runtimes[variant].predict_proba([e.text for e in examples]).argmax(1)
        agreement[variant] = float(np.mean(labels == fp32_labels))
        runtimes[variant].predict_proba(texts[:32])   # first passes allocate
    speeds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            speeds[variant].append(texts_per_s(runtimes[variant], texts))
    print(f"  done {time.strftime('%H:%M UTC', time.gmtime())}, load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(f"| variant | accuracy | macro F1 | vs fp32 (points) | labels = fp32 | texts/s median of {args.rounds} | best | export s |")
    print("|---|---|---|---|---|---|---|---|")
    fq = quality["fp32"]
    print(f"| fp32 (torch) | {fq['accuracy']:.4f} | {fq['macro_f1']:.4f} | - | - | - | - | - |")
    for v in VARIANTS:
        q = quality[v]
        print(f"| {v} | {q['accuracy']:.4f} | {q['macro_f1']:.4f} | {(q['accuracy'] - fq['accuracy']) * 100:+.2f} / "
              f"{(q['macro_f1'] - fq['macro_f1']) * 100:+.2f} | {agreement[v]:.1%} | {statistics.median(speeds[v]):.1f} | "
              f"{max(speeds[v]):.1f} | {export_s[v]:.0f} |")
    print(f"\nrounds (texts/s): " + "; ".join(f"{v} " + " / ".join(f"{s:.1f}" for s in speeds[v]) for v in VARIANTS))
    print(f"on {len(examples)} test reviews; speed over {len(texts)} in groups of 32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
