"""Figures and drawings for the app and notebooks: Plotly figure builders and cv2/numpy overlays.

Nothing here imports gradio or touches models. Every function is pure: it takes arrays and names and
returns a new ``plotly.graph_objects.Figure`` or a new image; inputs are never modified.

Conventions:

* Images are ``(H, W, 3) uint8`` **RGB** arrays (what :func:`fdin.media.load_image` and Gradio give).
* Landmarks are ``(68, 2)`` float pixel ``xy`` in iBUG-68 order (:mod:`fdin.perception.types`).
* Region names, their landmark indices and their colours come from :mod:`fdin.regions` unless a
  caller passes them explicitly (tests do, to stay independent of the region layout).
* Every figure gets an explicit ``height``: Gradio's ``gr.Plot`` collapsed autosized figures to zero
  height in 6.18 (fixed in 6.20, kept explicit on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RGB = tuple[int, int, int]

#: Colour of face boxes (RGB) and landmark dots.
BOX_COLOUR: RGB = (40, 200, 90)
LANDMARK_COLOUR: RGB = (255, 210, 0)
RELATION_COLOUR: RGB = (255, 60, 60)
#: A colour cycle for faces and regions when no colour is given (Plotly's D3 palette, RGB).
PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def _go():
    import plotly.graph_objects as go

    return go


def pretty_name(name: str) -> str:
    """Display label of a region or trait name (``fdin.regions`` labels for regions)."""
    from fdin.regions import REGIONS

    labels = {r.name: r.label for r in REGIONS}
    return labels.get(str(name), str(name).replace("_", " "))


def _palette(i: int) -> RGB:
    return PALETTE[i % len(PALETTE)]


def _rgb_css(colour: Sequence[int]) -> str:
    r, g, b = (int(c) for c in colour[:3])
    return f"rgb({r},{g},{b})"


# --- Plotly figures ------------------------------------------------------------------------------
def importance_heatmap(regions: Sequence[str], matrix: np.ndarray, *, title: str | None = None,
                       height: int = 520) -> Any:
    """R×R heatmap of relational importance.

    Args:
        regions: the R region names; rows and columns of ``matrix`` follow this order.
        matrix: (R, R) non-negative importance (the FDIN paper's relational importance; it usually sums
            to 1 over the pairs used). Shown as given, with the value on hover.
    """
    go = _go()
    m = np.asarray(matrix, dtype=float)
    names = [pretty_name(r) for r in regions]
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(names)} regions")
    fig = go.Figure(go.Heatmap(
        z=m, x=names, y=names, colorscale="Viridis", zmin=0.0,
        hovertemplate="%{y} ↔ %{x}<br>importance %{z:.4f}<extra></extra>",
        colorbar={"title": {"text": "importance", "side": "right"}, "thickness": 12},
    ))
    fig.update_layout(
        title={"text": title or "Relational importance of region pairs"},
        height=height, margin={"l": 10, "r": 10, "t": 70, "b": 10},
        # vertical labels: 12 names never overlap, even 390 px wide (a phone)
        xaxis={"side": "bottom", "tickangle": -90, "dtick": 1, "tickfont": {"size": 10}, "automargin": True},
        yaxis={"autorange": "reversed", "dtick": 1, "tickfont": {"size": 10}, "automargin": True},
    )
    return fig


def _pair_fields(pair: Any) -> tuple[Sequence[int] | None, Mapping[str, float], str | None]:
    """``(face indices, traits, label)`` of a :class:`fdin.relate.PairTraits` (fields by name) or of its
    JSON mapping (``"faces"``/``"pair"``, ``"traits"``, optional ``"label"``)."""
    if isinstance(pair, Mapping):
        return pair.get("faces", pair.get("pair")), pair["traits"], pair.get("label")
    return pair.faces, pair.traits, None


def trait_bars(pairs: Sequence[Any], *, height: int = 420, title: str | None = None) -> Any:
    """Grouped horizontal bars: the probability of each relation trait, one colour per face pair.

    Args:
        pairs: :class:`fdin.relate.PairTraits`, or mappings with ``"traits"`` (trait name ->
            probability in [0, 1]) and optionally ``"label"`` or ``"faces"``/``"pair"`` (two indices).
    """
    go = _go()
    fig = go.Figure()
    for k, pair in enumerate(pairs):
        idx, traits, label = _pair_fields(pair)
        names = [pretty_name(t) for t in traits]
        values = [float(v) for v in traits.values()]
        label = label or _pair_label(idx, k)
        fig.add_trace(go.Bar(
            x=values, y=names, orientation="h", name=label, marker_color=_rgb_css(_palette(k)),
            hovertemplate=f"{label}<br>%{{y}}: %{{x:.2f}}<extra></extra>",
            text=[f"{v:.2f}" for v in values], textposition="outside", cliponaxis=False,
        ))
    fig.add_vline(x=0.5, line_dash="dot", line_color="grey")
    fig.update_layout(
        title={"text": title or "Relation traits (probability the trait is present)"}, barmode="group",
        height=height, margin={"l": 10, "r": 30, "t": 70, "b": 10},
        xaxis={"range": [0, 1.1], "title": {"text": "score (0 to 1)"}, "tickvals": [0, 0.25, 0.5, 0.75, 1]},
        yaxis={"autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "y": -0.2}, showlegend=len(pairs) > 1,
    )
    return fig


def trait_heatmap(pairs: Sequence[Any], *, row_height: int = 26, title: str | None = None) -> Any:
    """Pairs × traits heatmap of relation-trait probabilities: one row per face pair (every pair, however
    many), one column per trait, the probability written in each cell. Readable at any number of pairs
    (the height grows with them) where grouped bars need one colour per pair.

    Args:
        pairs: as for :func:`trait_bars`.
    """
    go = _go()
    labels, rows, traits = [], [], None
    for k, pair in enumerate(pairs):
        idx, values, label = _pair_fields(pair)
        traits = traits or list(values)
        labels.append(label or (f"{idx[0] + 1} – {idx[1] + 1}" if isinstance(idx, Sequence) and len(idx) == 2
                                else f"pair {k + 1}"))  # faces numbered from 1, as drawn
        rows.append([float(values[t]) for t in traits])
    traits = traits or []
    z = np.asarray(rows, dtype=float).reshape(len(rows), len(traits))
    names = [pretty_name(t) for t in traits]
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=labels, zmin=0.0, zmax=1.0, colorscale="RdBu_r", text=np.round(z, 2).astype(str),
        texttemplate="%{text}", textfont={"size": 10},
        hovertemplate="faces %{y}<br>%{x}: %{z:.2f}<extra></extra>",
        colorbar={"title": {"text": "score", "side": "right"}, "thickness": 10},
    ))
    count = f"{len(labels)} pair" + ("s" if len(labels) != 1 else "")
    fig.update_layout(
        title={"text": title or f"Relation traits of every pair ({count})"}, height=140 + row_height * max(len(labels), 2),
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        xaxis={"side": "top", "tickangle": -90, "dtick": 1, "tickfont": {"size": 10}, "automargin": True},
        yaxis={"autorange": "reversed", "dtick": 1, "type": "category", "title": {"text": "faces"},
               "automargin": True},
    )
    return fig


def _pair_label(idx: Sequence[int] | None, k: int) -> str:
    """Faces and pairs are numbered from 1, as drawn on the photos."""
    if isinstance(idx, Sequence) and len(idx) == 2:
        return f"face {idx[0] + 1} – face {idx[1] + 1}"
    return f"pair {k + 1}"


def relation_matrix(faces: int | Sequence[str], pairs: Sequence[Any], trait: str, *,
                    height: int = 460, title: str | None = None) -> Any:
    """N×N symmetric matrix of one trait's probability over all face pairs (diagonal empty).

    Args:
        faces: the number of faces, or their labels (index order).
        pairs: as for :func:`trait_bars`; each needs the two face indices in ``"faces"`` or ``"pair"``.
        trait: which trait to show.
    """
    go = _go()
    labels = [f"face {i + 1}" for i in range(faces)] if isinstance(faces, int) else [str(f) for f in faces]
    n = len(labels)
    z = np.full((n, n), np.nan)
    for pair in pairs:
        idx, traits, _ = _pair_fields(pair)
        i, j = (int(v) for v in idx)
        value = float(traits[trait])
        z[i, j] = z[j, i] = value
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, zmin=0.0, zmax=1.0, colorscale="RdBu_r", text=text,
        texttemplate="%{text}", hovertemplate="%{y} – %{x}<br>" + pretty_name(trait) + ": %{z:.2f}<extra></extra>",
        colorbar={"title": {"text": "score", "side": "right"}, "thickness": 10},
    ))
    fig.update_layout(title={"text": title or f"{pretty_name(trait).capitalize()} across all pairs"}, height=height,
                      margin={"l": 10, "r": 10, "t": 70, "b": 10}, yaxis={"autorange": "reversed"},
                      xaxis={"tickangle": -90 if n > 4 else 0})
    return fig


def region_dynamics(times: Sequence[float], trajectories: np.ndarray, regions: Sequence[str], *,
                    ylabel: str = "motion", height: int = 560) -> Any:
    """Per-region dynamics over time: one line per region.

    Args:
        times: (T,) seconds (decoded presentation times, so variable frame rate is shown truthfully).
        trajectories: (T, R) one scalar per frame and region (e.g. landmark displacement from the
            first frame, in face-size units), columns in ``regions`` order.
    """
    go = _go()
    t = np.asarray(times, dtype=float)
    y = np.asarray(trajectories, dtype=float)
    if y.ndim != 2 or y.shape != (len(t), len(regions)):
        raise ValueError(f"trajectories shape {y.shape} does not match ({len(t)}, {len(regions)})")
    fig = go.Figure()
    for r, name in enumerate(regions):
        fig.add_trace(go.Scatter(x=t, y=y[:, r], mode="lines", name=pretty_name(name),
                                 hovertemplate=f"{pretty_name(name)}<br>t=%{{x:.2f}} s<br>%{{y:.3f}}<extra></extra>"))
    # the legend (12 regions) sits under the plot in its own margin, so on a 390 px phone it wraps
    # into more rows without squeezing the plot or running into the axis titles
    fig.update_layout(title={"text": "Region dynamics over time"}, height=height,
                      margin={"l": 10, "r": 10, "t": 50, "b": 170},
                      xaxis={"title": {"text": "time (s)"}, "automargin": True},
                      yaxis={"title": {"text": ylabel}, "automargin": True},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "font": {"size": 10},
                              "entrywidth": 110})
    return fig


# --- drawings ------------------------------------------------------------------------------------
def _scale(image: np.ndarray) -> float:
    """Line/marker scale so overlays look the same on small and large images."""
    return max(1.0, max(image.shape[:2]) / 640.0)


def _face_fields(face: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """bbox and landmarks from a :class:`fdin.perception.types.Face` or its JSON dict."""
    if isinstance(face, Mapping):
        bbox = np.asarray(face["bbox"], dtype=float)
        lms = face.get("landmarks")
    else:
        bbox = np.asarray(face.bbox, dtype=float)
        lms = getattr(face, "landmarks", None)
    return bbox, (None if lms is None else np.asarray(lms, dtype=float).reshape(-1, 2))


def draw_faces(image: np.ndarray, faces: Sequence[Any], *, landmarks: bool = True,
               labels: Sequence[str] | None = None) -> np.ndarray:
    """Boxes, 68 landmarks and a number ("1", "2", ...) for each face, on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        faces: :class:`~fdin.perception.types.Face` objects or their ``to_json_dict()`` dicts.
        labels: text per face (defaults to its index).
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    s = _scale(out)
    thick = max(1, round(2 * s))
    for i, face in enumerate(faces):
        bbox, lms = _face_fields(face)
        colour = _palette(i)
        x0, y0, x1, y1 = (round(v) for v in bbox)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick, cv2.LINE_AA)
        if landmarks and lms is not None:
            for x, y in lms:
                cv2.circle(out, (round(x), round(y)), max(1, round(1.5 * s)), LANDMARK_COLOUR, -1, cv2.LINE_AA)
        text = labels[i] if labels is not None else str(i + 1)  # numbered from 1
        font_scale = 0.8 * s
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        ty = y0 - 4 if y0 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 6, ty + base), colour, -1)
        cv2.putText(out, text, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


def region_centres(landmarks: np.ndarray, region_points: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Mean landmark position of each region: name -> (2,) float pixel xy."""
    lms = np.asarray(landmarks, dtype=float).reshape(-1, 2)
    return {name: lms[list(idx)].mean(axis=0) for name, idx in region_points.items()}


def hex_to_rgb(colour: str | Sequence[int]) -> RGB:
    """``"#1f77b4"`` (or an RGB triple) -> ``(31, 119, 180)``."""
    if isinstance(colour, str):
        text = colour.lstrip("#")
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    r, g, b = (int(c) for c in colour[:3])
    return r, g, b


def _default_regions() -> tuple[dict[str, list[int]], dict[str, str]]:
    from fdin import regions as fr

    return dict(fr.REGION_LANDMARKS), dict(fr.REGION_COLOURS)


def draw_regions_and_relations(image: np.ndarray, landmarks: np.ndarray, regions: Sequence[str],
                               top_relations: Sequence[Any], *,
                               region_points: Mapping[str, Sequence[int]] | None = None,
                               colours: Mapping[str, str | Sequence[int]] | None = None,
                               max_width: int = 8) -> np.ndarray:
    """Region overlay plus the most important region pairs drawn on the face.

    Each region is drawn as the convex hull of its landmarks in its colour, with its centre marked;
    each relation is a line between two region centres whose width is proportional to its importance
    (the largest gets ``max_width`` pixels at 640 px image size).

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks: (68, 2) pixel xy of the face in this image.
        regions: names of the regions to draw (a subset of ``region_points``).
        top_relations: items ``(region_a, region_b, weight)``, mappings with keys
            ``a``/``b``/``importance`` (also ``regions: [a, b]``), or
            :class:`fdin.results.PairEffect` (width = ``|effect|``), in any order.
        region_points: name -> landmark indices; defaults to :mod:`fdin.regions`.
        colours: name -> hex string or RGB; defaults to :mod:`fdin.regions`, then a palette.
    """
    import cv2

    if region_points is None:
        default_points, default_colours = _default_regions()
        region_points = default_points
        colours = colours if colours is not None else default_colours
    colours = dict(colours or {})
    out = np.ascontiguousarray(image.copy())
    lms = np.asarray(landmarks, dtype=float).reshape(-1, 2)
    s = _scale(out)
    wanted = [r for r in regions if r in region_points]
    centres = region_centres(lms, {r: region_points[r] for r in wanted})

    overlay = out.copy()
    for k, name in enumerate(wanted):
        colour = hex_to_rgb(colours.get(name, _palette(k)))
        pts = np.round(lms[list(region_points[name])]).astype(np.int32)
        if len(pts) >= 3:
            cv2.fillConvexPoly(overlay, cv2.convexHull(pts), colour, cv2.LINE_AA)
        else:
            cv2.polylines(overlay, [pts], False, colour, max(1, round(2 * s)), cv2.LINE_AA)
    out = cv2.addWeighted(overlay, 0.35, out, 0.65, 0.0)

    relations = [_relation_tuple(r) for r in top_relations]
    relations = [r for r in relations if r[0] in centres and r[1] in centres]
    if relations:
        top = max(w for _, _, w in relations) or 1.0
        for a, b, w in sorted(relations, key=lambda r: r[2]):
            width = max(1, round(max_width * s * w / top))
            pa, pb = (tuple(int(v) for v in np.rint(centres[n])) for n in (a, b))
            cv2.line(out, pa, pb, (255, 255, 255), width + 2, cv2.LINE_AA)
            cv2.line(out, pa, pb, RELATION_COLOUR, width, cv2.LINE_AA)
    for k, name in enumerate(wanted):
        colour = hex_to_rgb(colours.get(name, _palette(k)))
        c = tuple(int(v) for v in np.rint(centres[name]))
        cv2.circle(out, c, max(2, round(4 * s)), colour, -1, cv2.LINE_AA)
        cv2.circle(out, c, max(2, round(4 * s)), (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _relation_tuple(item: Any) -> tuple[str, str, float]:
    if hasattr(item, "effect") and hasattr(item, "regions"):  # fdin.results.PairEffect
        a, b = item.regions
        return str(a), str(b), abs(float(item.effect))
    if isinstance(item, Mapping):
        if "regions" in item:
            a, b = item["regions"]
        else:
            a, b = item["a"], item["b"]
        return str(a), str(b), float(item["importance"])
    a, b, w = item
    return str(a), str(b), float(w)


__all__ = [
    "draw_faces",
    "draw_regions_and_relations",
    "hex_to_rgb",
    "importance_heatmap",
    "region_centres",
    "region_dynamics",
    "relation_matrix",
    "trait_bars",
    "trait_heatmap",
]
