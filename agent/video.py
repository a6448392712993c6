"""Episode videos: real | imagined | goal, one frame per control step, at the simulator's real-time rate.

A video re-simulates its episode from the record (reset options and every control step's action)
in an env of the same family rendered at a resolution of its own, so it shows the recorded episode
exactly, from the observation camera, independent of the model's input size. The imagined panel
is the decoded prediction the planner made for the end of the decision in progress: control steps
(d*R, (d+1)*R] belong to decision d (R = action_repeat; the start frame to decision 0), so the
real panel reaches the predicted moment at each decision's last control step, and the prediction
is held over the decision's control steps in between.

With a predictor ensemble (world_model/ensemble.py) a spread panel follows the imagined one: the
members' predictions of the same decision decoded, their mean in grey and where they differ in red.

Render any record afterwards (the imagined panel needs the world model and its decoder):
    python -m agent.video outputs/<run>/records.jsonl --index 3 [--checkpoint CKPT [--decoder DIR] [--ensemble DIR]]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

import envs
from world_model.atomic import fsync_dir

CAPTION = 40  # pixels above the panels: a line of panel labels and a line of numbers
BLOCK = 16  # the codec's macroblock: frame sides are rounded up to a multiple of it
SPREAD_FULL = 0.25  # a fixed scale, so panels compare across decisions and episodes: a per-pixel spread
                    # (std over the decoded predictions, intensities in [0, 1]) of a quarter of the range is full red


def _round_up(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [size, size, 3] (bilinear)."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@functools.cache
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=14)


def compose_frame(panels: list[tuple[str, np.ndarray]], caption: str) -> np.ndarray:
    """Labelled panels (label, uint8 [S, S, 3]) side by side under a line of labels and a caption
    line -> uint8 [H, W, 3] with H >= S + CAPTION, W >= len(panels) * S, both multiples of 16."""
    from PIL import Image, ImageDraw

    size = panels[0][1].shape[0]
    if any(p.shape != (size, size, 3) for _, p in panels):
        raise ValueError(f"panels must all be uint8 [S, S, 3] of one size, got {[p.shape for _, p in panels]}")
    canvas = Image.new("RGB", (_round_up(size * len(panels)), _round_up(size + CAPTION)))
    draw, font = ImageDraw.Draw(canvas), _font()
    for i, (label, panel) in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (i * size, CAPTION))
        draw.text((i * size + 4, 2), label, fill=(255, 255, 255), font=font)
    draw.text((4, 21), caption, fill=(255, 220, 120), font=font)
    return np.asarray(canvas)


def action_repeat(record: dict) -> int:
    """Control steps per decision: recorded, or for records written before it was, the actions
    per planning-time entry (one per decision)."""
    return record.get("action_repeat") or len(record["actions"]) // len(record["plan_ms"])


def spread_frames(decoder, imagined: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spread panel: where a predictor ensemble (world_model/ensemble.py) disagrees with the
    world model about each decision's outcome.

    Args:
        decoder: world_model/decoder.py Decoder of the world model's latents
        imagined: [decisions, D], the world model's prediction for the end of each decision
        members: [M, decisions, D], each ensemble member's rollout of the same actions (imagine_record)
    Returns:
        uint8 [decisions, h, w, 3]: the mean of the M + 1 decoded predictions in grey, their per-pixel
            spread over it in red (full at SPREAD_FULL);
        [decisions]: the members' mean squared latent distance from the world model's prediction
            (the model-disagreement cost's units)
    """
    import torch

    from world_model.ensemble import spread_from

    device = decoder.mean.device
    z = torch.cat([torch.as_tensor(imagined)[None], torch.as_tensor(members)]).to(device)  # [M + 1, decisions, D]
    with torch.no_grad():
        pixels = decoder(z)  # [M + 1, decisions, h, w, 3] in [0, 1]
    grey = pixels.mean(0).mean(-1, keepdim=True)  # [decisions, h, w, 1]
    heat = (pixels.std(0, unbiased=False).mean(-1, keepdim=True) / SPREAD_FULL).clamp(0, 1)  # [decisions, h, w, 1]
    red = torch.tensor([1.0, 0.0, 0.0], device=device)
    panel = grey * (1 - heat) + heat * red  # [decisions, h, w, 3]
    disagreement = spread_from(z[1:], z[0])  # [M, decisions, D] -> [decisions]
    return (panel * 255).round().to(torch.uint8).cpu().numpy(), disagreement.cpu().numpy()


def with_spread(decoder, predicted: dict, trace: list[dict]) -> tuple[list[dict], np.ndarray]:
    """`trace` with each decision's "disagreement", and the spread panel (spread_frames), from
    imagine_record's output with an ensemble (its "imagined" and "members")."""
    spread, disagreement = spread_frames(decoder, predicted["imagined"], predicted["members"])
    return [{**step, "disagreement": float(x)} for step, x in zip(trace, disagreement)], spread


def episode_frames(env, record: dict, imagined: np.ndarray | None = None, trace: list[dict] | None = None,
                   spread: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Re-simulates `record` in `env` (its family, action_repeat 1, rendered at the video's size)
    and yields one composed frame per control step, the start included (budget + 1 frames).

    imagined: uint8 [decisions, h, w, 3], the decoded prediction for the end of each decision
        (None: real | goal only)
    trace: per decision {"energy", "plan_cost", "disagreement"} as far as known, written in the caption
    spread: uint8 [decisions, h, w, 3], the ensemble's spread panel (spread_frames), shown after the
        imagined one (None: no such panel)
    """
    if env.action_repeat != 1:
        raise ValueError(f"a video steps every control step; build its env with action_repeat=1, "
                         f"not {env.action_repeat}")
    actions = np.asarray(record["actions"], np.float64)  # [budget, A]
    repeat = action_repeat(record)
    decisions = len(actions) // repeat
    for name, given in (("imagined", imagined), ("spread", spread)):
        if given is not None and len(given) != decisions:
            raise ValueError(f"{len(given)} {name} frames for an episode of {decisions} decisions")
    size = env.image_size
    obs, info = env.reset(seed=record["seed"], options=record["options"])
    for c in range(len(actions) + 1):
        if c > 0:
            obs, _, _, _, info = env.step(actions[c - 1])
        d = max(0, -(-c // repeat) - 1)  # the decision in progress
        panels = [("real", obs["pixels"])]
        if imagined is not None:
            panels.append((f"imagined (end of decision {d + 1})", resize(imagined[d], size)))
        if spread is not None:
            panels.append(("ensemble spread", resize(spread[d], size)))
        panels.append(("goal", obs["goal"]))
        known = trace[d] if trace is not None else {}
        numbers = [f"step {c}/{len(actions)}", f"decision {d + 1}/{decisions}"]
        numbers += [f"{name} {known[key]:.4f}" for key, name in (("energy", "energy"), ("plan_cost", "plan cost"),
                                                                 ("disagreement", "spread")) if key in known]
        numbers.append("success " + ("yes" if info["success"] else "no"))
        yield compose_frame(panels, "   ".join(numbers))
    differ = [name for name, again, recorded in (("final state", env.get_sim_state().tolist(), record["final_state"]),
                                                  ("success", bool(info["success"]), record["success"]))
              if again != recorded]
    if differ:
        print(f"notice: re-simulating the {record['env']} record (seed {record['seed']}) did not end in its recorded "
              f"{' and '.join(differ)}; the record was edited, or its video differs from the recorded episode")


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg finds an ffmpeg executable (its own binary or the system's)."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # not installed; installed without a usable binary
        return False
    return True


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Writes frames (uint8 [H, W, 3], all alike) as an mp4 at `path`; where no ffmpeg is found,
    as a GIF beside it with a one-line notice, so a long run never fails at its end for want of a
    codec. Returns the path written."""
    from PIL import Image

    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ffmpeg_available():
        import imageio.v2 as imageio

        partial = _partial(path)
        with imageio.get_writer(partial, fps=fps, codec="libx264", macro_block_size=BLOCK, quality=7) as writer:
            writer.append_data(first)
            for frame in frames:
                writer.append_data(frame)
        return _put_in_place(partial, path)
    gif = path.with_suffix(".gif")
    print(f"notice: no ffmpeg found (pip install imageio-ffmpeg); writing {gif} instead of an mp4")
    rest = (Image.fromarray(frame) for frame in frames)
    partial = _partial(gif)
    Image.fromarray(first).save(partial, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
    return _put_in_place(partial, gif)


def _partial(path: Path) -> Path:
    """Where a video is written before it is complete (the suffix stays: writers pick the format by it)."""
    return path.with_name(f".{path.name}.partial{path.suffix}")


def _put_in_place(partial: Path, path: Path) -> Path:
    """Renames a finished video into place, durably: a killed write leaves no partial video under
    its name, and the evaluation records its chunk only after its videos are on disk."""
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)
    return path


def write_episode_video(path: str | Path, record: dict, size: int, imagined: np.ndarray | None = None,
                        trace: list[dict] | None = None, spread: np.ndarray | None = None) -> Path:
    """Re-simulates `record` at `size` px and writes its video (episode_frames) at the simulator's
    real-time rate; returns the path written (mp4, or GIF without ffmpeg)."""
    env = envs.make(record["env"], image_size=size, action_repeat=1)
    try:
        return write_video(path, episode_frames(env, record, imagined, trace, spread), fps=1.0 / env.control_timestep)
    finally:
        env.close()  # explicitly: a renderer left to the garbage collector breaks later EGL renders


def decode_trace(decoder, trace: list[dict]) -> np.ndarray | None:
    """uint8 [decisions, h, w, 3]: the trace's imagined latents decoded; None without a decoder or
    without imagined latents (a policy that does not plan)."""
    import torch

    if decoder is None or not trace or "imagined" not in trace[0]:
        return None
    device = decoder.mean.device
    return decoder.decode_uint8(torch.stack([step["imagined"] for step in trace]).to(device))  # [decisions, D] in


def find_decoder(checkpoint: Path, cache_root: Path, env: str) -> Path:
    """The newest decoder folder under cache_root/decoders made for this checkpoint's weights and env
    `env` (cache_root/decoders/<env>-<key>: a world model shared by several envs has one per env)."""
    from world_model.checkpoint import WEIGHTS, read_manifest
    from world_model.decoder import MANIFEST

    weights = read_manifest(checkpoint)["files"][WEIGHTS]["sha256"]
    manifests = sorted((Path(cache_root) / "decoders").glob(f"*/{MANIFEST}"), key=lambda m: m.stat().st_mtime)
    found = [m.parent for m in manifests if json.loads(m.read_text()).get("world_model_sha256") == weights
             and m.parent.name.rsplit("-", 1)[0] == env]
    if not found:
        raise FileNotFoundError(
            f"no decoder for {checkpoint} and env {env} under {Path(cache_root) / 'decoders'}; pass --decoder FOLDER or "
            f"--cache-root, or evaluate it once with `python -m agent.run checkpoint={checkpoint} "
            f"cache_root={cache_root}` (it trains one)")
    return found[-1]


# What episode_frames reads of a record, by type; `success` is compared with the re-simulated outcome.
RECORD_FIELDS = {"env": str, "seed": int, "goal_kind": str, "policy": str, "options": dict, "actions": list,
                 "plan_ms": list, "final_state": list, "success": bool}


def check_record(record) -> dict:
    """`record` when it holds every field a video reads, of its type; else ValueError naming them
    (TypeError when it is no JSON object)."""
    if not isinstance(record, dict):
        raise TypeError(f"a JSON {type(record).__name__}, not an object")
    wrong = [f"{name} ({'missing' if name not in record else type(record[name]).__name__ + ', not ' + kind.__name__})"
             for name, kind in RECORD_FIELDS.items() if not isinstance(record.get(name), kind)
             or (kind is int and isinstance(record[name], bool))]
    if wrong:
        raise ValueError(f"fields {', '.join(wrong)}")
    return record


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m agent.video",
        description="Render the video of one evaluation record, re-simulated from the record alone: real | goal, "
                    "and with --checkpoint the world model's imagined panel between them.")
    parser.add_argument("records", type=Path, help="a records.jsonl written by python -m agent.run")
    parser.add_argument("--index", type=int, default=0, help="which line of the file (0-based)")
    parser.add_argument("--checkpoint", type=Path, help="world-model checkpoint folder, for the imagined panel")
    parser.add_argument("--decoder", type=Path, help="its decoder folder (default: found under --cache-root)")
    parser.add_argument("--ensemble", type=Path, help="a predictor ensemble folder of this checkpoint "
                        "(<cache root>/ensembles/<env>-<key>): adds its spread panel (needs --checkpoint)")
    parser.add_argument("--cache-root", type=Path, default=Path("cache"), help="where agent.run cached the decoder")
    parser.add_argument("--size", type=int, default=256, help="pixels per panel side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="default: <records folder>/videos/<goal kind>-<policy>-<index>.mp4")
    args = parser.parse_args(argv)

    try:
        lines = args.records.read_text().splitlines()
    except OSError as e:
        raise SystemExit(f"error: cannot read {args.records} ({e.strerror}); pass a records.jsonl written by "
                         "python -m agent.run") from None
    if args.ensemble is not None and args.checkpoint is None:
        parser.error("--ensemble needs --checkpoint (the spread is around the world model's own prediction)")
    if not 0 <= args.index < len(lines):
        parser.error(f"{args.records} holds {len(lines)} records; --index must be in [0, {len(lines)})")
    try:
        record = check_record(json.loads(lines[args.index]))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise SystemExit(f"error: line {args.index + 1} of {args.records} is not an episode record ({e}); the file was "
                         "altered, render another record") from None
    imagined, trace, spread = None, None, None
    if args.checkpoint is not None:
        import torch

        import world_model
        from agent.imagined import imagine_record
        from world_model.decoder import load_decoder
        from world_model.ensemble import load_ensemble

        device = torch.device(args.device)
        wm = world_model.load(args.checkpoint).to(device).for_env(record["env"])  # a shared model: the record's env
        decoder = load_decoder(args.decoder or find_decoder(args.checkpoint, args.cache_root, record["env"])).to(device)
        if (decoder.latent_dim, decoder.image_size) != (wm.cfg.latent_dim, wm.cfg.image_size):
            raise ValueError(f"the decoder decodes {decoder.latent_dim}-d latents to {decoder.image_size} px, the "
                             f"world model makes {wm.cfg.latent_dim}-d latents of {wm.cfg.image_size} px frames; "
                             "pass its own --decoder")
        ensemble = load_ensemble(args.ensemble).to(device) if args.ensemble is not None else None
        if ensemble is not None and (ensemble.latent_dim, ensemble.history) != (wm.cfg.latent_dim, wm.cfg.history):
            raise ValueError(f"the ensemble predicts {ensemble.latent_dim}-d latents from {ensemble.history} frames, the "
                             f"world model {wm.cfg.latent_dim}-d from {wm.cfg.history}; pass this checkpoint's own ensemble")
        predicted = imagine_record(record, wm, device, ensemble)
        imagined = decoder.decode_uint8(torch.from_numpy(predicted["imagined"]).to(device))
        trace = [{"energy": e} for e in predicted["energy"]]
        if ensemble is not None:
            trace, spread = with_spread(decoder, predicted, trace)
    out = args.out or args.records.parent / "videos" / f"{record['goal_kind']}-{record['policy']}-{args.index:03d}.mp4"
    written = write_episode_video(out, record, args.size, imagined, trace, spread)
    print(f"video: {written}")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
