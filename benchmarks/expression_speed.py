"""Per-face cost of the FER2013 expression model (weights/expression-fer2013) in ONNX Runtime.

``python -m benchmarks.expression_speed [--runs 300] [--warmup 30]``

Prints the median (and 90th percentile) milliseconds per face, after warm-up, for one ONNX Runtime
intra-op thread and for ONNX Runtime's default thread count, for:

* ``model``: ``session.run`` on a ready (B, 1, 64, 64) input;
* ``end-to-end``: crop from the photo + gray + resize + normalise + run + softmax
  (:meth:`fdin.expression_fer.FerExpressionModel.predict`), i.e. what a caller pays per face;

at batch 1 (one face) and batch 6 (the six faces of insightface's ``t1.jpg``; cost divided by 6).
The target is <= 3 ms per face on CPU (a face per video frame must not slow tracking). Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

#: the six faces of t1.jpg, as found by fdin's offline detector (xyxy)
T1_BOXES = [(60.0, 269.5, 166.7, 395.0), (266.7, 150.8, 365.3, 266.9), (462.7, 269.5, 574.7, 415.0),
            (744.0, 342.9, 845.3, 473.7), (905.3, 65.4, 1004.0, 201.5), (1130.7, 274.9, 1221.3, 396.3)]


def _time(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expression_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--model", default="expression-fer2013", help="model folder or weights/ name")
    args = parser.parse_args(argv)

    from benchmarks.perception import photo
    from fdin.expression_fer import FerExpressionModel, crop_face, preprocess

    image = photo("t1")
    crops = [crop_face(image, box) for box in T1_BOXES]
    print(f"FER2013 mini-Xception, ONNX Runtime, {os.cpu_count()} CPUs visible; median / p90 ms per face "
          f"over {args.runs} runs after {args.warmup} warm-up runs")
    print(f"{'threads':>8} {'batch':>5} {'model':>16} {'end-to-end':>16}")
    for threads, label in ((1, "1"), (0, "default")):
        predictor = FerExpressionModel.from_pretrained(args.model, threads=threads)
        assert predictor.backend == "onnxruntime", "the model folder has no verified model.onnx"
        for boxes in (T1_BOXES[:1], T1_BOXES):
            n = len(boxes)
            x = preprocess(crops[:n])
            model = _time(lambda x=x, p=predictor: p.logits(x), args.runs, args.warmup)
            e2e = _time(lambda boxes=boxes, p=predictor: p.predict(image, boxes), args.runs, args.warmup)
            print(f"{label:>8} {n:>5} {model[0] / n:7.3f} / {model[1] / n:6.3f} {e2e[0] / n:7.3f} / {e2e[1] / n:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
