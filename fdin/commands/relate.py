"""``python -m fdin relate IMAGE [IMAGE2] [--json OUT]``: relation traits between faces.

One group photo: every pair of detected faces. Two photos: the largest face of each (the spatial
cue places the second photo to the right of the first; see :mod:`fdin.relate`). Per face: the
FER2013 expression, apparent gender and age from the appearance model, head pose. Prints the JSON
result (or writes it to ``--json``); a one-line note on stderr says when the weights were trained on
generated data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "relation traits (dominant, warm, friendly, ...) between the faces of a group photo or two photos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="a group photo (every pair of faces), or the first of two photos")
    parser.add_argument("image2", nargs="?", help="a second photo: relate the largest face of each photo")
    parser.add_argument("--json", metavar="OUT", help="write the JSON result to this file instead of stdout")
    parser.add_argument("--backend", help="face detection/landmark backend (default: fdin.perception's default)")
    parser.add_argument("--expression-weights", default="expression-fer2013",
                        help="FER2013 expression model: a folder, a name in weights/, or a Hub id "
                             "(default: expression-fer2013)")
    parser.add_argument("--expression-revision", help="pinned 40-hex revision for a Hub expression model")
    parser.add_argument("--relation-weights", default="relation",
                        help="relation model: a folder, a name in weights/, or a Hub id (default: relation)")
    parser.add_argument("--relation-revision", help="pinned 40-hex revision for a Hub relation model")
    parser.add_argument("--no-onnx", action="store_true",
                        help="run the expression model in PyTorch, not ONNX Runtime")


def run(args: argparse.Namespace) -> int:
    from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
    from fdin.media import load_image
    from fdin.relate import RelationPredictor

    image_a = load_image(args.image)
    image_b = load_image(args.image2) if args.image2 else None
    predictor = RelationPredictor.from_pretrained(
        args.expression_weights, args.relation_weights, expression_revision=args.expression_revision,
        relation_revision=args.relation_revision, backend=args.backend, use_onnx=not args.no_onnx)
    result = predictor.relate(image_a, image_b)
    text = json.dumps(result.to_json_dict(), indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    if predictor.synthetic_weights and not getattr(args, "quiet", False):
        print("note: " + SYNTHETIC_WEIGHTS_NOTE, file=sys.stderr)
    return 0
