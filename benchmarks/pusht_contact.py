"""Where the Push-T world model is wrong: rollout error while the block is pushed against free motion.

    python benchmarks/pusht_contact.py --checkpoint RUN/latest --dataset cache/datasets/pusht-<hash>
        [--windows 600 --horizon 5]

Windows of history + horizon frames from the held-out episodes (the training run's split: the last
10%), the model rolled out with the recorded actions from the encoded history. A window is
"contact" when the block moves (> 1 px or > 0.02 rad) in any step of its horizon, else "free".
Per group and step ahead: the latent error (mean squared difference to the encoded frame, the
energy's metric) against copy-last (the last history latent held), and the block-pose error the
training run's linear probe reads off the predicted latent (block origin px; a probe on the
predicted latent, fitted on encoded training frames). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import world_model
from world_model.dataset import Dataset
from world_model.monitors import ridge_cv, ridge_fit
from world_model.probe import probe_rows
from world_model.train import encode_frames
from world_model.windows import split_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--windows", type=int, default=600)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    model = world_model.load(args.checkpoint).eval()
    ds = Dataset(args.dataset)
    train_eps, held_eps = split_episodes(ds.num_episodes, 0.1)
    k, h = model.cfg.history, args.horizon
    names = [n for g in ds.probe_groups.values() for n in g]
    cols = [names.index(n) for n in ds.probe_groups["block"]]
    frames, targets = probe_rows(ds, train_eps, 8000, seed=2)
    z_probe = encode_frames(model.encode, frames, torch.device("cpu")).double()
    y_probe = torch.as_tensor(targets[:, cols], dtype=torch.float64)
    probe = ridge_fit(z_probe, y_probe, ridge_cv(z_probe, y_probe))
    rng = np.random.default_rng(args.seed)
    groups = {"contact": [], "free": []}
    with torch.no_grad():
        for _ in range(args.windows):
            ep = ds.episode(int(rng.choice(held_eps)))
            t0 = int(rng.integers(0, len(ep.frames) - k - h + 1))
            frames = np.asarray(ep.frames[t0 : t0 + k + h])  # [K + H, h, w, 3]
            z = model.encode(torch.from_numpy(frames)[None])[0]  # [K + H, D]
            acts = torch.from_numpy(np.asarray(ep.actions[t0 : t0 + k + h - 1], np.float32))  # [K + H - 1, A]
            pred = model.rollout(z[None, :k], acts[None, k - 1 :], past_actions=acts[None, : k - 1])[0]  # [H, D]
            truth, last = z[k:], z[k - 1]
            pose = np.asarray(ep.proprio[t0 + k - 1 : t0 + k + h], np.float64)  # [H + 1, 5]
            moving = (np.linalg.norm(np.diff(pose[:, 2:4], axis=0), axis=1) > 1.0) | (np.abs(np.diff(pose[:, 4])) > 0.02)
            block_true = np.asarray(ep.probe[t0 + k : t0 + k + h], np.float64)[:, cols]  # [H, 2]
            block_pred = probe(pred.double()).numpy()
            groups["contact" if moving.any() else "free"].append({
                "error": (pred - truth).square().mean(-1).numpy(),
                "copy_last": (last - truth).square().mean(-1).numpy(),
                "block_px": np.linalg.norm(block_pred - block_true, axis=1),
            })
    report = {"checkpoint": args.checkpoint, "windows": args.windows, "horizon": h}
    for name, rows in groups.items():
        report[name] = {"windows": len(rows), **{key: [round(float(v), 4) for v in np.mean([r[key] for r in rows], 0)]
                                                 for key in ("error", "copy_last", "block_px")}}
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
