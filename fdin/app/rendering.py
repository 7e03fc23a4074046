"""Turning typed results into what the app shows: summary text, plots, the annotated clip and
keyframe (the per-face table: :mod:`fdin.app.face_table`). Reads result fields by name; no gradio here (plots come from
:mod:`fdin.viz`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from fdin.labels import SYNTHETIC_WEIGHTS_NOTE
from fdin.results import AgeEstimate, GenderEstimate

DISPLAY_MIN_SIDE = 640  # small frames are upscaled before drawing so overlays stay legible


def gender_text(g: GenderEstimate | None) -> str:
    """``"female (p_female 0.83, spread ±0.05 over frames)"``: the label and its plain probability
    (plain probabilities only: a probability from weights trained on generated data is no measure of trust)."""
    if g is None:
        return "–"
    spread = f", spread ±{g.std:.2f} over frames" if g.std is not None else ""
    return f"{g.label} (p_female {g.p_female:.2f}{spread})"


def age_text(a: AgeEstimate | None) -> str:
    if a is None:
        return "–"
    return f"{a.years:.0f} years" + (f" ± {a.std:.0f}" if a.std is not None else "")


def frame_accounting(frames: int, found: int, lost: int) -> str:
    """Every analysed frame counted once: followed, lost while followed, or outside the face's track."""
    outside = max(int(frames) - int(found) - int(lost), 0)
    text = (f"the face was followed in {found}, lost in {lost} while it was being followed "
            "(a fit failed its checks; nothing is filled in)")
    if outside:
        text += f", and {outside} lie outside its track (before it was first found or after it was given up)"
    return text


def disagreement(dynamics: GenderEstimate | None, appearance: GenderEstimate | None, *,
                 demonstration: bool) -> str | None:
    """A plain sentence when the FDIN and appearance gender labels differ, else None."""
    if dynamics is None or appearance is None or dynamics.label == appearance.label:
        return None
    fdin_side = "the FDIN demonstration weights" if demonstration else "FDIN (facial dynamics)"
    return (f"**The two gender estimates disagree:** the appearance model says {appearance.label}, "
            f"{fdin_side} say {dynamics.label}."
            + (" Trust the appearance model's estimate; the FDIN output only demonstrates the method."
               if demonstration else ""))


def effect_text(effect: Any, target: str) -> str:
    """``"+0.42 p_female (toward female)"`` / ``"-6.1 years (toward younger)"``: one pair's effect."""
    if target == "gender":
        return f"{effect.effect:+.2f} p_female (toward {effect.toward})"
    return f"{effect.effect:+.1f} years (toward {effect.toward})"


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
    unit = "p_female" if target == "gender" else "years"
    if not salient:
        return (f"**No relation stands out** for the {target} estimate: removing any one region pair changes it "
                f"by no more than on inputs without any signal (±{noise:.2g} {unit}).")
    pairs = "; ".join(f"**{' – '.join(pretty_name(r) for r in e.regions)}** ({effect_text(e, target)})"
                      for e in salient)
    return (f"Region pair{'s' if len(salient) > 1 else ''} that moved the {target} estimate most: {pairs}; "
            f"the effect of removing the pair (noise level ±{noise:.2g} {unit}). The importance heatmaps show "
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
    frames = f"averaged over {app.frames} frames" if app.frames else "no frame had an estimate"
    fdin_head = ("from facial dynamics (FDIN), demonstration output" if demo
                 else "from facial dynamics (FDIN)")
    rows = [
        f"| | from appearance ({frames}) | {fdin_head} |",
        "|---|---|---|",
        f"| apparent gender | {gender_text(app.gender)} | {gender_text(dyn.gender)} |",
        f"| apparent age | {age_text(app.age)} | {age_text(dyn.age)} |",
    ]
    lines = ["\n".join(rows)]
    differ = disagreement(dyn.gender, app.gender, demonstration=demo)
    if differ:
        lines.append(differ)
    sentence = relation_sentence(getattr(result, "attribution", None), "gender")
    if sentence:
        lines.append(sentence)
    track = result.face_track
    lines.append(f"Analysed {result.frames_analyzed} frames at {result.fps:g} fps: "
                 f"{frame_accounting(result.frames_analyzed, track.found, track.lost)}. "
                 f"The appearance columns average the appearance model over {app.frames or 0} of the "
                 f"{track.found} frames with the face (a few frames spread over the clip).")
    lines += [f"Note: {html.escape(str(note))}" for note in notes]
    if demo:
        lines.append(f"*The FDIN weights: {SYNTHETIC_WEIGHTS_NOTE}*")
    return "\n\n".join(lines)


def faces_status(count: int, width: int, height: int) -> str:
    """What the Faces tab says about a photo's faces: how many, or that there is none and why."""
    if count:
        return f"Found {count} face{'s' if count != 1 else ''} (numbered left to right)."
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
    heat_gender = viz.importance_heatmap(regions, np.asarray(result.importance.by_target["gender"]),
                                         title="Relational importance: gender")
    heat_age = viz.importance_heatmap(regions, np.asarray(result.importance.by_target["age"]),
                                      title="Relational importance: age")
    names = list(result.channel_names)
    magnitude = names.index("magnitude") if "magnitude" in names else 0
    dynamics = viz.region_dynamics(result.time, np.asarray(result.trajectories)[:, :, magnitude], REGION_NAMES,
                                   ylabel="displacement (inter-ocular distances)")
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


def matrix_plot_of(kept: tuple[int, Any] | None, trait: str) -> Any:
    """The relation matrix for ``trait`` from what a session keeps server-side (``(faces, pairs)``
    of :func:`fdin.app.handlers.matrix_data`), else None."""
    from fdin import viz

    if not kept:
        return None
    faces, pairs = kept
    return viz.relation_matrix(int(faces), pairs, trait)
