"""What the world model predicts for an agent pushed into a wall, read through the landmark graph.

    python benchmarks/two_rooms_wall_rollout.py CHECKPOINT LANDMARKS DATASET [--steps 5]

From a few start positions (beside the door post, in the open), the agent is held still for one
frame, then the same action is applied for --steps decisions both in the simulator and in the
world model's rollout (a 2-frame history of the start frame). Each predicted latent is read as the
position of its nearest landmark-graph node (the dataset's recorded probe position of that
frame); the true positions come from the simulator. Prints one JSON line per start and action.
Why: a plan scored at its last step trusts the rollout that far; where the rollout leaves the
video's frames (pressing into a wall), a far-off predicted latent can look close to a subgoal.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import envs
import world_model
from agent.landmarks import load_landmarks
from world_model.dataset import Dataset
from world_model.windows import split_episodes

CASES = [((-0.07, 0.15), (1.0, 0.0)), ((-0.07, 0.15), (1.0, -1.0)), ((-0.07, 0.15), (0.0, -1.0)),
         ((-0.3, 0.3), (1.0, 0.0))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("landmarks", help="a cache/landmarks/<env>-<key> folder built for this checkpoint")
    parser.add_argument("dataset", help="the dataset the model and the graph were built from")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wm = world_model.load(args.checkpoint).eval()
    graph = load_landmarks(args.landmarks)
    data = Dataset(args.dataset)
    train_eps, _ = split_episodes(data.num_episodes, graph.cfg.held_out_fraction)
    node_pos = np.concatenate([np.array(data.episode(int(e)).probe)[:: graph.cfg.stride] for e in train_eps])  # [N, 2]
    env = envs.make("two-rooms")
    env.reset(seed=0)
    for start, action in CASES:
        env.set_sim_state(np.array([*start, 0.0, 0.0]))
        frame = torch.from_numpy(env.render_sim_state(env.get_sim_state()))  # [H, W, 3]
        z0 = wm.encode(frame[None, None])[:, 0]  # [1, D]
        plan = torch.tensor([action] * args.steps, dtype=torch.float32)[None, None]  # [1, 1, steps, 2]
        with torch.no_grad():
            z = wm.rollout_candidates(torch.stack([z0, z0], 1), plan, past_actions=torch.zeros(1, 1, 2))[0, 0]
        predicted = node_pos[graph.nearest(z)]  # [steps, 2]
        true = []
        for _ in range(args.steps):
            env.step(np.array(action, dtype=np.float32))
            true.append(env.get_sim_state()[:2].round(3).tolist())
        print(json.dumps({"start": start, "action": action, "true": true,
                          "predicted_nearest_frame": predicted.round(3).tolist()}))
    env.close()


if __name__ == "__main__":
    main()
