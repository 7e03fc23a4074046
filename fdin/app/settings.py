"""The app's settings: limits, model sources (env ``FDIN_*_REPO``), and the launch/queue options.

No gradio here: :func:`server_address` and :func:`launch_kwargs` are plain functions the launcher
(``app.py``) and the tests call. Reliability items R-01..R-10 and R-30..R-33 (docs/reliability.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

MAX_FILE_SIZE = "50mb"              # per uploaded file (HTTP 413 above it)
QUEUE_MAX_SIZE = 16                 # waiting events beyond the running ones get "queue is full"
MODEL_CONCURRENCY_ID = "model"      # every model event shares these worker slots ...
MODEL_CONCURRENCY = 2               # ... two at once: one per CPU core (docs/benchmarks/speed.md)
MODEL_THREADS = 1                   # ONNX Runtime intra-op threads per relation request: 2 requests x 1 = 2 cores
ANALYSIS_WORKERS = MODEL_CONCURRENCY  # video analyses run in this many worker processes (env FDIN_ANALYSIS_WORKERS; 0: in-process)
PRELOAD_MODELS = True               # load every model in a background thread at start (env FDIN_PRELOAD=0: off)
DELETE_CACHE = (300, 600)           # every 5 min delete cached files older than 10 min: gone within 15 min
SCRATCH_MAX_AGE_S = 600
VIDEO_TIMEOUT_S = 90.0              # wall clock for decoding one upload in the child process
VIDEO_MAX_DURATION_S = 20.0         # seconds of video analysed (longer clips are cut, with a note)
#: Why, in the note shown with a cut video's result.
VIDEO_LIMIT_REASON = (f"this demo analyses at most {VIDEO_MAX_DURATION_S:g} s of a video; "
                      "`fdin analyze` on your own machine reads the whole video")
VIDEO_TARGET_FPS = 15.0             # frames kept for tracking (dynamics are resampled to 25 fps)
VIDEO_MAX_SIDE = 720                # decoded frames are downscaled to this longer side
VIDEO_DECODE_THREADS = 1            # one decoder thread per upload: requests run one per core (MODEL_CONCURRENCY)
IMAGE_TIMEOUT_S = 30.0
IMAGE_MAX_SIDE = 2560               # photos are decoded (in the child) at most this many px on their longer side
OUTPUT_MAX_SIDE = 2560              # annotated images are encoded at most this many px on their longer side
MAX_BODY_BYTES = 1 << 20            # any request but a file upload (file references; a streamed webcam frame)
MAX_TEXT_CHARS = 200                # any text argument of an event (trait names are short)
UPLOAD_QUOTA_BYTES = 200 << 20      # per client ...
UPLOAD_QUOTA_WINDOW_S = 600.0       # ... over a sliding window of this many seconds (env FDIN_UPLOAD_QUOTA_MB)
MATRIX_MAX_FACES = 40               # the relation matrix is drawn for at most this many faces
REDRAW_RATE = (20, 10.0)            # trait-dropdown redraws per client: a burst of 20, refilled over 10 s
TOP_RELATIONS = 5
LIVE_STREAM_EVERY_S = 0.04          # the browser sends a webcam frame at most every 40 ms (and only after the last reply)
LIVE_TIME_LIMIT_S = 120             # one live stream runs at most 2 min (then the visitor restarts it)
LIVE_STATE_TTL_S = 300             # a live session's buffer (<= 10 s of JPEGs) is dropped 5 min after its last frame
LIVE_CONCURRENCY = 2                # live sessions processed at once (2 cores); frames are bounded in fdin.app.live
LIVE_MAX_STREAMS = 4                # live streams open at once (running or waiting), all clients: queue places of their own
LIVE_MAX_STREAMS_PER_CLIENT = 2     # ... per client (the rate-limit key); more joins get 503 at once
LIVE_IDLE_S = 5.0                   # a running stream that sent no frame for this long is closed
LIVE_MAX_WAIT_S = 30.0              # a stream waiting for a live slot this long is dropped from the queue
LIVE_MAX_UNREAD = 16                # replies held for a session that does not read them (older dropped)
LIVE_UNREAD_TTL_S = 30.0            # replies of a session with no running event, unread this long: dropped
LIVE_FRAME_SIZE = (640, 480)        # the webcam frame size the app asks the browser for (width, height)
LIVE_SESSION_BUDGET_BYTES = 160 << 20  # one session's buffer: encoded + decoded bytes (the seconds it holds:
                                       # fdin.app.livebudget.buffer_seconds, which the texts quote)
LIVE_GLOBAL_BUDGET_BYTES = 480 << 20   # all sessions' buffers together
STATE_SESSION_CAPACITY = 64         # sessions whose state Gradio keeps in memory (its default: 10,000)
ANALYSIS_DEADLINE_BASE_S = 20.0     # an analysis may take this long ...
ANALYSIS_DEADLINE_PER_S = 1.5       # ... plus this much per second of clip ...
ANALYSIS_DEADLINE_PER_FACE_S = 0.25 # ... plus this much per second of clip and per extra face tracked
ANALYSIS_DEADLINE_MAX_S = 120.0     # ... and never more than this
RATE_LIMIT_REQUESTS = 30            # per client (IP): a burst of this many model requests ...
RATE_LIMIT_WINDOW_S = 60.0          # ... refilled evenly over this many seconds (env FDIN_RATE_LIMIT="30/60")

LOCAL_HOST, SPACE_HOST, DEFAULT_PORT = "127.0.0.1", "0.0.0.0", 7860

MODEL_ENV = {  # model role -> (env var with a Hub repo id, default folder in weights/)
    "gender": ("FDIN_GENDER_REPO", "fdin-gender"),
    "age": ("FDIN_AGE_REPO", "fdin-age"),
    "expression": ("FDIN_EXPRESSION_REPO", "expression-fer2013"),
    "relation": ("FDIN_RELATION_REPO", "relation"),
}


def model_source(role: str) -> tuple[str, str | None]:
    """``(source, revision)`` of a model role: the Hub repo from its env var (with ``*_REVISION``), else
    the folder name in ``weights/``."""
    env, default = MODEL_ENV[role]
    repo = os.environ.get(env, "").strip()
    if repo:
        return repo, (os.environ.get(env.replace("_REPO", "_REVISION"), "").strip() or None)
    return default, None


def resolved_model_dir(role: str) -> str:
    """A local folder for ``role`` (Hub snapshots must already be in the local cache)."""
    from fdin.weights import resolve_weights

    source, revision = model_source(role)
    path, _ = resolve_weights(source, revision=revision)
    return str(path)


def server_address(host: str | None = None, port: int | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where to listen. Command-line values (``host``/``port``) win; else Gradio's own environment
    (``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT``); else, on a Hugging Face Space (``SPACE_ID``),
    0.0.0.0:7860; else 127.0.0.1:7860 (loopback only)."""
    env = os.environ if env is None else env
    default_host = SPACE_HOST if env.get("SPACE_ID") else LOCAL_HOST
    host = host or env.get("GRADIO_SERVER_NAME", "").strip() or default_host
    if port is None:
        text = env.get("GRADIO_SERVER_PORT", "").strip()
        port = int(text) if text else DEFAULT_PORT
    return host, int(port)


def preload_enabled(env: Mapping[str, str] | None = None) -> bool:
    """:data:`PRELOAD_MODELS`, unless ``FDIN_PRELOAD`` is "0"/"false"/"no"/"off"."""
    value = (os.environ if env is None else env).get("FDIN_PRELOAD", "").strip().lower()
    return PRELOAD_MODELS if not value else value not in ("0", "false", "no", "off")


def video_read_kwargs() -> dict[str, Any]:
    """How the app decodes an upload: :func:`fdin.isolation.read_video_isolated`'s options (all but
    ``tmp_dir``). The speed benchmark measures the app's path with the same."""
    return {"timeout": VIDEO_TIMEOUT_S, "max_duration": VIDEO_MAX_DURATION_S, "duration_reason": VIDEO_LIMIT_REASON,
            "target_fps": VIDEO_TARGET_FPS,
            "max_side": VIDEO_MAX_SIDE, "threads": VIDEO_DECODE_THREADS}


def analysis_workers(env: Mapping[str, str] | None = None) -> int:
    """:data:`ANALYSIS_WORKERS`, or ``FDIN_ANALYSIS_WORKERS`` (0: analyse in the app's process, as
    a host too small for two more model copies, ~0.18 GB each, may want)."""
    text = (os.environ if env is None else env).get("FDIN_ANALYSIS_WORKERS", "").strip()
    try:
        return max(0, min(int(text), MODEL_CONCURRENCY)) if text else ANALYSIS_WORKERS
    except ValueError:
        return ANALYSIS_WORKERS


def queue_kwargs(*, max_size: int = QUEUE_MAX_SIZE) -> dict[str, Any]:
    """``demo.queue`` options: a bounded queue, one worker per event by default, and ``api_open=False``
    so a queued event cannot be run directly over REST (``POST /gradio_api/run/<name>`` answers 404).
    Gradio's ``max_size`` is ``max_size`` places for the model buttons plus :data:`LIVE_MAX_STREAMS`
    for live streams; :mod:`fdin.app.admission` keeps each kind to its own places."""
    return {"max_size": max_size + LIVE_MAX_STREAMS, "default_concurrency_limit": 1, "api_open": False}


def analysis_deadline_s(duration_s: float, faces: int) -> float:
    """Wall-clock seconds one analysis may take: scaled to the clip's length and the number of faces
    tracked, within :data:`ANALYSIS_DEADLINE_MAX_S`, so a long clip is not cut by a budget made for a
    short one and no analysis holds a worker without end."""
    duration_s, faces = max(0.0, float(duration_s)), max(1, int(faces))
    budget = (ANALYSIS_DEADLINE_BASE_S + ANALYSIS_DEADLINE_PER_S * duration_s
              + ANALYSIS_DEADLINE_PER_FACE_S * duration_s * (faces - 1))
    return min(ANALYSIS_DEADLINE_MAX_S, budget)


def upload_quota_bytes(env: Mapping[str, str] | None = None) -> int:
    """The per-client upload quota: ``FDIN_UPLOAD_QUOTA_MB`` (``0`` disables), else the default."""
    env = os.environ if env is None else env
    text = env.get("FDIN_UPLOAD_QUOTA_MB", "").strip()
    try:
        return int(float(text) * (1 << 20)) if text else UPLOAD_QUOTA_BYTES
    except ValueError:
        return UPLOAD_QUOTA_BYTES


#: A failed request says so once, in the toast (a plain sentence from the handler); the per-output
#: "Error" badges would repeat it on every output. Table headers wrap between words, never inside one.
CSS = """
[data-testid="status-tracker"] span.error, [data-testid="status-tracker"] .clear-status { display: none; }
/* tables: words are never broken inside a word; a table wider than the screen scrolls sideways */
.fdin-table th, .fdin-table th *, .fdin-table td, .fdin-table td *, .fdin-wide th, .fdin-wide td {
  word-break: normal !important; overflow-wrap: normal !important; hyphens: none !important; }
.fdin-table td, .fdin-table td *, .fdin-wide td, .fdin-wide th { white-space: nowrap !important; }
.fdin-wide table, .fdin-words table { display: block; overflow-x: auto; max-width: 100%; }
/* result sentences and tables wrap between words only ("demonstratio n" was a broken word) */
.fdin-words, .fdin-words * { word-break: normal !important; overflow-wrap: normal !important;
  hyphens: none !important; }
.fdin-scroll-hint { display: none; }
/* Gradio hides "Use via API" under 640 px; kept on phones (top level: Gradio scopes rules inside
   @media to the page body, and the footer is outside it) */
footer button.show-api { display: flex !important; }
.fdin-legend p, .fdin-scroll-hint p { font-size: 0.85em; margin: 0; }
@media (max-width: 720px) {
  .fdin-scroll-hint { display: block; }
  /* every tab stays reachable: five short names fit 390 px with narrower padding (no "more" menu) */
  .tab-container > button { padding-left: 7px !important; padding-right: 7px !important; }
  #fdin-notice p { font-size: 0.85em; }
}
"""


def launch_kwargs(*, host: str = LOCAL_HOST, port: int | None = DEFAULT_PORT,
                  max_file_size: str | int = MAX_FILE_SIZE) -> dict[str, Any]:
    """Hardened ``demo.launch`` options (R-02, R-03, R-06, R-07, R-09; body limits, upload quota and
    header hygiene of :mod:`fdin.app.guard`)."""
    from starlette.middleware import Middleware

    from fdin.app.guard import GuardMiddleware, UploadQuota
    from fdin.weights import REPO_ROOT, weights_dir

    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "show_error": False,
        "max_file_size": max_file_size,
        "enable_monitoring": False,
        "ssr_mode": False,
        "mcp_server": False,
        "allowed_paths": [],
        "blocked_paths": [str(weights_dir()), str(REPO_ROOT / ".git"), str(REPO_ROOT / ".venv")],
        "run_history": False,
        "strict_cors": True,
        "state_session_capacity": STATE_SESSION_CAPACITY,
        "css": CSS,  # Gradio 6: app-level styling is a launch() option
        "app_kwargs": {"middleware": [Middleware(GuardMiddleware, max_body_bytes=MAX_BODY_BYTES,
                                                 quota=UploadQuota(upload_quota_bytes(), UPLOAD_QUOTA_WINDOW_S))]},
    }
