"""How much motion the world model predicts, against how much there is, along planner episodes: its gain.

    python benchmarks/model_gain.py --checkpoint cache/models/reacher-<hash>/latest \
        --records RUN/records.jsonl [RUN2/records.jsonl ...] [--late 5]

Every planner record is played again in its env (reset with its seed and options, its decisions
stepped). At each decision the world model predicts the next latent from the two-frame history, the
previous command and the command the record executed, and the env's probe targets (envs/base.py, e.g.
joint sin/cos) are read off the encoded and the predicted latents by a ridge map fitted on the encoded
frames of the first half of the records (world_model/monitors.py, as the training's probe report fits
it, the strength chosen by cross-validation on those rows). Scored on the second half, per probe target:
- `slope`: of the predicted one-decision change on the true change (1 = for a given true move the model
  predicts as much; below 1 it predicts less);
- `corr`: their correlation;
- `true_on_predicted`: the slope the other way round (1 = for a given predicted move the env moves as
  much on average). A model that predicts the mean of what may follow has `true_on_predicted` near 1
  and `slope` near corr^2: its shrinkage is its uncertainty, not a bias. Either way, a planner that
  trusts it fully commands more than the cautious command that an uncertain effect calls for;
and the same from decision `--late` on (near the goal, where precision decides). One JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import envs
import world_model
from agent.imagined import decision_actions
from world_model.monitors import ridge_cv, ridge_fit


def played(env, record: dict, model) -> tuple[np.ndarray, ...]:
    """(encoded z [T, D], predicted next z [T, D], probe targets now [T, K] and after [T, K], decision [T])
    at the T decisions of one record."""
    obs, _ = env.reset(seed=record["seed"], options=record["options"])
    actions = decision_actions(record)  # [T, A]
    previous = record.get("previous_state")
    z_prev = None
    if previous is not None:
        z_prev = model.encode(torch.from_numpy(env.render_sim_state(np.asarray(previous)))[None, None])[:, 0]  # [1, D]
    past = np.asarray(record.get("previous_action") if previous is not None else np.zeros(actions.shape[1]), np.float32)
    z_all, z_next, now, after = [], [], [], []
    for action in actions:
        z = model.encode(torch.from_numpy(obs["pixels"])[None, None])[:, 0]  # [1, D]
        z_prev = z if z_prev is None else z_prev
        hist = torch.stack([z_prev, z], dim=1)  # [1, 2, D]
        z_next.append(model.rollout(hist, torch.from_numpy(action)[None, None],
                                    past_actions=torch.from_numpy(past)[None, None])[0, 0])
        z_all.append(z[0])
        now.append(env.probe_targets())
        obs, *_ = env.step(action)
        after.append(env.probe_targets())
        z_prev, past = z, action
    return (torch.stack(z_all).numpy(), torch.stack(z_next).numpy(), np.array(now), np.array(after),
            np.arange(len(actions)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--records", nargs="+", required=True)
    parser.add_argument("--late", type=int, default=5, help="first decision counted as late")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_grad_enabled(False)
    return gain_report(world_model.load(args.checkpoint).eval(), args, start)


def gain_report(model, args, start: float) -> dict:
    """The report of main() for a loaded model (printed as one JSON line and returned)."""
    records = []
    for path in args.records:
        with open(path) as lines:
            records += [r for r in map(json.loads, lines) if r["policy"] == "planner"]
    if len(records) < 4:
        raise SystemExit(f"{len(records)} planner records in {args.records}; give at least 4")
    env = envs.make(records[0]["env"], image_size=model.cfg.image_size, action_repeat=records[0]["action_repeat"])
    runs = [played(env, r, model) for r in records]
    env.close()
    half = len(runs) // 2
    fit = [torch.from_numpy(np.concatenate([run[i] for run in runs[:half]])) for i in (0, 2)]  # z [N, D], y [N, K]
    strength = ridge_cv(*fit)
    probe = ridge_fit(*fit, strength)
    z, z_next, now, after, decision = (np.concatenate([run[i] for run in runs[half:]]) for i in range(5))

    def read(latents: np.ndarray) -> np.ndarray:
        return probe(torch.from_numpy(latents)).numpy()  # [N, D] -> [N, K]

    true_change, predicted_change = after - now, read(z_next) - read(z)  # [N, K]
    names = [name for group in env.probe_groups.values() for name in group]
    report = {"checkpoint": args.checkpoint, "episodes_scored": len(runs) - half, "seconds": 0.0, "ridge": strength,
              "probe_fit_median_error": dict(zip(names, np.median(np.abs(read(z) - now), 0).round(4).tolist()))}
    for label, rows in (("all", decision >= 0), ("late", decision >= args.late)):
        report[label] = gain_stats(true_change[rows], predicted_change[rows], names)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))
    return report


def gain_stats(true_change: np.ndarray, predicted_change: np.ndarray, names: list[str]) -> dict:
    """Per probe target (true and predicted changes [N, K], K names): slope of predicted on true, their
    correlation, slope of true on predicted, and the median size of the true change."""
    t, p = true_change, predicted_change
    slope = (t * p).sum(0) / np.maximum((t * t).sum(0), 1e-12)
    # a model predicting no change at all has no correlation, nor a slope of the truth on it: None, not NaN
    moves = [bool(p[:, k].std() > 0) for k in range(t.shape[1])]
    corr = [float(np.corrcoef(t[:, k], p[:, k])[0, 1]) if moves[k] else None for k in range(t.shape[1])]
    back = [float((t[:, k] * p[:, k]).sum() / (p[:, k] * p[:, k]).sum()) if moves[k] else None
            for k in range(t.shape[1])]
    return {name: {"slope": round(float(slope[k]), 3), "corr": None if corr[k] is None else round(corr[k], 3),
                   "true_on_predicted": None if back[k] is None else round(back[k], 3),
                   "median_true_change": round(float(np.median(np.abs(t[:, k]))), 4)}
            for k, name in enumerate(names)}


if __name__ == "__main__":
    main()
