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
* **Consent** (R-33): a checkbox enables the buttons in the browser; until it is ticked each button
  says so (:data:`~fdin.app.texts.CONSENT_HINT`). Examples only fill the input (``run_on_click=False``),
  so they too run through the gated button. The API endpoints do not take a consent argument: the API
  help (Models & API tab) states that calling them is the caller's own statement of the same consent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from fdin.app import examples as ex
from fdin.app import settings, storage, texts
from fdin.app.blocks import GuardedBlocks, seal_events
from fdin.app.face_table import FACE_COLUMNS
from fdin.app.handlers import Handlers
from fdin.app.predictors import Predictors
from fdin.app.ratelimit import RateLimiter


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


class LiveWebcam(gr.Image):
    """Streaming webcam input whose preprocess hands over the frame's in-memory data URL unchanged
    (decoded with size bounds by :mod:`fdin.app.live`); a file reference is refused (no file reads)."""

    is_template = True

    def preprocess(self, payload: Any) -> str | None:
        url = getattr(payload, "url", None)
        return url if isinstance(url, str) and url.startswith("data:image/") else None


class LiveOverlay(gr.Image):
    """Image output that sends an in-memory data URL as it is (no file in the cache per frame)."""

    is_template = True

    def postprocess(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("data:image/"):
            from gradio.data_classes import Base64ImageData

            return Base64ImageData(url=value)
        return super().postprocess(value)


def cleared(count: int, hide: tuple[int, ...] = ()) -> Any:
    """An event function emptying ``count`` outputs (a new input leaves no stale result); the plots at
    positions ``hide`` are hidden as well (no empty box)."""

    def clear_outputs() -> Any:
        values = tuple(gr.Plot(value=None, visible=False) if k in hide else None for k in range(count))
        return values[0] if count == 1 else values

    return clear_outputs


def show_matrix(kept: Any) -> Any:
    """After a relation result (or a new photo): the matrix plot and its trait dropdown are shown for
    3+ faces (``kept`` holds their data) and hidden otherwise, rather than left as an empty box and a
    choice that changes nothing (two faces have no matrix). Only visibility changes: the dropdown
    stays an input of ``/relate_photos`` (its value still reaches the API). Reads the session's own
    state only."""
    return gr.Plot(visible=bool(kept)), gr.Dropdown(visible=bool(kept))


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def build_demo(predictors: Predictors | None = None, *, examples: str | None = None,
               rate_limiter: RateLimiter | None = None, handlers: Handlers | None = None) -> gr.Blocks:
    """Build the app around ``predictors`` (default: the real ones, loaded on first use).
    ``examples``: "lazy", "eager" or "off" (default: ``FDIN_EXAMPLES``, else "lazy"); examples appear
    (except "off") when their files are in the cache folder (``app.py`` prepares them before building).
    A click on an example only fills the input; the consent-gated button runs it."""
    mode = ex.examples_mode(examples)
    store = storage.current()  # this instance's private folder: Gradio's cache and fdin's scratch
    os.environ["GRADIO_TEMP_DIR"] = str(store.gradio)
    h = handlers if handlers is not None else Handlers(predictors, rate_limiter=rate_limiter)
    folder = ex.examples_dir()
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(folder / "cached"))
    clip = _existing(folder / ex.CLIP_NAME) if mode != "off" else None
    photos = {k: p for k, p in (("group", _existing(folder / ex.GROUP_NAME)),
                                ("astronaut", _existing(folder / ex.ASTRONAUT_NAME))) if p} if mode != "off" else {}
    model_event = {"concurrency_id": settings.MODEL_CONCURRENCY_ID, "concurrency_limit": settings.MODEL_CONCURRENCY}
    example_args = {"cache_examples": False, "run_on_click": False, "api_visibility": "private"}
    buttons: list[tuple[gr.Button, str]] = []  # (button, its label once consent is given)

    with GuardedBlocks(title=texts.TITLE, analytics_enabled=False, delete_cache=settings.DELETE_CACHE) as demo:
        gr.Markdown(texts.INTRO)
        gr.Markdown(texts.NOTICE_SHORT, elem_id="fdin-notice")
        with gr.Accordion("More about your media and the models", open=False):
            gr.Markdown(texts.NOTICE)
        consent = gr.Checkbox(label=texts.CONSENT, value=False, elem_id="fdin-consent")

        with gr.Tab("Traits", id="traits") as tab_traits:
            with gr.Row():
                with gr.Column(scale=1):
                    video_in = RawVideo(label="Video of one face (a smile works best; first 20 s used)",
                                        sources=["upload", "webcam"], include_audio=False,
                                        webcam_options=gr.WebcamOptions(mirror=False), height=360,
                                        elem_id="video-in")
                    if clip:  # right under the input: visible without scrolling; fills the input only
                        gr.Examples([[clip]], inputs=video_in, label="Example: a smile generated by fdin from a "
                                    "real photo", **example_args)
                    preview_note = gr.Markdown(label="preview note", elem_id="preview-note")
                    browser_plays = gr.Checkbox(value=True, visible=False)  # set by PREVIEW_CHECK_JS
                    analyze_btn = gr.Button(texts.CONSENT_HINT, variant="primary", interactive=False,
                                            elem_id="analyze-btn")
                    buttons.append((analyze_btn, "Analyse video"))
                with gr.Column(scale=1):  # the result first: on a desktop it starts near the top of the screen
                    summary = gr.Markdown(label="summary", elem_id="analysis-summary", elem_classes=["fdin-words"])
                    clip_out = gr.Video(label="Annotated playback (landmarks, regions, pairs that moved the estimate)",
                                        interactive=False, height=360)
                    keyframe = gr.Image(label="Pairs that moved the gender estimate, at the expression peak (width = effect)",
                                        interactive=False, height=360)
                    gr.Markdown(texts.DRAWING_LEGEND, elem_classes=["fdin-legend"])
                    json_file = gr.File(label="Download the JSON", interactive=False, height=90)
            with gr.Row():  # columns wrap under each other on a phone instead of squeezing the heatmaps
                with gr.Column(min_width=360):
                    heat_gender = gr.Plot(label="Relational importance (gender)", elem_id="heat-gender")
                with gr.Column(min_width=360):
                    heat_age = gr.Plot(label="Relational importance (age)", elem_id="heat-age")
            dynamics_plot = gr.Plot(label="Region dynamics over time", elem_id="region-dynamics")
            with gr.Accordion("JSON (same as `fdin analyze`)", open=False):
                analysis_json = gr.JSON(label="analysis")
            analyze_outputs = [analysis_json, summary, clip_out, keyframe, heat_gender, heat_age, dynamics_plot,
                               json_file]
            analyze_btn.click(h.analyze_video, inputs=video_in, outputs=analyze_outputs, api_name="analyze_video",
                              **model_event)
            # a new input (upload, recording, example, cleared) empties every output: nothing stale stays
            video_in.change(cleared(len(analyze_outputs)), inputs=None, outputs=analyze_outputs, queue=False,
                            api_visibility="private", show_progress="hidden")
            video_in.upload(h.preview_note, inputs=[video_in, browser_plays], outputs=preview_note,
                            js=texts.PREVIEW_CHECK_JS, queue=False, api_visibility="private", show_progress="hidden")
            video_in.clear(cleared(1), inputs=None, outputs=preview_note, queue=False, api_visibility="private",
                           show_progress="hidden")

        with gr.Tab("Live", id="live") as tab_live:
            gr.Markdown(texts.LIVE_HELP)
            live_state = gr.State(None, time_to_live=settings.LIVE_STATE_TTL_S,  # the buffer is freed after
                                  delete_callback=h.forget_live)
            with gr.Row():
                with gr.Column(min_width=320):
                    live_cam = LiveWebcam(label="Camera", sources=["webcam"], streaming=True, elem_id="live-cam",
                                          webcam_options=gr.WebcamOptions(
                                              mirror=False, constraints={"video": dict(zip(("width", "height"), settings.LIVE_FRAME_SIZE, strict=True))}))
                with gr.Column(min_width=320):
                    live_overlay = LiveOverlay(label="Tracked face (landmarks, regions, pairs that moved the estimate)",
                                               interactive=False, elem_id="live-overlay")
            with gr.Row():
                with gr.Column(min_width=320):
                    live_text = gr.Markdown(label="rolling estimate", elem_id="live-text", elem_classes=["fdin-words"])
                    live_btn = gr.Button(texts.CONSENT_HINT, variant="primary", interactive=False,
                                         elem_id="live-btn")
                    buttons.append((live_btn, texts.LIVE_BUTTON))
                with gr.Column(min_width=320):
                    live_heat = gr.Plot(label="Rolling relational importance (gender)", elem_id="live-heat")
            with gr.Accordion("Full analysis of the live buffer", open=True):
                live_summary = gr.Markdown(label="summary", elem_id="live-summary", elem_classes=["fdin-words"])
                with gr.Row():
                    with gr.Column(min_width=320):
                        live_clip = gr.Video(label="Annotated playback", interactive=False, height=300)
                    with gr.Column(min_width=320):
                        live_key = gr.Image(label="Pairs that moved the gender estimate, at the expression peak", interactive=False,
                                            height=300)
                with gr.Row():
                    with gr.Column(min_width=360):
                        live_heat_g = gr.Plot(label="Relational importance (gender)", elem_id="live-heat-gender")
                    with gr.Column(min_width=360):
                        live_heat_a = gr.Plot(label="Relational importance (age)")
                live_dyn = gr.Plot(label="Region dynamics over time")
                live_file = gr.File(label="Download the JSON", interactive=False, height=90)
                live_json = gr.JSON(label="analysis", visible=False)
            live_cam.stream(h.live_frame, inputs=[live_cam, live_state, consent],
                            outputs=[live_overlay, live_text, live_heat, live_state],
                            stream_every=settings.LIVE_STREAM_EVERY_S, time_limit=settings.LIVE_TIME_LIMIT_S,
                            concurrency_id="live", concurrency_limit=settings.LIVE_CONCURRENCY,
                            show_progress="hidden", api_visibility="private")
            live_outputs = [live_json, live_summary, live_clip, live_key, live_heat_g, live_heat_a, live_dyn, live_file]
            # the buffer changes all the time: the last analysis is cleared when a new one starts, so a
            # failed one ("the buffer is empty") never sits above an older result
            live_btn.click(cleared(len(live_outputs)), inputs=None, outputs=live_outputs, queue=False,
                           api_visibility="private", show_progress="hidden")
            live_btn.click(h.analyze_live, inputs=live_state, outputs=live_outputs, api_visibility="private",
                           **model_event)

        with gr.Tab("Relations", id="relations") as tab_relations:
            traits = texts.trait_names()
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Row():
                        photo_a = RawImage(label="Group photo, or first photo", sources=["upload", "webcam"],
                                           type="filepath", height=300, elem_id="photo-a")
                        photo_b = RawImage(label="Second photo (optional)", sources=["upload", "webcam"],
                                           type="filepath", height=300, elem_id="photo-b")
                    trait_in = gr.Dropdown(choices=traits, value="warm" if "warm" in traits else traits[0],
                                           label="Trait for the relation matrix (3+ faces)", visible=False,
                                           elem_id="trait-in")
                    if "group" in photos:
                        gr.Examples([[photos["group"]]], inputs=[photo_a],
                                    label="Example: a group photo shipped with insightface", **example_args)
                    relate_btn = gr.Button(texts.CONSENT_HINT, variant="primary", interactive=False,
                                           elem_id="relate-btn")
                    buttons.append((relate_btn, "Relate faces"))
                with gr.Column(scale=1):
                    gr.Markdown("Faces found, numbered 1, 2, … from left to right", elem_classes=["fdin-legend"])
                    relate_image = gr.Image(label="Faces (numbered left to right)", show_label=False,
                                            interactive=False, height=360)
            gr.Markdown(texts.RELATIONS_NOTE, elem_classes=["fdin-legend"])
            gr.Markdown(texts.SCROLL_HINT, elem_classes=["fdin-scroll-hint"])
            faces_table = gr.Dataframe(headers=FACE_COLUMNS, label="Per face", interactive=False, wrap=True,
                                       elem_id="faces-table", elem_classes=["fdin-table"])
            trait_chart = gr.Plot(label="Relation traits, every pair", elem_id="trait-chart")
            matrix_plot = gr.Plot(label="Relation matrix across all pairs (group photos with 3+ faces)",
                                  elem_id="relation-matrix", visible=False)
            with gr.Accordion("JSON (same as `fdin relate`)", open=False):
                relate_json = gr.JSON(label="relations")
            relate_outputs = [relate_json, relate_image, faces_table, trait_chart, matrix_plot]
            # the last result's matrix data, kept on the server per session (never sent by the client)
            matrix_kept = gr.State(None, time_to_live=settings.SCRATCH_MAX_AGE_S)
            for photo in (photo_a, photo_b):  # a new photo empties every output of the tab
                photo.change(cleared(len(relate_outputs) + 1, hide=(relate_outputs.index(matrix_plot),)),
                             inputs=None, outputs=[*relate_outputs, matrix_kept], queue=False,
                             api_visibility="private", show_progress="hidden"
                             ).then(show_matrix, inputs=matrix_kept, outputs=[matrix_plot, trait_in], queue=False,
                                    api_visibility="private", show_progress="hidden")
            relate_btn.click(h.relate_photos_ui, inputs=[photo_a, photo_b, trait_in],
                             outputs=[*relate_outputs, matrix_kept], api_name="relate_photos", **model_event
                             ).then(show_matrix, inputs=matrix_kept, outputs=[matrix_plot, trait_in], queue=False,
                                    api_visibility="private", show_progress="hidden")
            trait_in.change(h.rerender_matrix, inputs=[matrix_kept, trait_in], outputs=matrix_plot,
                            api_visibility="private", queue=False)

        with gr.Tab("Faces", id="faces") as tab_faces:
            with gr.Row():
                with gr.Column(scale=1):
                    faces_in = RawImage(label="Photo", sources=["upload", "webcam"], type="filepath", height=360,
                                        elem_id="faces-in")
                    if photos:
                        gr.Examples([[p] for p in photos.values()], inputs=faces_in,
                                    label="Examples: photos shipped with insightface and scikit-image",
                                    **example_args)
                    faces_btn = gr.Button(texts.CONSENT_HINT, variant="primary", interactive=False,
                                          elem_id="faces-btn")
                    buttons.append((faces_btn, "Detect faces"))
                with gr.Column(scale=1):
                    faces_status = gr.Markdown(label="faces found", elem_id="faces-status")
                    faces_image = gr.Image(label="Faces, boxes and 68 landmarks", show_label=False,
                                           interactive=False, height=360)
            gr.Markdown(texts.SCROLL_HINT, elem_classes=["fdin-scroll-hint"])
            faces_rows = gr.Dataframe(headers=FACE_COLUMNS, label="Per face", interactive=False, wrap=True,
                                      elem_id="faces-rows", elem_classes=["fdin-table"])
            with gr.Accordion("JSON (same as `fdin faces`)", open=True):
                faces_json = gr.JSON(label="faces")
            faces_outputs = [faces_json, faces_image, faces_status, faces_rows]
            faces_btn.click(h.detect_faces, inputs=faces_in, outputs=faces_outputs, api_name="detect_faces",
                            **model_event)
            faces_in.change(cleared(len(faces_outputs)), inputs=None, outputs=faces_outputs, queue=False,
                            api_visibility="private", show_progress="hidden")

        with gr.Tab("About & API", id="models") as tab_models:
            gr.Markdown(texts.API_MARKDOWN, elem_id="api-help", elem_classes=["fdin-words"])  # first: what a developer comes for
            gr.Markdown(texts.DISCLAIMERS, elem_classes=["fdin-words"])
            gr.Markdown(texts.SCROLL_HINT, elem_classes=["fdin-scroll-hint"])
            gr.Markdown(texts.models_markdown(), elem_id="models-table", elem_classes=["fdin-wide"])

        for tab in (tab_traits, tab_live, tab_relations, tab_faces, tab_models):  # a message stays in its tab
            tab.select(None, js=texts.DISMISS_TOASTS_JS, queue=False, api_visibility="private")
        consent.change(lambda ok: [gr.Button(interactive=bool(ok), value=label if ok else texts.CONSENT_HINT)
                                   for _, label in buttons],
                       inputs=consent, outputs=[b for b, _ in buttons], api_visibility="private", queue=False)
    seal_events(demo, PUBLIC_ENDPOINTS)
    demo.fdin_admission = h.admission  # installed on the queue by GuardedBlocks.queue
    demo.fdin_predictors = h.predictors  # their worker processes stop with the app (GuardedBlocks.close)
    store.keep = lambda: _kept_in_cache(demo)
    store.start_sweeper(*settings.DELETE_CACHE)
    return demo


#: The documented API; every other event is private (:func:`fdin.app.blocks.seal_events`).
PUBLIC_ENDPOINTS = {"analyze_video", "relate_photos", "detect_faces"}


def _kept_in_cache(demo: gr.Blocks) -> set[str]:
    """The example files Gradio shows (shipped photos, not user media): the purge keeps them."""
    keep: set[str] = set()
    for block in list(demo.blocks.values()):
        keep.update(str(p) for p in getattr(block, "keep_in_cache", ()) or ())
    return keep
