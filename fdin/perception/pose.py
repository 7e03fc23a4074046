"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG landmarks with ``cv2.solvePnP``.

The 68 image points are matched to a generic 3D mean face (:data:`MEAN_SHAPE_68`) seen by a pinhole
camera with focal length = image width and the principal point at the image centre (no lens
distortion). The rotation found is split into fdin's angles (see :mod:`fdin.perception.types`):

* ``yaw`` > 0: the subject turns towards their own left (nose moves to the image right);
* ``pitch`` > 0: chin up;
* ``roll`` > 0: clockwise in the image (the subject's left eye, image right, goes down).

With the camera frame of OpenCV (x right, y down, z away from the camera) and the mean face in the
same frame when it looks straight into the camera, the object-to-camera rotation is written
``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (a positive rotation about y moves the nose to the image
*left*, a positive rotation about x moves the chin *back*, hence the minus signs).
:func:`rotation_matrix` builds it and :func:`angles_from_rotation` inverts it; the synthetic round
trip in ``tests/test_perception.py`` checks both and the signs.

Angles are relative to the line of sight from the camera to the head (the rotation that turns the
optical axis towards the head is removed), so a face looking straight into the camera has zero pose
wherever it is in the picture, as with insightface's weak-perspective pose. Without this, a face in
the top of a wide photo looking at the camera would read ~15 degrees of pitch.

These are angles of a generic rigid face: expect a few degrees of bias per person (face shape, the
focal length guess) and more error beyond ~45 degrees of yaw, where the 68-point fit itself degrades.
"""

from __future__ import annotations

import math

import numpy as np

from fdin.perception.types import Pose

#: (68, 3) generic 3D face in iBUG-68 order, unitless (jaw width ~1.25). Frame: x to the image right,
#: y down, z towards the camera (the nose tip has the largest z), face looking into the camera.
#: Origin: insightface 2.1 ``insightface/data/objects/meanshape_68.pkl`` (insightface code is MIT),
#: converted once to this literal (rounded to 1e-4) so fdin never loads a pickle.
MEAN_SHAPE_68 = np.array([
    (-0.6267, -0.2927, -0.3140), (-0.5997, -0.1225, -0.2924), (-0.5710, 0.0512, -0.2549), (-0.5339, 0.2128, -0.1866),
    (-0.4797, 0.3506, -0.0477), (-0.3958, 0.4465, 0.0733), (-0.2988, 0.5107, 0.1798), (-0.1884, 0.5544, 0.3167),
    (0.0015, 0.5844, 0.3884), (0.1910, 0.5517, 0.3143), (0.3269, 0.4896, 0.1684), (0.4400, 0.4024, 0.0360),
    (0.5069, 0.3116, -0.0948), (0.5409, 0.2045, -0.2027), (0.5741, 0.0457, -0.2842), (0.5991, -0.1459, -0.2965),
    (0.6275, -0.3077, -0.3020), (-0.4747, -0.4376, 0.2365), (-0.4167, -0.4718, 0.3160), (-0.3475, -0.4841, 0.3661),
    (-0.2606, -0.4764, 0.3992), (-0.1671, -0.4578, 0.4166), (0.1232, -0.4587, 0.4251), (0.2064, -0.4804, 0.4158),
    (0.2867, -0.4901, 0.3920), (0.3624, -0.4769, 0.3528), (0.4256, -0.4501, 0.2953), (-0.0076, -0.3231, 0.4619),
    (-0.0079, -0.2557, 0.5105), (-0.0077, -0.1992, 0.5525), (-0.0073, -0.1426, 0.5987), (-0.1450, 0.0331, 0.4197),
    (-0.0843, 0.0313, 0.4732), (-0.0055, 0.0398, 0.5147), (0.0635, 0.0461, 0.4792), (0.1340, 0.0220, 0.4191),
    (-0.3868, -0.3134, 0.2596), (-0.3167, -0.3501, 0.3285), (-0.2341, -0.3549, 0.3335), (-0.1552, -0.3152, 0.3143),
    (-0.2309, -0.2843, 0.3256), (-0.3175, -0.2852, 0.3099), (0.1390, -0.3098, 0.3183), (0.2195, -0.3532, 0.3380),
    (0.3017, -0.3497, 0.3331), (0.3767, -0.3135, 0.2632), (0.2967, -0.2871, 0.3220), (0.2146, -0.2905, 0.3312),
    (-0.2014, 0.2374, 0.3795), (-0.1373, 0.1858, 0.4653), (-0.0765, 0.1512, 0.5036), (-0.0025, 0.1687, 0.5164),
    (0.0644, 0.1509, 0.5045), (0.1265, 0.1795, 0.4686), (0.2182, 0.2390, 0.3757), (0.1329, 0.2839, 0.4401),
    (0.0680, 0.2974, 0.4774), (-0.0005, 0.3000, 0.4871), (-0.0693, 0.2970, 0.4805), (-0.1425, 0.2743, 0.4381),
    (-0.1781, 0.2306, 0.3964), (-0.0740, 0.2147, 0.4653), (-0.0026, 0.2141, 0.4832), (0.0598, 0.2108, 0.4722),
    (0.1669, 0.2313, 0.3968), (0.0598, 0.2238, 0.4664), (-0.0014, 0.2258, 0.4752), (-0.0752, 0.2307, 0.4671),
], dtype=np.float64)

#: The mean face in OpenCV's camera frame (z away from the camera), centred on its centroid.
_OBJECT_POINTS = np.ascontiguousarray((MEAN_SHAPE_68 * np.array([1.0, 1.0, -1.0]))
                                      - (MEAN_SHAPE_68 * np.array([1.0, 1.0, -1.0])).mean(0))


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) object-to-camera rotation (OpenCV camera frame) for fdin angles in degrees."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    return _rz(r) @ _ry(-y) @ _rx(-p)


def angles_from_rotation(rotation: np.ndarray) -> Pose:
    """Inverse of :func:`rotation_matrix`: fdin yaw/pitch/roll in degrees."""
    m = np.asarray(rotation, dtype=np.float64)
    b = math.asin(max(-1.0, min(1.0, -m[2, 0])))
    if abs(m[2, 0]) < 1.0 - 1e-9:
        c = math.atan2(m[2, 1], m[2, 2])
        a = math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock (|yaw| = 90): roll is not identifiable, report it as 0
        c, a = math.atan2(-m[1, 2], m[1, 1]), 0.0
    return Pose(yaw=-math.degrees(b), pitch=-math.degrees(c), roll=math.degrees(a))


def ray_rotation(translation: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking the optical axis (0, 0, 1) onto the direction of ``translation``
    (camera → head). Pose is reported relative to this line of sight."""
    d = np.asarray(translation, np.float64)
    d = d / np.linalg.norm(d)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s, c = float(np.linalg.norm(axis)), float(d[2])
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


def camera_matrix(width: int, height: int) -> np.ndarray:
    """(3, 3) pinhole intrinsics: focal = image width in pixels, principal point at the centre."""
    f = float(width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project(points_3d: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
            width: int, height: int) -> np.ndarray:
    """(N, 2) pixel projection of (N, 3) object points (OpenCV camera frame) with :func:`camera_matrix`."""
    cam = np.asarray(points_3d, np.float64) @ np.asarray(rotation).T + np.asarray(translation, np.float64)
    uvw = cam @ camera_matrix(width, height).T
    return uvw[:, :2] / uvw[:, 2:3]


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> Pose:
    """Head pose from (68, 2) pixel landmarks (iBUG order) in an image of ``(width, height)``.

    Uses ``cv2.solvePnP`` with ``SOLVEPNP_SQPNP`` (globally optimal, no initial guess needed) on
    :data:`MEAN_SHAPE_68`; angles in degrees with fdin's signs (module docstring). Returns a zero pose
    for degenerate input (non-finite or collapsed landmarks) rather than raising.
    """
    import cv2

    pts = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float64).reshape(68, 2))
    if not np.isfinite(pts).all() or np.ptp(pts[:, 0]) < 2.0 or np.ptp(pts[:, 1]) < 2.0:
        return Pose(0.0, 0.0, 0.0)
    width, height = int(image_size[0]), int(image_size[1])
    ok, rvec, tvec = cv2.solvePnP(_OBJECT_POINTS, pts, camera_matrix(width, height), None,
                                  flags=cv2.SOLVEPNP_SQPNP)
    if not ok or not np.isfinite(tvec).all() or float(tvec[2, 0]) <= 0:
        return Pose(0.0, 0.0, 0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    return angles_from_rotation(ray_rotation(tvec[:, 0]).T @ rotation)


class LazyPose(Pose):
    """A :class:`~fdin.perception.types.Pose` whose angles are computed by :func:`head_pose` the
    first time one is read (then kept). Tracking fits landmarks on every frame and most callers
    (video analysis) never read the pose, so its ``solvePnP`` (~0.2-0.3 ms a frame, about a tenth
    of a tracked frame) is paid only by those that do. Equal to the eager pose in every respect."""

    def __init__(self, landmarks: np.ndarray, image_size: tuple[int, int]) -> None:
        object.__setattr__(self, "_source", (landmarks, image_size))

    def __getattr__(self, name: str) -> float:
        if name not in ("yaw", "pitch", "roll"):
            raise AttributeError(name)
        pose = head_pose(*self.__dict__["_source"])
        for key in ("yaw", "pitch", "roll"):
            object.__setattr__(self, key, getattr(pose, key))
        return float(getattr(pose, name))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pose):
            return NotImplemented
        return (self.yaw, self.pitch, self.roll) == (other.yaw, other.pitch, other.roll)

    def __hash__(self) -> int:
        return hash((self.yaw, self.pitch, self.roll))


def synthetic_landmarks(yaw: float, pitch: float, roll: float, *, width: int = 640, height: int = 480,
                        face_width: float = 200.0, centre: tuple[float, float] | None = None) -> np.ndarray:
    """(68, 2) landmarks of :data:`MEAN_SHAPE_68` posed at the given angles (tests and docs).

    The head is placed on the ray through pixel ``centre`` (default: image centre) at the depth where
    its jaw is about ``face_width`` pixels wide; the angles are relative to that ray, as
    :func:`head_pose` reports them.
    """
    cx, cy = centre if centre is not None else (width / 2.0, height / 2.0)
    scale_3d = np.ptp(_OBJECT_POINTS[:, 0])
    depth = float(width) * scale_3d / face_width
    k = camera_matrix(width, height)
    translation = np.array([(cx - k[0, 2]) * depth / k[0, 0], (cy - k[1, 2]) * depth / k[1, 1], depth])
    rotation = ray_rotation(translation) @ rotation_matrix(yaw, pitch, roll)
    return project(_OBJECT_POINTS, rotation, translation, width, height)
