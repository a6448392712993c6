"""Goal geometry of the two-link reacher: forward and inverse kinematics, joint errors on the circle."""

from __future__ import annotations

import numpy as np

GOAL_KINDS = ("task", "state")
# A state goal is reached when every joint is within this many radians of the goal (the
# stable-worldmodel reacher protocol used for DINO-WM, PLDM and LeWM).
JOINT_TOLERANCE = 0.05
# Both links are 0.12 m from joint to joint (arm -> hand -> finger bodies in dm_control's reacher.xml).
LINK_LENGTH = 0.12


def wrap_angle(x: np.ndarray) -> np.ndarray:
    """Maps angles to (-pi, pi]."""
    return np.arctan2(np.sin(x), np.cos(x))


def joint_errors(qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
    """[..., 2] signed joint errors compared on the circle (the shoulder turns without limit)."""
    return wrap_angle(np.asarray(qpos, np.float64) - np.asarray(goal_qpos, np.float64))


def fingertip_xy(qpos: np.ndarray) -> np.ndarray:
    """[..., 2] joint angles (shoulder, wrist) -> [..., 2] fingertip x, y in metres (shoulder at 0)."""
    q1, q2 = qpos[..., 0], qpos[..., 1]
    x = LINK_LENGTH * (np.cos(q1) + np.cos(q1 + q2))
    y = LINK_LENGTH * (np.sin(q1) + np.sin(q1 + q2))
    return np.stack([x, y], axis=-1)


def reach_qpos(target: np.ndarray, near: np.ndarray, wrist_range: tuple[float, float]) -> np.ndarray:
    """[2] joint angles that put the fingertip on `target` [2]; of the two elbow solutions, the one
    the arm at `near` [2] reaches with the least joint travel.

    The shoulder turns freely, so its travel is measured on the circle; the wrist is limited
    (about +-2.8 rad), so it must swing through straight, never through +-pi, and its travel is
    the plain difference. (Wrapping the wrist too would call a fold to the other side, a
    4-5 rad swing, "near" a fold 1 rad away across the limit.)"""
    x, y = float(target[0]), float(target[1])
    radius = np.hypot(x, y)
    cos_wrist = (radius**2 - 2 * LINK_LENGTH**2) / (2 * LINK_LENGTH**2)
    if radius > 2 * LINK_LENGTH or abs(np.arccos(np.clip(cos_wrist, -1, 1))) > max(abs(w) for w in wrist_range):
        raise ValueError(f"target at ({x:.3f}, {y:.3f}) is out of the arm's reach (radius {radius:.3f} m)")
    best = None
    for wrist in (np.arccos(cos_wrist), -np.arccos(cos_wrist)):
        # With equal links the shoulder bisects: the fingertip direction is q1 + q2 / 2.
        qpos = np.array([wrap_angle(np.arctan2(y, x) - wrist / 2), wrist])
        shoulder_travel = abs(float(joint_errors(qpos, near)[0]))
        distance = shoulder_travel + abs(float(qpos[1] - near[1]))
        if best is None or distance < best[0]:
            best = (distance, qpos)
    return best[1]
