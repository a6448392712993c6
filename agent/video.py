"""Rollout videos: observation and goal side by side, with the decision index and the energy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from world_model.atomic import fsync_dir


def compose_frame(observation: np.ndarray, goal: np.ndarray, decision: int, energy: float, scale: int) -> np.ndarray:
    """Two uint8 [H, W, 3] frames -> one uint8 [scale*H + 16, 2*scale*W, 3] frame with a caption."""
    from PIL import Image, ImageDraw

    pair = np.concatenate([observation, goal], axis=1).repeat(scale, axis=0).repeat(scale, axis=1)  # [sH, 2sW, 3]
    canvas = Image.new("RGB", (pair.shape[1], pair.shape[0] + 16))
    canvas.paste(Image.fromarray(pair), (0, 16))
    draw = ImageDraw.Draw(canvas)
    caption = f"step {decision}" + ("" if np.isnan(energy) else f"  energy {energy:.3f}")
    draw.text((4, 2), caption, fill=(255, 255, 255))
    draw.text((pair.shape[1] // 2 + 4, 2), "goal", fill=(255, 255, 255))
    return np.asarray(canvas)


def write_video(path: str | Path, frames: list[tuple], fps: int = 5) -> Path:
    """frames: (observation, goal, decision, energy) tuples -> an mp4 at `path`, put in place by a
    rename once complete (a killed write leaves no partial video under that name)."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to write")
    size = frames[0][0].shape[0]
    scale = max(1, -(-192 // size))  # at least 192 px per panel, so the caption fits
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{path.suffix}")  # imageio picks the format by the suffix
    with imageio.get_writer(partial, fps=fps, codec="libx264", macro_block_size=8, quality=7) as writer:
        for observation, goal, decision, energy in frames:
            writer.append_data(compose_frame(observation, goal, decision, energy, scale))
    with open(partial, "rb") as f:  # on disk before the chunk's records say the video is written
        os.fsync(f.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)
    return path
