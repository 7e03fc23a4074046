"""The per-face table of the Faces and Relations tabs: expression (FER2013 model) with its probability,
apparent gender and age from the appearance model, head pose. Every value comes from a real pretrained
model; a missing estimate is shown as "–". No gradio here (the handlers wrap the rows)."""

from __future__ import annotations

from typing import Any

FACE_COLUMNS = ["face", "expression (perceived)", "apparent gender", "apparent age", "head turn / tilt / roll (°)"]
MISSING = "–"


def gender_cell(appearance: Any) -> str:
    """``"female (99 % female)"``, or ``"uncertain (57 % male)"`` inside the band
    (:func:`fdin.labels.gender_call`)."""
    from fdin.app.rendering import gender_text
    from fdin.results import GenderEstimate

    return gender_text(GenderEstimate(float(appearance.p_female)))


def face_row(index: int, expression: Any, appearance: Any, pose: Any) -> list[Any]:
    """One row (``index``: the number shown, from 1): ``expression`` an :class:`~fdin.expression_fer.ExpressionEstimate` (or None),
    ``appearance`` a :class:`~fdin.perception.Appearance` (or None), ``pose`` a :class:`~fdin.perception.Pose`."""
    return [
        index,
        f"{expression.label} ({expression.confidence:.0%})" if expression is not None else MISSING,
        gender_cell(appearance) if appearance is not None else MISSING,
        f"{appearance.age_years:.0f}" if appearance is not None else MISSING,
        f"{pose.yaw:.0f} / {pose.pitch:.0f} / {pose.roll:.0f}" if pose is not None else MISSING,
    ]


def faces_rows(result: Any) -> list[list[Any]]:
    """Rows for a :class:`~fdin.results.FacesResult` (faces numbered left to right from 1, as drawn)."""
    return [face_row(i + 1, result.expression_of(i), f.appearance, f.pose) for i, f in enumerate(result.faces)]


def relation_rows(result: Any) -> list[list[Any]]:
    """Rows for the faces of a :class:`~fdin.relate.RelationResult` (numbered from 1, as on the canvas)."""
    return [face_row(f.index + 1, f.expression, f.appearance, f.pose) for f in result.faces]


__all__ = ["FACE_COLUMNS", "face_row", "faces_rows", "relation_rows"]
