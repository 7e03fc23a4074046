"""The Blocks: tabs, components and event wiring. :func:`build_demo` is cheap: it loads no model and
generates no media (examples are shown only when their files are already in the cache folder,
see :mod:`fdin.app.examples`).

Design notes:

* **Gradio never decodes user media.** :class:`RawImage`/:class:`RawVideo` hand the handler the path
  of the uploaded file unchanged (stock ``gr.Image`` opens it with Pillow first, stock ``gr.Video``
  with ``include_audio=False`` re-muxes it with the system ffmpeg, which has no demuxer whitelist).
* **Webcam mirroring**: ``WebcamOptions(mirror=False)``. A mirrored face swaps image left/right, so
  every ``*_left``/``*_right`` region name would be wrong; unmirrored, what the server analyses is
  what the camera saw and region names stay subject-centric.
* **Consent** (R-33): a checkbox enables the buttons in the browser. It gates the UI only; the API
  endpoints do not take it (API users read the same notice in the "Models & API" tab).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from fdin.app import examples as ex
from fdin.app import settings, texts
from fdin.app.handlers import Handlers
from fdin.app.predictors import Predictors
from fdin.app.ratelimit import RateLimiter
from fdin.app.rendering import FACE_COLUMNS


class RawImage(gr.Image):
    """``gr.Image`` whose preprocess hands over the uploaded file's path without opening it."""

    is_template = True  # renders with the stock image frontend

    def preprocess(self, payload: Any) -> str | None:
        return None if payload is None else str(payload.path)


class RawVideo(gr.Video):
    """``gr.Video`` whose preprocess hands over the uploaded file's path without converting it."""

    is_template = True

    def preprocess(self, payload: Any) -> str | None:
        return None if payload is None else str(payload.path)


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def build_demo(predictors: Predictors | None = None, *, examples: str | None = None,
               rate_limiter: RateLimiter | None = None, handlers: Handlers | None = None) -> gr.Blocks:
    """Build the app around ``predictors`` (default: the real ones, loaded on first use).
    ``examples``: "lazy", "eager" or "off" (default: ``FDIN_EXAMPLES``, else "lazy"); examples appear
    when their files are in the cache folder (``app.py`` prepares them before building)."""
    mode = ex.examples_mode(examples)
    h = handlers if handlers is not None else Handlers(predictors, rate_limiter=rate_limiter)
    folder = ex.examples_dir()
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(folder / "cached"))
    clip = _existing(folder / ex.CLIP_NAME) if mode != "off" else None
    photos = {k: p for k, p in (("group", _existing(folder / ex.GROUP_NAME)),
                                ("astronaut", _existing(folder / ex.ASTRONAUT_NAME))) if p} if mode != "off" else {}
    model_event = {"concurrency_id": settings.MODEL_CONCURRENCY_ID, "concurrency_limit": settings.MODEL_CONCURRENCY}
    example_args = {"cache_examples": True, "cache_mode": mode, "api_visibility": "private"}
    buttons: list[gr.Button] = []

    with gr.Blocks(title=texts.TITLE, analytics_enabled=False, delete_cache=settings.DELETE_CACHE) as demo:
        gr.Markdown(texts.INTRO)
        gr.Markdown(texts.NOTICE, elem_id="fdin-notice")
        consent = gr.Checkbox(label=texts.CONSENT, value=False, elem_id="fdin-consent")

        with gr.Tab("Trait estimation", id="traits"):
            with gr.Row():
                with gr.Column(scale=1):
                    video_in = RawVideo(label="Video of one face (a smile works best; first 20 s used)",
                                        sources=["upload", "webcam"], include_audio=False,
                                        webcam_options=gr.WebcamOptions(mirror=False), height=360,
                                        elem_id="video-in")
                    analyze_btn = gr.Button("Analyse video", variant="primary", interactive=False,
                                            elem_id="analyze-btn")
                    buttons.append(analyze_btn)
                    summary = gr.Markdown(elem_id="analysis-summary")
                    json_file = gr.File(label="Download the JSON", interactive=False, height=90)
                with gr.Column(scale=1):
                    clip_out = gr.Video(label="Annotated playback (landmarks, regions, top relations)",
                                        interactive=False, height=360)
                    keyframe = gr.Image(label="Top region relations at the expression peak (width = importance)",
                                        interactive=False, height=360)
            with gr.Row():
                heat_gender = gr.Plot(label="Relational importance (gender)", elem_id="heat-gender")
                heat_age = gr.Plot(label="Relational importance (age)", elem_id="heat-age")
            dynamics_plot = gr.Plot(label="Region dynamics over time", elem_id="region-dynamics")
            with gr.Accordion("JSON (same as `fdin analyze`)", open=False):
                analysis_json = gr.JSON(label="analysis")
            analyze_outputs = [analysis_json, summary, clip_out, keyframe, heat_gender, heat_age, dynamics_plot,
                               json_file]
            analyze_btn.click(h.analyze_video, inputs=video_in, outputs=analyze_outputs, api_name="analyze_video",
                              **model_event)
            if clip:
                gr.Examples([[clip]], inputs=video_in, outputs=analyze_outputs, fn=h.analyze_video,
                            label="Example: a smile generated by fdin from a real photo", **example_args)

        with gr.Tab("Relations", id="relations"):
            traits = texts.trait_names()
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        photo_a = RawImage(label="Group photo, or first photo", sources=["upload", "webcam"],
                                           type="filepath", height=300, elem_id="photo-a")
                        photo_b = RawImage(label="Second photo (optional)", sources=["upload", "webcam"],
                                           type="filepath", height=300, elem_id="photo-b")
                    trait_in = gr.Dropdown(choices=traits, value="warm" if "warm" in traits else traits[0],
                                           label="Trait for the relation matrix (3+ faces)")
                    relate_btn = gr.Button("Relate faces", variant="primary", interactive=False,
                                           elem_id="relate-btn")
                    buttons.append(relate_btn)
                with gr.Column(scale=1):
                    relate_image = gr.Image(label="Faces (numbered left to right)", interactive=False, height=360)
            faces_table = gr.Dataframe(headers=FACE_COLUMNS, label="Per face", interactive=False)
            trait_chart = gr.Plot(label="Relation traits per pair", elem_id="trait-chart")
            matrix_plot = gr.Plot(label="Relation matrix across all pairs (group photos with 3+ faces)",
                                  elem_id="relation-matrix")
            with gr.Accordion("JSON (same as `fdin relate`)", open=False):
                relate_json = gr.JSON(label="relations")
            relate_outputs = [relate_json, relate_image, faces_table, trait_chart, matrix_plot]
            relate_btn.click(h.relate_photos, inputs=[photo_a, photo_b, trait_in], outputs=relate_outputs,
                             api_name="relate_photos", **model_event)
            trait_in.change(h.rerender_matrix, inputs=[relate_json, trait_in], outputs=matrix_plot,
                            api_visibility="private", queue=False)
            if "group" in photos:
                gr.Examples([[photos["group"]]], inputs=[photo_a], outputs=relate_outputs, fn=h.relate_photos,
                            label="Example: a group photo shipped with insightface", **example_args)

        with gr.Tab("Faces", id="faces"):
            with gr.Row():
                with gr.Column(scale=1):
                    faces_in = RawImage(label="Photo", sources=["upload", "webcam"], type="filepath", height=360,
                                        elem_id="faces-in")
                    faces_btn = gr.Button("Detect faces", variant="primary", interactive=False,
                                          elem_id="faces-btn")
                    buttons.append(faces_btn)
                with gr.Column(scale=1):
                    faces_image = gr.Image(label="Faces, boxes and 68 landmarks", interactive=False, height=360)
            with gr.Accordion("JSON (same as `fdin faces`)", open=True):
                faces_json = gr.JSON(label="faces")
            faces_btn.click(h.detect_faces, inputs=faces_in, outputs=[faces_json, faces_image],
                            api_name="detect_faces", **model_event)
            if photos:
                gr.Examples([[p] for p in photos.values()], inputs=faces_in, outputs=[faces_json, faces_image],
                            fn=h.detect_faces, label="Examples: photos shipped with insightface and scikit-image",
                            **example_args)

        with gr.Tab("Models & API", id="models"):
            gr.Markdown(texts.models_markdown())
            gr.Markdown(texts.API_MARKDOWN)
            gr.Markdown(texts.DISCLAIMERS)

        consent.change(lambda ok: [gr.Button(interactive=bool(ok)) for _ in buttons], inputs=consent,
                       outputs=buttons, api_visibility="private", queue=False)
    return demo
