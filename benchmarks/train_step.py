"""Seconds per world-model training step (default loss, batch 64 clips of 96 px frames), eager or
under torch.compile, on whatever device torch picks first (CPU here).

    PYTHONPATH=. python benchmarks/train_step.py [--token-dim 8 --steps 20 --compile]

Random frames and actions stand in for the dataset (the step's cost does not depend on their
values). Prints one JSON line: the first two steps' seconds (compilation happens there) and the
mean of the following steps.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel, WorldModelConfig
from world_model.train import OptimConfig, _optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-dim", type=int, default=WorldModelConfig.token_dim,
                        help="numbers per token (default: WorldModelConfig's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on whatever device (AMX on recent Xeons)")
    parser.add_argument("--channels-last", action="store_true", help="the encoder's convolutions in channels-last layout")
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    torch.manual_seed(0)
    size = args.image_size
    model_cfg = WorldModelConfig(image_size=size, action_dim=2, token_dim=args.token_dim)
    model, loss_cfg = WorldModel(model_cfg), LossConfig()
    loss_fn = JEPALoss(loss_cfg, model)
    optimizer = _optimizer(OptimConfig(), [model, loss_fn])
    length = model_cfg.history + loss_cfg.rollout_steps
    frames = torch.randint(0, 256, (64, length, size, size, 3), dtype=torch.uint8)  # [B, L, H, W, 3]
    actions = torch.rand(64, length - 1, model_cfg.action_dim) * 2 - 1  # [B, L-1, A]
    if args.compile:
        model.encoder.compile()
        model.predictor.compile()
    if args.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    device_type = next(model.parameters()).device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = loss_fn(model, frames, actions)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps
    print(json.dumps({"token_dim": args.token_dim, "image_size": size, "compile": args.compile, "bf16": args.bf16,
                      "channels_last": args.channels_last, "first_two_steps_s": round(first, 1),
                      "s_per_step": round(per_step, 3), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
