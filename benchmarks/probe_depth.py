"""Linear vs non-linear probe: is the pose missing from the representation, or only not linear in it?

    PYTHONPATH=. python benchmarks/probe_depth.py --checkpoint RUN/latest --dataset cache/datasets/<env>-<hash>
        [--frames 20000] [--held-out-fraction 0.1] [--features z|trunk] [--mlp-steps 0]

Encodes frames of the training and held-out episodes (the same split as world_model.train: the last
episodes are held out), fits on the training rows a ridge probe (the training monitor's) and a small
MLP (2 hidden layers of 256, Adam), and prints held-out R^2 per target (sin/cos of each joint,
fingertip x/y) as one JSON line per probe. The probes never touch the encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch import nn

import world_model
from world_model.dataset import Dataset
from world_model.monitors import r_squared, ridge_cv, ridge_fit
from world_model.probe import probe_rows
from world_model.train import encode_frames
from world_model.windows import split_episodes


def mlp_probe(z: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0):
    """Fits z [N, D] -> y [N, T] with standardised inputs; returns the fitted map [M, D] -> [M, T]."""
    torch.manual_seed(seed)
    z, y = z.float(), y.float()
    mean, std = z.mean(0), z.std(0) + 1e-6
    net = nn.Sequential(nn.Linear(z.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    zs = (z - mean) / std
    for _ in range(steps):
        idx = torch.randint(0, len(z), (512,))
        loss = (net(zs[idx]) - y[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return lambda x: net((x.float() - mean) / std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--frames", type=int, default=20000, help="training rows for both probes")
    parser.add_argument("--held-frames", type=int, default=3000)
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument("--mlp-steps", type=int, default=3000, help="0 skips the MLP probe")
    parser.add_argument("--features", choices=("z", "trunk"), default="z",
                        help="z: the representation; trunk: the encoder's tokens before the head (64 x width)")
    args = parser.parse_args()
    if not 0.0 < args.held_out_fraction < 1.0:  # as world_model.train refuses it
        parser.error(f"--held-out-fraction={args.held_out_fraction}: it must lie in (0, 1), because the probes are "
                     "scored on held-out episodes (the last ones); 0.1 is the default")

    start = time.perf_counter()
    model = world_model.load(args.checkpoint).eval()
    ds = Dataset(args.dataset)
    train_eps, held_eps = split_episodes(ds.num_episodes, args.held_out_fraction)
    train_frames, train_targets = probe_rows(ds, train_eps, args.frames, seed=2)
    held_frames, held_targets = probe_rows(ds, held_eps, args.held_frames, seed=3)
    device = torch.device("cpu")
    encode = model.encode if args.features == "z" else model.encoder.tokens  # rows [n, D] or [n, 64 * width]
    z_train = encode_frames(encode, train_frames, device).double()  # [N, F]
    z_held = encode_frames(encode, held_frames, device).double()  # [M, F]
    y_train = torch.as_tensor(train_targets, dtype=torch.float64)  # [N, K]: the env's probe targets
    y_held = torch.as_tensor(held_targets, dtype=torch.float64)  # [M, K]
    names = [n for group in ds.probe_groups.values() for n in group]
    machine = {"cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    probes = {"linear (ridge)": ridge_fit(z_train, y_train, ridge_cv(z_train, y_train))}
    if args.mlp_steps > 0:
        probes["mlp 256x2"] = mlp_probe(z_train, y_train, args.mlp_steps)
    for name, fn in probes.items():
        with torch.no_grad():
            r2 = r_squared(fn(z_held), y_held)
        print(json.dumps({
            "probe": name, "features": args.features, "dims": z_train.shape[1], "train_rows": len(z_train), "held_rows": len(z_held),
            **{name_: round(r2[i].item(), 3) for i, name_ in enumerate(names)},
            **{group: round(r2[[names.index(n) for n in members]].mean().item(), 3)
               for group, members in ds.probe_groups.items()},
            "seconds": round(time.perf_counter() - start, 1), **machine,
        }))


if __name__ == "__main__":
    main()
