"""Turning typed results into what the app shows: summary text, plots, the annotated clip and
keyframe (the per-face table: :mod:`fdin.app.face_table`). Reads result fields by name; no gradio here (plots come from
:mod:`fdin.viz`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from fdin.labels import (
    AGE_DISAGREE_YEARS,
    MAX_AGE_STD_YEARS,
    MAX_GENDER_SPREAD,
    SYNTHETIC_WEIGHTS_NOTE,
    gender_call,
)
from fdin.results import AgeEstimate, GenderEstimate

DISPLAY_MIN_SIDE = 640  # small frames are upscaled before drawing so overlays stay legible


def _side_score(p_female: float) -> str:
    """The score of the side the model leans to: ``"97 % female"``."""
    p = float(p_female)
    return f"{p:.0%} female" if p >= 0.5 else f"{1 - p:.0%} male"


def gender_text(g: GenderEstimate | None) -> str:
    """``"female (97 % female, steady over frames)"``, ``"uncertain (52 % male, varies ±34 points over
    frames)"``: what the app shows (:func:`fdin.labels.gender_call`: "uncertain" inside the band or when
    the frames disagree), the model's score for the side it leans to and, for an average over frames,
    how much the frames agree. Scores are the models' own, not calibrated probabilities."""
    if g is None:
        return "–"
    call = gender_call(g.p_female, g.std)
    text = f"{call} ({_side_score(g.p_female)}"
    if g.std is not None:
        points = round(100 * float(g.std))
        text += ", steady over frames" if points < 5 else f", varies ±{points} points over frames"
    return text + ")"


def age_uncertain(a: AgeEstimate | None) -> bool:
    return a is not None and a.std is not None and float(a.std) >= MAX_AGE_STD_YEARS


def age_text(a: AgeEstimate | None) -> str:
    """``"33 years (± 4)"``; ``"uncertain: about 33 years (± 12)"`` when the uncertainty reaches
    :data:`fdin.labels.MAX_AGE_STD_YEARS`."""
    if a is None:
        return "–"
    text = f"{a.years:.0f} years" + (f" (± {a.std:.0f})" if a.std is not None else "")
    return f"uncertain: about {text}" if age_uncertain(a) else text


def ages_disagree(first: AgeEstimate | None, second: AgeEstimate | None) -> bool:
    """More than :data:`fdin.labels.AGE_DISAGREE_YEARS` apart and more than twice their combined
    uncertainty."""
    if first is None or second is None:
        return False
    gap = abs(float(first.years) - float(second.years))
    combined = float(np.hypot(first.std or 0.0, second.std or 0.0))
    return gap > AGE_DISAGREE_YEARS and gap > 2 * combined


def frame_accounting(frames: int, found: int, lost: int) -> str:
    """Every analysed frame counted once: followed, lost while followed, or outside the face's track."""
    outside = max(int(frames) - int(found) - int(lost), 0)
    text = (f"the face was followed in {found}, lost in {lost} while it was being followed "
            "(a fit failed its checks; nothing is filled in)")
    if outside:
        text += f", and {outside} lie outside its track (before it was first found or after it was given up)"
    return text


def disagreement(dynamics: GenderEstimate | None, appearance: GenderEstimate | None, *,
                 demonstration: bool, dynamics_age: AgeEstimate | None = None,
                 appearance_age: AgeEstimate | None = None) -> str | None:
    """Plain sentences on how far the two sources' gender (and age) estimates can be read, else None.

    * the appearance model unsure (inside the band, or its frames disagree): say that no label can be
      read, whatever FDIN says;
    * the two labels (or ages) disagree: say so; only when the appearance estimate is itself sure and
      FDIN's weights are a demonstration, say which one to go by. No sentence ever recommends an
      estimate that is itself uncertain.
    """
    lines = []
    fdin_side = "the FDIN demonstration weights" if demonstration else "FDIN (facial dynamics)"
    if appearance is not None:
        a_call = gender_call(appearance.p_female, appearance.std)
        d_call = gender_call(dynamics.p_female, dynamics.std) if dynamics is not None else None
        if a_call == "uncertain":
            why = (f"its frames disagree (±{round(100 * appearance.std)} points)"
                   if appearance.std is not None and appearance.std >= MAX_GENDER_SPREAD
                   else f"its score is {_side_score(appearance.p_female)}")
            fdin_says = (f" {fdin_side[0].upper()}{fdin_side[1:]} say {d_call}, "
                         + ("but that output only demonstrates the method." if demonstration
                            else "with no second opinion to check it against.")
                         if d_call not in (None, "uncertain") else "")
            lines.append(f"**Apparent gender: uncertain.** The appearance model is unsure on this input: {why}."
                         f"{fdin_says} No gender label should be read from this result.")
        elif d_call not in (None, "uncertain", a_call):
            lines.append(f"**The two gender estimates disagree:** the appearance model says {a_call}, "
                         f"{fdin_side} say {d_call}."
                         + (" Go by the appearance model (trained on real faces); the FDIN output only "
                            "demonstrates the method." if demonstration
                            else " Treat the apparent gender as uncertain."))
    if ages_disagree(dynamics_age, appearance_age):
        sure = not age_uncertain(appearance_age)
        lines.append(f"**The two age estimates disagree:** the appearance model says about "
                     f"{appearance_age.years:.0f} years, {fdin_side} say about {dynamics_age.years:.0f}."
                     + (" Go by the appearance model's age; the FDIN output only demonstrates the method."
                        if demonstration and sure else " Treat the apparent age as uncertain."))
    return "\n\n".join(lines) or None


#: Said once per result, under the estimates (the numbers are the models' own scores).
HOW_SURE = ("*How sure: percentages are each model's score for the side it leans to, not a measured "
            "probability of being right. A gender score between 25 % and 75 %, or one that varies by "
            "±25 points or more from frame to frame, is shown as **uncertain**; so is an age whose "
            "uncertainty (±) reaches 10 years.*")
#: Said once per result: region names are the subject's own left and right.
SUBJECT_SIDES = ("Left and right in region names are the subject's own: the left eye is the one on the "
                 "right of the picture.")


def effect_text(effect: Any, target: str) -> str:
    """``"42 points toward female"`` / ``"6 years toward younger"``: one pair's effect on the estimate
    (gender in points of the female score, as the summary shows it)."""
    if target == "gender":
        return f"{abs(effect.effect) * 100:.0f} points toward {effect.toward}"
    return f"{abs(effect.effect):.0f} years toward {effect.toward}"


def relation_sentence(attribution: Any, target: str = "gender", k: int = 1) -> str | None:
    """What the summary says about the region pairs behind the ``target`` estimate, from the
    per-estimate attribution (never from the learned importance, which can be a gate that did not move
    this estimate): the pair(s) whose removal changes the estimate most, or that no relation stands
    out when no pair's effect exceeds the noise level. None for weights without an attribution."""
    from fdin.viz import pretty_name

    if attribution is None or target not in attribution.by_target:
        return None
    salient = attribution.salient(target, k=k)
    noise = float(attribution.noise.get(target, 0.0))
    level = f"±{noise * 100:.0f} points" if target == "gender" else f"±{noise:.0f} years"
    if not salient:
        return (f"**No relation stands out** for the {target} estimate: removing any one region pair changes it "
                f"by no more than on inputs without any signal ({level}).")
    pairs = "; ".join(f"**{' – '.join(pretty_name(r) for r in e.regions)}** ({effect_text(e, target)})"
                      for e in salient)
    return (f"Region pair{'s' if len(salient) > 1 else ''} that moved the {target} estimate most: {pairs}; "
            f"the effect of removing the pair (noise level {level}). The importance heatmaps show "
            "the model's learned weighting, which is not the same thing.")


def drawn_relations(result: Any, k: int = 3) -> list[Any]:
    """The pairs drawn on the face: the gender estimate's salient pairs (line width = |effect|), none
    when no relation stands out or the weights carry no attribution."""
    attribution = getattr(result, "attribution", None)
    return [] if attribution is None else attribution.salient("gender", k=k)


def summary_markdown(result: Any, notes: list[str] | tuple[str, ...] = ()) -> str:
    """The trait-estimation summary of a :class:`fdin.analyze.TraitResult` (``notes``: the decoder's).
    The appearance model (trained on real faces) comes first; FDIN's column is labelled a demonstration
    output when its weights were trained on data fdin generated."""

    dyn, app = result.dynamics, result.appearance
    demo = bool(result.synthetic_weights)
    frames = f"{app.frames} frames" if app.frames else "no frame had an estimate"
    fdin_head = ("from facial dynamics (FDIN, demonstration)" if demo
                 else "from facial dynamics (FDIN)")
    rows = [  # one row per source: three narrow columns that read on a 390 px phone
        "| | apparent gender | apparent age |",
        "|---|---|---|",
        f"| from appearance ({frames}) | {gender_text(app.gender)} | {age_text(app.age)} |",
        f"| {fdin_head} | {gender_text(dyn.gender)} | {age_text(dyn.age)} |",
    ]
    lines = ["\n".join(rows)]
    differ = disagreement(dyn.gender, app.gender, demonstration=demo, dynamics_age=dyn.age,
                          appearance_age=app.age)
    if differ:
        lines.append(differ)
    lines.append(HOW_SURE)
    sentence = relation_sentence(getattr(result, "attribution", None), "gender")
    if sentence:
        lines.append(sentence)
    track = result.face_track
    lines.append(SUBJECT_SIDES)
    lines.append(f"Analysed {result.frames_analyzed} frames ({fps_text(result.fps)}): "
                 f"{frame_accounting(result.frames_analyzed, track.found, track.lost)}. "
                 f"The appearance row averages the appearance model over {app.frames or 0} of the "
                 f"{track.found} frames with the face (a few frames spread over the clip).")
    lines += [f"Note: {html.escape(str(note))}" for note in notes]
    if demo:
        lines.append(f"*The FDIN weights: {SYNTHETIC_WEIGHTS_NOTE}*")
    return "\n\n".join(lines)


def fps_text(fps: float) -> str:
    """``"25 frames per second"``, ``"about 15 frames per second"`` (no false precision)."""
    value = float(fps)
    if abs(value - round(value)) < 0.01:
        return f"{round(value)} frames per second"
    return f"about {value:.0f} frames per second" if value >= 3 else f"about {value:.1f} frames per second"


def faces_status(count: int, width: int, height: int, faces: Any = ()) -> str:
    """What the Faces tab says about a photo's faces: how many, or that there is none and why, and
    which of ``faces`` (numbered from 1) had a failed landmark fit (``Face.fit_score`` < 0.5)."""
    failed = [i + 1 for i, f in enumerate(faces) if getattr(f, "fit_score", None) is not None and f.fit_score < 0.5]
    if count:
        text = f"Found {count} face{'s' if count != 1 else ''} (numbered 1, 2, … from left to right)."
        if failed:
            which = ", ".join(str(i) for i in failed)
            text += (f" **The landmark fit failed on face {which}** (fit score below 0.5: typically a full "
                     "profile, a heavily blurred or occluded face): its landmarks, head pose and expression "
                     "are not reliable.")
        return text
    small = " The photo is very small." if min(width, height) < 64 else ""
    return (f"**No face found** in this {width}×{height} photo.{small} fdin finds faces roughly facing the "
            "camera and at least about 40 pixels wide; try a closer, frontal, well-lit photo.")


def for_display(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upscale a small frame (and its landmarks) to :data:`DISPLAY_MIN_SIDE` for drawing."""
    import cv2

    scale = DISPLAY_MIN_SIDE / max(frame.shape[:2])
    if scale <= 1.0:
        return frame, landmarks
    size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
    return cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC), np.asarray(landmarks) * scale


def apex_index(landmarks: np.ndarray) -> int:
    """Index (into the track) of the frame whose landmarks moved most from the first frame, in
    inter-ocular distances."""
    lms = np.asarray(landmarks, dtype=np.float64)
    iod = np.linalg.norm(lms[:, 42:48].mean(1) - lms[:, 36:42].mean(1), axis=1)
    centred = lms - lms.mean(axis=1, keepdims=True)
    motion = np.linalg.norm(centred - centred[:1], axis=2).mean(axis=1) / np.maximum(iod, 1e-6)
    return int(np.argmax(motion))


def bbox_of(landmarks: np.ndarray) -> list[float]:
    x0, y0 = np.min(landmarks, axis=0)
    x1, y1 = np.max(landmarks, axis=0)
    return [float(x0), float(y0), float(x1), float(y1)]


def keyframe(video: Any, result: Any) -> np.ndarray:
    """The expression peak with the region pairs that moved the gender estimate drawn (line width =
    |effect|; none when no relation stands out)."""
    from fdin import viz
    from fdin.labels import REGION_NAMES

    apex = apex_index(result.landmarks)
    frame, landmarks = for_display(video.frames[int(result.frame_indices[apex])], result.landmarks[apex])
    return viz.draw_regions_and_relations(frame, landmarks, REGION_NAMES, drawn_relations(result))


def annotated_clip(video: Any, result: Any, folder: Path) -> str:
    """The clip with landmarks, regions and the pairs that moved the gender estimate drawn on every
    frame where the face was found, as H.264 MP4 in ``folder``."""
    from fdin import viz
    from fdin.labels import REGION_NAMES
    from fdin.media import write_video

    by_frame = {int(i): k for k, i in enumerate(result.frame_indices)}
    relations = drawn_relations(result)
    out = []
    for n, frame in enumerate(video.frames):
        k = by_frame.get(n)
        big, lms = for_display(frame, result.landmarks[0 if k is None else k])
        if k is None:  # the face was not found in this frame: show it as it is
            out.append(big)
            continue
        drawn = viz.draw_faces(big, [{"bbox": bbox_of(lms), "landmarks": lms}], labels=[""])
        out.append(viz.draw_regions_and_relations(drawn, lms, REGION_NAMES, relations))
    return str(write_video(np.stack(out), video.fps, folder / "annotated.mp4",
                           timestamps=np.asarray(video.timestamps)))


def analysis_plots(result: Any) -> tuple[Any, Any, Any]:
    """(gender heatmap, age heatmap, region dynamics) Plotly figures of a trait result."""
    from fdin import viz
    from fdin.labels import REGION_NAMES

    regions = list(result.importance.regions)
    # short titles (a 390 px phone shows ~35 characters); the demonstration note on its own line
    tag = "<br><sup>demonstration weights</sup>" if getattr(result, "synthetic_weights", False) else ""
    heat_gender = viz.importance_heatmap(regions, np.asarray(result.importance.by_target["gender"]),
                                         title=f"Pair importance: gender{tag}")
    heat_age = viz.importance_heatmap(regions, np.asarray(result.importance.by_target["age"]),
                                      title=f"Pair importance: age{tag}")
    names = list(result.channel_names)
    magnitude = names.index("magnitude") if "magnitude" in names else 0
    dynamics = viz.region_dynamics(result.time, np.asarray(result.trajectories)[:, :, magnitude], REGION_NAMES,
                                   ylabel="movement (eye distances)")
    return heat_gender, heat_age, dynamics


def canvas(image_a: np.ndarray, image_b: np.ndarray | None) -> np.ndarray:
    """The frame the relation cue uses: photo A, and photo B to its right (tops aligned)."""
    if image_b is None:
        return image_a
    h = max(image_a.shape[0], image_b.shape[0])
    out = np.full((h, image_a.shape[1] + image_b.shape[1], 3), 245, dtype=np.uint8)
    out[: image_a.shape[0], : image_a.shape[1]] = image_a
    out[: image_b.shape[0], image_a.shape[1]:] = image_b
    return out


def matrix_plot(payload: dict[str, Any] | None, trait: str) -> Any:
    """The relation matrix for ``trait`` from a relate JSON payload (3+ faces), else None."""
    from fdin import viz

    if not payload or len(payload.get("faces", [])) < 3:
        return None
    return viz.relation_matrix(len(payload["faces"]), payload["pairs"], trait)


DEMO_TAG = "<br><sup>demonstration model</sup>"  # its own line: titles stay short on a 390 px phone


def trait_chart(pairs: Any, *, demonstration: bool) -> Any:
    """The relation traits of every pair: bars for a single pair (two faces: one score per trait,
    readable), a pairs × traits heatmap for more. Titled a demonstration when the weights are."""
    from fdin import viz

    tag = DEMO_TAG if demonstration else ""
    pairs = list(pairs)
    if len(pairs) == 1:
        a, b = (int(i) + 1 for i in pairs[0].faces)
        return viz.trait_bars(pairs, title=f"Relation traits of faces {a} and {b}{tag}")
    count = f"{len(pairs)} pair" + ("s" if len(pairs) != 1 else "")
    return viz.trait_heatmap(pairs, title=f"Relation traits, {count}{tag}")


def matrix_data(faces: int, pairs: Any, demonstration: bool = True) -> tuple[int, tuple[Any, ...], bool] | None:
    """What a session keeps for matrix redraws: ``(faces, pairs, demonstration)`` for 3 to
    :data:`~fdin.app.settings.MATRIX_MAX_FACES` faces, else None (no matrix)."""
    from fdin.app import settings

    if faces < 3 or faces > settings.MATRIX_MAX_FACES:
        return None
    return faces, tuple(pairs), bool(demonstration)


def matrix_plot_of(kept: tuple[Any, ...] | None, trait: str) -> Any:
    """The relation matrix for ``trait`` from what a session keeps server-side (``(faces, pairs,
    demonstration)`` of :func:`matrix_data`), else None."""
    from fdin import viz

    if not kept:
        return None
    faces, pairs = kept[0], kept[1]
    demonstration = bool(kept[2]) if len(kept) > 2 else True
    title = f"{viz.pretty_name(trait).capitalize()} across all pairs" + (DEMO_TAG if demonstration else "")
    return viz.relation_matrix(int(faces), pairs, trait, title=title)
