"""Push-T frames: the board seen from above, drawn with OpenCV from a pose.

gym-pusht draws with pygame at 512 px and resizes; we draw the same scene (white board, the grey
T, the blue agent disc, image x = board x, image y = board y) straight at the frame size, four
times supersampled and area-averaged, so that sub-pixel moves of the block change the frame
smoothly (the success tolerance, 20 board px, is 2.5 px of a 64 px frame).

gym-pusht's fixed green target outline is not drawn: a `push` goal is another state, for which
the outline would be a distractor the model must learn to ignore; the `T` goal image shows the
block at that target pose instead, which carries the same information.
"""

from __future__ import annotations

import cv2
import numpy as np

from envs.pusht.replay import BOARD, T_SHAPES

SUPERSAMPLE = 4
SUBPIXEL_BITS = 4  # cv2 draws at 1/16 px precision
BACKGROUND = (255, 255, 255)
BLOCK_COLOUR = (119, 136, 153)  # pygame's LightSlateGray, as gym-pusht
AGENT_COLOUR = (65, 105, 225)  # RoyalBlue
AGENT_RADIUS = 15.0  # board px (gym-pusht's add_circle)
T_POLYGONS = [np.array([tuple(v) for v in shape.get_vertices()], np.float64) for shape in T_SHAPES]
"""The T's two rectangles [4, 2] in the block's own frame (board px)."""


def draw(pose: np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB frame of pose [5] (agent x, y, block origin x, y, block angle)."""
    pose = np.asarray(pose, np.float64)
    side = size * SUPERSAMPLE
    scale = side / BOARD * (1 << SUBPIXEL_BITS)  # board px -> fixed-point canvas px
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = BACKGROUND
    c, s = np.cos(pose[4]), np.sin(pose[4])
    rotation = np.array([[c, -s], [s, c]])
    polygons = [np.round((poly @ rotation.T + pose[2:4]) * scale).astype(np.int32) for poly in T_POLYGONS]
    cv2.fillPoly(canvas, polygons, BLOCK_COLOUR, cv2.LINE_8, SUBPIXEL_BITS)
    centre = tuple(int(v) for v in np.round(pose[:2] * scale))
    cv2.circle(canvas, centre, round(AGENT_RADIUS * scale), AGENT_COLOUR, -1, cv2.LINE_8, SUBPIXEL_BITS)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
