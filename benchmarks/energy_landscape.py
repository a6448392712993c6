"""How plannable is a world model's goal energy? Renders the reacher arm on a grid of joint
angles, encodes every frame, and for random goal poses measures whether greedy descent on the
energy over that grid (8 neighbours) ends at the goal. A flat energy far from the goal shows up as
descents that stop in a local minimum. Encoded (not predicted) latents: this isolates the
representation from the predictor.

    MUJOCO_GL=egl PYTHONPATH=. python benchmarks/energy_landscape.py CHECKPOINT [--critic FOLDER]
        [--grid 32] [--goals 40]

`--critic` adds the reach critic's distance (agent/critic.py; agent.run caches it under
<cache_root>/critics) as a variant.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import envs
import world_model
from world_model.train import encode_frames


def greedy_success(energy: np.ndarray, goal: tuple[int, int], radius: int = 1) -> float:
    """energy [G, G] over (shoulder, wrist) cells; fraction of start cells whose steepest descent
    ends within `radius` cells of `goal`. Shoulder wraps around; wrist does not."""
    g = energy.shape[0]
    # Steepest-descent successor of every cell (itself when no neighbour is lower).
    nxt = np.zeros((g, g, 2), dtype=int)
    for i in range(g):
        for j in range(g):
            best, bi, bj = energy[i, j], i, j
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    ii, jj = (i + di) % g, j + dj
                    if 0 <= jj < g and energy[ii, jj] < best:
                        best, bi, bj = energy[ii, jj], ii, jj
            nxt[i, j] = (bi, bj)
    ok = 0
    for i in range(g):
        for j in range(g):
            ci, cj = i, j
            for _ in range(4 * g):
                ni, nj = nxt[ci, cj]
                if (ni, nj) == (ci, cj):
                    break
                ci, cj = ni, nj
            di = min(abs(ci - goal[0]), g - abs(ci - goal[0]))
            ok += di <= radius and abs(cj - goal[1]) <= radius
    return ok / (g * g)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--critic", default=None)
    p.add_argument("--grid", type=int, default=32)
    p.add_argument("--goals", type=int, default=40)
    args = p.parse_args()

    wm = world_model.load(args.checkpoint).eval()
    env = envs.make("reacher", image_size=wm.cfg.image_size)
    env.reset(seed=0)
    g = args.grid
    shoulder = np.linspace(-np.pi, np.pi, g, endpoint=False)
    wrist = np.linspace(-2.7, 2.7, g)
    t0 = time.time()
    frames = np.stack([env.render_qpos(np.array([s, w, *env.qpos[2:]])) for s in shoulder for w in wrist])
    z = encode_frames(wm.encode, frames, torch.device("cpu"))  # [G*G, D]
    print(f"rendered and encoded {len(frames)} frames in {time.time() - t0:.1f} s")

    cells, ch = 8, wm.cfg.token_dim  # the encoder always ends on an 8x8 map
    tok = z.reshape(g * g, cells, cells, ch).permute(0, 3, 1, 2)  # [N, C, cells, cells]
    variants = {f"pool{s}": torch.nn.functional.avg_pool2d(tok, s).flatten(1) if s > 1 else tok.flatten(1)
                for s in (1, 2, 4, 8)}
    variants["multi1+2+4"] = None
    if args.critic:
        from agent.critic import load_critic

        with torch.no_grad():
            variants["critic"] = load_critic(args.critic).embed(z)  # [N, dim]

    rng = np.random.default_rng(0)
    goals = [(int(rng.integers(g)), int(rng.integers(2, g - 2))) for _ in range(args.goals)]
    qs = np.stack(np.meshgrid(shoulder, wrist, indexing="ij"), -1).reshape(-1, 2)
    print(f"{'energy':12s} greedy-success  spearman(E, joint distance)")
    for name, feats in variants.items():
        succ, corr = [], []
        for gi, gj in goals:
            k = gi * g + gj
            if feats is None:
                e = sum((variants[f"pool{s}"] - variants[f"pool{s}"][k]).square().mean(-1) for s in (1, 2, 4))
            else:
                e = (feats - feats[k]).norm(dim=-1) if name == "critic" else (feats - feats[k]).square().mean(-1)
            e = e.numpy().reshape(g, g)
            succ.append(greedy_success(e, (gi, gj)))
            d = np.abs(np.angle(np.exp(1j * (qs - qs[k])))).max(-1)
            corr.append(np.corrcoef(np.argsort(np.argsort(e.ravel())), np.argsort(np.argsort(d)))[0, 1])
        print(f"{name:12s} {np.mean(succ):.3f}          {np.mean(corr):.3f}")


if __name__ == "__main__":
    main()
