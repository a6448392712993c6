"""How well the probe readout judges an env's success rule from frames (what hold_within acts on).

    python benchmarks/readout_judge.py --checkpoint cache/refits/pusht-<hash> \
        --readout cache/readouts/pusht-<hash> --records RUN/records.jsonl [RUN2/records.jsonl ...] \
        [--scales 0.5 0.75 0.8 0.9 1.0]

Every planner record is played again in its env (reset with its seed and options, its decisions
stepped). Before each decision the frame and the goal image are encoded by the world model and read
by the readout, and the env's probe_reached judges its success rule between the two read states with
the tolerances times each scale; the truth is the env's own evaluate() of that state. Per scale: the
states read as met, how many of them truly are, and the truly met states not read as met. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import envs
import world_model
from agent.readout import load_readout


def judged_states(env, record: dict, model, readout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read targets now [T, K], of the goal [K], truly met [T]) at the T decisions of one record."""
    repeat = record["action_repeat"]
    obs, info = env.reset(seed=record["seed"], options=record["options"])
    frames, truth = [obs["pixels"]], [info["success"]]
    for action in record["actions"][::repeat][:-1]:  # the state before each later decision
        obs, _, _, _, info = env.step(np.asarray(action, np.float32))
        frames.append(obs["pixels"])
        truth.append(info["success"])
    with torch.no_grad():
        z = model.encode(torch.from_numpy(np.stack([*frames, obs["goal"]]))[:, None])[:, 0]  # [T + 1, D]
        read = readout.targets(z).numpy()  # [T + 1, K]
    return read[:-1], read[-1], np.array(truth, bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--readout", required=True)
    parser.add_argument("--records", nargs="+", required=True)
    parser.add_argument("--scales", nargs="+", type=float, default=[0.5, 0.75, 0.8, 0.9, 1.0])
    args = parser.parse_args()
    start = time.perf_counter()
    model = world_model.load(args.checkpoint).eval()
    readout = load_readout(args.readout)
    records = [r for path in args.records for r in map(json.loads, Path(path).read_text().splitlines())
               if r["policy"] == "planner"]
    if not records:
        raise SystemExit(f"no planner records in {args.records}; pass the records.jsonl of an evaluation")
    env = envs.make(records[0]["env"], image_size=model.cfg.image_size)
    counts = {s: {"read_met": 0, "truly_met_of_read": 0, "truly_met_not_read": 0} for s in args.scales}
    states = met = 0
    try:
        for record in records:
            now, goal, truth = judged_states(env, record, model, readout)
            states, met = states + len(truth), met + int(truth.sum())
            for s in args.scales:
                read = env.probe_reached(record["goal_kind"], now, np.repeat(goal[None], len(now), 0), s)
                counts[s]["read_met"] += int(read.sum())
                counts[s]["truly_met_of_read"] += int((read & truth).sum())
                counts[s]["truly_met_not_read"] += int((truth & ~read).sum())
    finally:
        env.close()
    print(json.dumps({"episodes": len(records), "states": states, "truly_met": met,
                      "by_scale": {str(s): c for s, c in counts.items()},
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
