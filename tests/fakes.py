"""Fake predictors for the fast app tests: the :class:`fdin.app.Predictors` protocol with results of the
real typed classes, computed from fixed inputs (no model, no weights, no child process)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fdin.analyze import TraitResult
from fdin.dynamics import CHANNEL_NAMES
from fdin.errors import NoFaceError
from fdin.expression_fer import ExpressionEstimate
from fdin.labels import EXPRESSION_LABELS, REGION_NAMES, SYMMETRIC_TRAITS, TRAITS
from fdin.media import Video
from fdin.perception.base import FaceBackend
from fdin.perception.types import Appearance, Face, Pose
from fdin.regions import top_relations
from fdin.relate import FaceAttributes, PairTraits, RelationResult
from fdin.results import (
    AgeEstimate,
    Attribution,
    Coverage,
    Estimates,
    GenderEstimate,
    Importance,
    ModelProvenance,
    TrackCount,
)
from fdin.synth import smile_sequence

FAKE_EXPRESSION_MODEL = {"name": "fake expression", "weights": "none", "trained_on": "nothing",
                         "synthetic_training_data": False, "licence": "MIT"}


def fake_expression(k: int) -> ExpressionEstimate:
    """Face k's fixed expression: "happy" for even k, "neutral" for odd k (probabilities sum to 1)."""
    probs = np.full(len(EXPRESSION_LABELS), 0.05)
    probs[EXPRESSION_LABELS.index("happy" if k % 2 == 0 else "neutral")] = 0.7
    return ExpressionEstimate(label="happy" if k % 2 == 0 else "neutral",
                              probs=dict(zip(EXPRESSION_LABELS, probs.tolist(), strict=True)),
                              model=dict(FAKE_EXPRESSION_MODEL))


class FakeExpression:
    """The :class:`fdin.expression_fer.FerExpressionModel` methods the app uses."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, image: np.ndarray, boxes: Any) -> list[ExpressionEstimate]:
        self.calls += 1
        return [fake_expression(k) for k in range(len(boxes))]


SYNTHETIC_MODEL = ModelProvenance(name="fdin", weights="weights/fdin-gender", trained_on="fdin.synth smiles",
                                  licence="MIT", synthetic_training_data=True, target="gender")


def face_at(x: float, y: float = 40.0, size: float = 40.0, *, appearance: bool = True) -> Face:
    """A face record whose 68 landmarks are a real smile shape scaled into the box at (x, y)."""
    shape = smile_sequence(seed=0, fps=25.0)[0]
    shape = (shape - shape.min(0)) / np.ptp(shape, axis=0) * size + [x, y]
    return Face(bbox=np.array([x, y, x + size, y + size], np.float32), score=0.99,
                landmarks=shape.astype(np.float32), keypoints=shape[[36, 45, 30, 48, 54]].astype(np.float32),
                pose=Pose(5.0, -2.0, 1.0),
                appearance=Appearance(0.8, 31.0, "fake-appearance") if appearance else None,
                models={"bbox": "fake", "landmarks": "fake"})


class FakeBackend(FaceBackend):
    """Places ``faces`` smile-shaped faces side by side; only :meth:`detect` is used by the app."""

    name = "fake"

    def __init__(self, faces: int = 2) -> None:
        self.faces, self.calls = faces, 0

    @property
    def models(self) -> dict[str, str]:
        return {"bbox": "fake"}

    def detect_boxes(self, image: np.ndarray) -> list[Any]:
        return []

    def landmarks_for_box(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        return face_at(float(bbox[0])).landmarks

    def appearance(self, image: np.ndarray, faces: Any) -> list[Any]:
        return [None for _ in faces]

    def detect(self, image: np.ndarray, *, with_appearance: bool = True) -> list[Face]:
        self.calls += 1
        step = max(image.shape[1] // max(self.faces, 1), 1)
        return [face_at(k * step + 2.0, size=min(step - 4, image.shape[0] - 44, 40)) for k in range(self.faces)]


def fake_video(frames: int = 20, size: int = 96) -> Video:
    data = np.full((frames, size, size, 3), 110, np.uint8)
    data[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 200
    return Video(frames=data, timestamps=np.arange(frames) / 10.0, fps=10.0, source_fps=10.0, width=size,
                 height=size, notes=("Only the first 2 s were analysed.",))


class FakeAnalyzer:
    def __init__(self) -> None:
        self.calls = 0

    def analyze(self, video: Any, *, progress: Any = None) -> TraitResult:
        self.calls += 1
        if progress is not None:
            for stage in ("decode", "track", "dynamics"):
                progress(stage, 1.0)
        n = len(video)
        lms = smile_sequence(seed=0, fps=10.0)[:n] * 0.3 + 10
        lost = [3]
        idx = np.array([i for i in range(n) if i not in lost])
        r = len(REGION_NAMES)
        rng = np.random.default_rng(0)
        m = rng.random((r, r))
        m = np.triu(m + m.T, 1)
        m = (m + m.T) / np.triu(m, 1).sum()
        importance = Importance(tuple(REGION_NAMES), {"gender": m, "age": m[::-1, ::-1].copy()})
        # the gender estimate was moved by one pair toward male; nothing stands out for age
        effects = np.zeros((r, r))
        effects[3, 7] = effects[7, 3] = -0.4
        attribution = Attribution(tuple(REGION_NAMES), {"gender": effects, "age": 0.5 * (m - m.mean())},
                                  {"gender": 0.1, "age": 5.0}, method="fake")
        t = np.arange(25) / 25.0
        return TraitResult(
            frames_analyzed=n, fps=float(video.fps), face_track=TrackCount(len(idx), len(lost)),
            dynamics=Estimates(GenderEstimate(0.3), AgeEstimate(34.0, 6.0)),
            appearance=Estimates(GenderEstimate(0.9, 0.05), AgeEstimate(29.0, 2.0), frames=5, model="fake"),
            importance=importance, top_relations=top_relations(m, k=5), models=[SYNTHETIC_MODEL],
            attribution=attribution, coverage=Coverage.of_video(video),
            timings_ms={"total": 1.0}, time=t, trajectories=rng.random((len(t), r, len(CHANNEL_NAMES))),
            landmarks=lms[idx], frame_indices=idx)


class FakeRelator:
    def __init__(self, faces_per_photo: int = 3) -> None:
        self.faces_per_photo = faces_per_photo

    def relate(self, image_a: np.ndarray, image_b: np.ndarray | None = None, *, progress: Any = None) -> RelationResult:
        n = 2 if image_b is not None else self.faces_per_photo
        if n < 2:
            raise NoFaceError("Found 1 face in the photo; relation traits need at least two.")
        if progress is not None:
            progress("relation traits", 0.5)
        faces = []
        for k in range(n):
            box = np.array([10.0 + 50 * k, 10.0, 50.0 + 50 * k, 50.0])
            app = Appearance(0.7, 30.0 + k, "fake") if k else None
            faces.append(FaceAttributes(
                index=k, image=int(image_b is not None and k == 1), bbox=box, canvas_bbox=box, score=0.9,
                expression=fake_expression(k), gender=GenderEstimate(app.p_female) if app else None,
                age=AgeEstimate(app.age_years) if app else None, pose=Pose(1.0, 2.0, 3.0), appearance=app))
        pairs = [PairTraits(faces=(i, j), traits={t: 0.1 * (i + j + 1) % 1 for t in TRAITS},
                            directed={t: {"i_over_j": 0.6, "j_over_i": 0.4} for t in TRAITS
                                      if t not in SYMMETRIC_TRAITS})
                 for i in range(n) for j in range(i + 1, n)]
        return RelationResult(faces=faces, pairs=pairs, models=[SYNTHETIC_MODEL],
                              canvas_size=(int(image_a.shape[1]), int(image_a.shape[0])),
                              mode="two_photos" if image_b is not None else "group", notes=[])


class FakePredictors:
    """Counts how often each role is asked for (building the app must ask for none)."""

    def __init__(self, *, faces: int = 2, relation_faces: int = 3) -> None:
        self.fake_backend, self.fake_analyzer = FakeBackend(faces), FakeAnalyzer()
        self.fake_relator = FakeRelator(relation_faces)
        self.fake_expression = FakeExpression()
        self.requests: list[str] = []

    def backend(self) -> FakeBackend:
        self.requests.append("backend")
        return self.fake_backend

    def analyzer(self) -> FakeAnalyzer:
        self.requests.append("analyzer")
        return self.fake_analyzer

    def relation(self) -> FakeRelator:
        self.requests.append("relation")
        return self.fake_relator

    def expression(self) -> FakeExpression:
        self.requests.append("expression")
        return self.fake_expression
