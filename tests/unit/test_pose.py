"""Head pose and gaze on synthetic meshes: MediaPipe's canonical face turned by known angles and
projected (scaled orthographic, as the mesh is), with irises placed by hand on a known eyeball."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def canonical() -> np.ndarray:
    from components.faces.pose import canonical_face

    try:
        return canonical_face()[0]
    except FileNotFoundError as e:
        pytest.skip(f"MediaPipe's face_landmarker.task is not installed: {e}")


def _rot(pitch: float, yaw: float, roll: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _mesh(canonical: np.ndarray, rot: np.ndarray, eye_yaw: float = 0.0, eye_pitch: float = 0.0) -> np.ndarray:
    """478 points in pixels: the canonical face (with irises on 0.4-eye-width eyeballs turned by
    eye_yaw / eye_pitch in the head) turned by ``rot``, 20 px per cm, centred at (320, 240)."""
    from components.faces.pose import EYEBALL_RADIUS

    head = np.vstack([canonical, np.zeros((10, 3))])
    for first, outer, inner in ((468, 33, 133), (473, 263, 362)):
        centre = (canonical[outer] + canonical[inner]) / 2
        r = EYEBALL_RADIUS * np.linalg.norm(canonical[outer, :2] - canonical[inner, :2])
        head[first:first + 5] = centre + r * np.array([np.sin(eye_yaw) * np.cos(eye_pitch), np.sin(eye_pitch), 0.0])
    return 20.0 * head @ rot.T + np.array([320.0, 240.0, 0.0])


def test_euler_angles_invert_openface_rx_ry_rz() -> None:
    from components.faces.pose import euler_angles

    np.testing.assert_allclose(euler_angles(_rot(0.3, -0.5, 1.2)), (0.3, -0.5, 1.2), atol=1e-12)
    np.testing.assert_allclose(euler_angles(np.eye(3)), (0, 0, 0), atol=1e-12)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.2, -0.4, 0.3), (-0.3, 0.6, -0.5)])
def test_mesh_and_68_point_poses_recover_the_turn(canonical, angles) -> None:
    from components.faces.mediapipe_mesh import MESH_TO_68
    from components.faces.pose import landmarks_pose, mesh_pose

    mesh = _mesh(canonical, _rot(*angles))
    pose = mesh_pose(mesh)
    np.testing.assert_allclose(pose.radians, angles, atol=1e-6)
    assert pose.scale == pytest.approx(20.0)
    np.testing.assert_allclose(landmarks_pose(mesh[list(MESH_TO_68), :2]).radians, angles, atol=1e-6)


def test_signs_as_documented(canonical) -> None:
    """pitch > 0: nose tip (vertex 1) below where a frontal face has it; yaw > 0: nose to the image
    left; roll > 0: the right eye's outer corner (33, image left) rises: clockwise in the image."""
    from components.faces.pose import mesh_pose

    front = _mesh(canonical, np.eye(3))
    for axis, (vertex, coord, sign) in enumerate([(1, 1, 1), (1, 0, -1), (33, 1, -1)]):
        angles = [0.0, 0.0, 0.0]
        angles[axis] = 0.3
        mesh = _mesh(canonical, _rot(*angles))
        assert np.sign(mesh[vertex, coord] - front[vertex, coord]) == sign
        assert mesh_pose(mesh).radians[axis] == pytest.approx(0.3)


def test_gaze_is_eye_in_head_plus_head_turn(canonical) -> None:
    """Straight eyes in a frontal head give 0, 0; eyes turned by 0.2 rad to the image right (x > 0)
    and 0.1 down give (0.2, atan(tan 0.1 / cos 0.2)); with the head yawed by b the horizontal angle
    is 0.2 - b (yaw > 0 turns the face to the image left)."""
    from components.faces.pose import gaze_angles

    np.testing.assert_allclose(gaze_angles(_mesh(canonical, np.eye(3))), (0, 0), atol=1e-9)
    gx, gy = gaze_angles(_mesh(canonical, np.eye(3), eye_yaw=0.2, eye_pitch=0.1))
    # g = (sin .2 cos .1, sin .1, -cos .2 cos .1): x = atan2(g_x, -g_z) = 0.2, y = atan2(sin .1, cos .2 cos .1)
    assert gx == pytest.approx(0.2) and gy == pytest.approx(np.arctan2(np.tan(0.1), np.cos(0.2)))
    gx, gy = gaze_angles(_mesh(canonical, _rot(0.0, 0.15, 0.0), eye_yaw=0.2))
    assert (gx, gy) == (pytest.approx(0.05), pytest.approx(0.0, abs=1e-9))


def test_answers_carry_degrees_and_none_where_unknown(canonical) -> None:
    from components.faces.mediapipe_mesh import MESH_TO_68
    from components.faces.pose import pose_gaze_info

    mesh = _mesh(canonical, _rot(0.0, np.radians(30), 0.0))
    info = pose_gaze_info(mesh, None)
    assert info["pose"] == {"pitch": 0.0, "yaw": 30.0, "roll": 0.0}
    assert info["gaze"]["angle_x"] == pytest.approx(-np.radians(30), abs=1e-5)
    dlib = pose_gaze_info(None, mesh[list(MESH_TO_68), :2])  # 68 points only: pose, no gaze
    assert dlib["pose"]["yaw"] == pytest.approx(30.0) and dlib["gaze"] is None
    assert pose_gaze_info(np.full((478, 3), np.nan), None) == {"pose": None, "gaze": None}
