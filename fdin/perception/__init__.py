"""Face perception: detection, 68 landmarks, head pose, apparent gender/age, tracking.

One interface (:class:`FaceBackend`), several backends registered by name (``"offline"``,
``"insightface"``; :func:`get_backend`), typed records (:mod:`fdin.perception.types`). Importing
this package is cheap: model libraries load when a backend is first built. See docs/perception.md.
"""

from fdin.perception.base import Detection, FaceBackend, find_insightface_dir
from fdin.perception.pose import head_pose
from fdin.perception.registry import BACKENDS, detect_faces, get_backend, list_backends, register_backend
from fdin.perception.tracking import AppearanceSummary, primary_track, track_appearance, track_faces
from fdin.perception.types import Appearance, Face, FaceTrack, Pose

__all__ = [
    "BACKENDS",
    "Appearance",
    "AppearanceSummary",
    "Detection",
    "Face",
    "FaceBackend",
    "FaceTrack",
    "Pose",
    "detect_faces",
    "find_insightface_dir",
    "get_backend",
    "head_pose",
    "list_backends",
    "primary_track",
    "register_backend",
    "track_appearance",
    "track_faces",
]
