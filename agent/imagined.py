"""What the world model imagined along a recorded episode: the predictions behind a video's
imagined panel, recomputed from the record alone.

The planning policy executes its chosen plan's actions in order until it plans again, so the
prediction it made for each decision's outcome is the world model's rollout of the recorded
actions from the last decision it planned at (`plan_ms` > 0 in the record), started from the
same two encoded frames and the same previous action. A video made during evaluation takes those
predictions from the policy itself (PlanningPolicy's info["imagined"]); this file rebuilds them
for any record, e.g. one picked from a results table afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

import envs


def decision_actions(record: dict) -> np.ndarray:
    """[decisions, A]: the action of each decision (the record holds one per control step, each
    repeated `action_repeat` times)."""
    actions = np.asarray(record["actions"], np.float32)  # [budget, A]
    repeat = record["action_repeat"]
    return actions[::repeat]


@torch.no_grad()
def imagine_record(record: dict, wm, device: torch.device, ensemble=None) -> dict[str, np.ndarray]:
    """Re-simulates `record` at the world model's frame size and returns, per decision d,
    "imagined" [decisions, D]: the latent predicted for the frame after decision d's action, and
    "energy" [decisions]: the goal energy of the frame observed at decision d; with a predictor
    `ensemble` (world_model/ensemble.py) also "members" [M, decisions, D]: each member's own rollout
    of the same actions from the same start (what ModelDisagreement compares with "imagined")."""
    if "action_repeat" not in record:
        raise ValueError("this record has no action_repeat (it predates imagined videos); evaluate the episode again "
                         "to get a record that has it, or render it without --checkpoint")
    actions = decision_actions(record)  # [decisions, A]
    decisions = len(actions)
    # A policy that never plans (a baseline) is shown one-decision predictions of its actions.
    planned = [d for d in range(decisions) if d == 0 or record["plan_ms"][d] > 0] + [decisions]
    env = envs.make(record["env"], image_size=wm.cfg.image_size, action_repeat=record["action_repeat"])
    try:
        obs, _ = env.reset(seed=record["seed"], options=record["options"])

        def encode(frame: np.ndarray) -> torch.Tensor:
            """uint8 [H, W, 3] -> [1, D]"""
            return wm.encode(torch.from_numpy(frame)[None, None].to(device))[:, 0]

        z_goal = encode(obs["goal"])
        previous = record.get("previous_state")
        z_prev = encode(env.render_sim_state(np.asarray(previous)) if previous is not None else obs["pixels"])
        last = np.asarray(record.get("previous_action") or np.zeros(actions.shape[1]), np.float32)  # [A]
        imagined = torch.zeros(decisions, wm.cfg.latent_dim, device=device)
        members = torch.zeros(len(ensemble.members) if ensemble is not None else 0, decisions, wm.cfg.latent_dim,
                              device=device)  # [M, decisions, D]
        energy = np.zeros(decisions)
        for d in range(decisions):
            z_now = encode(obs["pixels"])
            energy[d] = float(wm.energy(z_now, z_goal)[0])
            if d in planned:
                until = planned[planned.index(d) + 1]
                plan = torch.from_numpy(actions[d:until])[None].to(device)  # [1, n, A]
                past = torch.from_numpy(last)[None, None].to(device)  # [1, 1, A]
                start = torch.stack([z_prev, z_now], 1)  # [1, 2, D]
                imagined[d:until] = wm.rollout(start, plan, past_actions=past)[0]
                if ensemble is not None:
                    members[:, d:until] = ensemble.rollouts(start, past, plan[:, None])[:, 0, 0]  # [M, 1, 1, n, D] in
            obs = env.step(actions[d])[0]
            z_prev, last = z_now, actions[d]
    finally:
        env.close()
    out = {"imagined": imagined.cpu().numpy(), "energy": energy}
    if ensemble is not None:
        out["members"] = members.cpu().numpy()
    return out
