"""Is the predictor ensemble's disagreement informative? Its rank correlation with the world model's
actual rollout error on held-out clips, and where it is highest.

    python benchmarks/disagreement.py --checkpoint RUN/latest [--windows 2000 --horizon 5]
        [--cache-root cache] [ensemble.<setting>=...] [--others OTHER/latest ...]
    python benchmarks/disagreement.py --checkpoint REFIT --refits REFIT2 REFIT3 ...

The ensemble (world_model/ensemble.py) is the one agent.run fits for this checkpoint and config: it
is loaded from cache_root/ensembles/<env>-<key> when there, else fitted and saved there (so a later
`agent.run checkpoint=...` reuses it). Windows of history + horizon decisions from the held-out
episodes (the last 10%, which neither the world model nor the ensemble trained on): the world model
rolls out the recorded actions from the encoded history (open loop, as a plan is imagined), the
error per step is the mean squared difference to the encoded frame (the energy's units), and the
disagreement per step is the members' mean squared distance from that rollout, each member rolling
the same actions out on its own (what the planner's cost term reads). Spearman's rho between them,
per step and over the summed horizon, beside two others: the members' spread among themselves (the
world model left out), and a naive predictor of error, how far the recorded latents move over the
clip (copy-last error), which anything that tracks "the agent moves fast" would match. Where: windows are split by what the env's
low-dimensional state says (Push-T: the block moves, i.e. contact; rooms: the agent within 1 cm of a
wall or door post); the share of each group among the 10% of windows with the highest disagreement.
`--others` adds members that do not share the encoder: world models of the same env trained on their
own (another seed, another init), each encoding the frames itself, its rollout mapped into this
model's latents by an affine least-squares map fitted on training frames (report "others"; the
"where" split then reads their disagreement). Put ensemble overrides before `--others`, which
takes every argument after it. `--refits` takes its members from other refits of the same encoder
(world_model/refit.py, e.g. `refit.seed=1`: predictors as wide as the checkpoint's own, trained alike)
instead of fitting an ensemble, and also reports the error of the mean rollout (the checkpoint's and
theirs averaged), the error a predictor averaging them would make. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

import envs
import world_model
from agent.run import recorded_dataset
from world_model.checkpoint import WEIGHTS, read_manifest
from world_model.dataset import Dataset
from world_model.ensemble import MANIFEST, EnsembleConfig, ensemble_key, load_ensemble, save_ensemble, train_ensemble
from world_model.latents import EpisodeLatents, episode_actions
from world_model.refit import refit_base
from world_model.windows import split_episodes


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-d arrays (ties broken by order: continuous values)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def groups(env_name: str, proprio: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(group name, [W] bool) from the windows' proprio [W, K + H, P]; None for an env without one."""
    if env_name == "pusht":  # the block moves (> 1 px or > 0.02 rad) in a step of the window: contact
        step = np.diff(proprio, axis=1)
        return "contact", ((np.linalg.norm(step[..., 2:4], axis=-1) > 1.0) | (np.abs(step[..., 4]) > 0.02)).any(1)
    if env_name in ("two-rooms", "four-rooms"):  # the agent within 1 cm of a wall's surface at some frame
        env = envs.make(env_name)
        gap = env.wall_gaps(proprio[..., :2]).min(-1)  # [W, L, walls] -> [W, L]
        env.close()
        return "at_wall", (gap < 0.01).any(1)
    return None


def _affine(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [..., D + 1]: a constant 1 appended, so that a linear map of it is affine."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], -1)


def others_spread(checkpoints: list[str], ds: Dataset, env_name: str, latents: EpisodeLatents, held: np.ndarray,
                  e: np.ndarray, span: np.ndarray, acts: torch.Tensor, k: int, pred: torch.Tensor, z: torch.Tensor,
                  map_episodes: int, held_out_fraction: float, device: torch.device) -> dict:
    """Disagreement of world models trained on their own: each encodes the windows' frames itself, rolls
    the recorded actions out with its own predictor, and its rollout is mapped into this model's latent
    space by a least-squares affine map fitted on training episodes' frames (its latent -> this one's).
    spread [W, H]: the mapped rollouts' mean squared distance from this model's rollout `pred` [W, H, D];
    map_r2: how much of this model's latent variance each map explains on the held-out windows' frames."""
    train_eps, _ = split_episodes(ds.num_episodes, held_out_fraction)
    fit_eps = train_eps[np.linspace(0, len(train_eps) - 1, min(map_episodes, len(train_eps))).astype(int)]
    target = latents(fit_eps).flatten(0, 1)  # [N, D]
    spreads, r2s, own_errors = [], [], []
    for checkpoint in checkpoints:
        other = world_model.load(checkpoint).eval().for_env(env_name)
        other_latents = EpisodeLatents(other, ds, device)
        source = other_latents(fit_eps).flatten(0, 1)  # [N, D_o]
        solution = torch.linalg.lstsq(_affine(source).double(), target.double()).solution.float()  # [D_o + 1, D]
        z_other = other_latents(held)[torch.as_tensor(e)[:, None], torch.as_tensor(span)]  # [W, K + H, D_o]
        with torch.no_grad():
            rolled = other.rollout(z_other[:, :k], acts[:, k - 1 :], past_actions=acts[:, : k - 1])  # [W, H, D_o]
        own_errors.append([round(float(v), 5) for v in (rolled - z_other[:, k:]).square().mean(-1).mean(0)])
        mapped = _affine(rolled) @ solution  # [W, H, D]
        spreads.append((mapped - pred).square().mean(-1).numpy())
        truth = _affine(z_other[:, k:]) @ solution
        r2s.append(round(1.0 - float((truth - z[:, k:]).square().sum() / (z[:, k:] - z[:, k:].mean((0, 1))).square().sum()), 3))
    return {"spread": np.mean(spreads, axis=0), "map_r2": r2s, "own_error": own_errors}


class RefitMembers:
    """Predictors of other refits of the checkpoint's encoder as the ensemble's members: rollouts as
    PredictorEnsemble.rollouts gives them."""

    def __init__(self, predictors: list):
        self.members = predictors

    def rollouts(self, start: torch.Tensor, past: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """start [B, K, D], past [B, K-1, A], actions [B, N, H, A] -> [M, B, N, H, D]."""
        return torch.stack([m.rollout_candidates(start, past, actions) for m in self.members])


def refit_members(checkpoint: str, manifest: dict, refits: list[str]) -> RefitMembers:
    """The predictors of `refits`, which must be refits of the same base weights as `checkpoint`."""
    base = refit_base(manifest)
    if base is None:
        raise SystemExit(f"error: --refits compares refits of one encoder and {checkpoint} is not a refit; pass one")
    predictors = []
    for path in refits:
        if refit_base(read_manifest(path)) != base:
            raise SystemExit(f"error: {path} is not a refit of the same base weights as {checkpoint}; pass refits of one model")
        predictors.append(world_model.load(path).eval().predictor)
    return RefitMembers(predictors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--env", help="which env of a shared model (a single-env model's is its own)")
    parser.add_argument("--cache-root", default="cache")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--others", nargs="*", default=[],
                        help="world models of the same env trained on their own (own encoder, another seed or "
                             "init): members whose rollouts are mapped into this model's latent space")
    parser.add_argument("--refits", nargs="*", default=[],
                        help="refits of the same encoder (another refit.seed): their predictors are the members, "
                             "no ensemble is fitted")
    parser.add_argument("--map-episodes", type=int, default=200,
                        help="training episodes whose frames fit each other model's linear map into this one's latents")
    parser.add_argument("overrides", nargs="*", help="ensemble.<setting>=<value> (EnsembleConfig)")
    args = parser.parse_args()
    start = time.perf_counter()
    cfg = EnsembleConfig(**{k.removeprefix("ensemble."): type(getattr(EnsembleConfig, k.removeprefix("ensemble.")))(v)
                            for k, v in (o.split("=", 1) for o in args.overrides)})
    manifest = read_manifest(args.checkpoint)
    wm = world_model.load(args.checkpoint).eval()
    dataset_root = recorded_dataset(manifest, args.env or "")  # a single-env model's dataset whatever the name
    if dataset_root is None:
        raise SystemExit(f"error: {args.checkpoint} is a shared model of {wm.cfg.envs}; pass --env <one of them>")
    ds = Dataset(dataset_root)
    env_name = ds.manifest["env"]["name"]
    wm = wm.for_env(env_name)
    device = torch.device("cpu")
    latents = EpisodeLatents(wm, ds, device)
    folder = Path(args.cache_root) / "ensembles" / f"{env_name}-{ensemble_key(manifest['files'][WEIGHTS]['sha256'], dataset_root.name, cfg)}"
    if args.refits:
        if args.overrides:
            raise SystemExit(f"error: --refits takes its members from the refits, so {args.overrides} would change "
                             "nothing; drop them or --refits")
        ensemble, fitted = refit_members(args.checkpoint, manifest, args.refits), None
    elif (folder / MANIFEST).exists():
        ensemble, fitted = load_ensemble(folder), None
    else:
        ensemble, fitted = train_ensemble(wm, ds, cfg, device, progress=False, latents=latents)
        save_ensemble(folder, ensemble, fitted)
    _, held = split_episodes(ds.num_episodes, cfg.held_out_fraction)
    k, h = wm.cfg.history, args.horizon
    z_all, a_all = latents(held), episode_actions(ds, held, device)  # [E, T, D], [E, T, A]
    proprio_all = np.stack([np.asarray(ds.episode(int(e)).proprio, np.float64) for e in held])  # [E, T, P]
    rng = np.random.default_rng(args.seed)
    e = rng.integers(len(held), size=args.windows)
    t = rng.integers(z_all.shape[1] - k - h + 1, size=args.windows)
    span = t[:, None] + np.arange(k + h)  # [W, K + H]
    z = z_all[torch.as_tensor(e)[:, None], torch.as_tensor(span)]  # [W, K + H, D]
    acts = a_all[torch.as_tensor(e)[:, None], torch.as_tensor(span[:, :-1])]  # [W, K + H - 1, A]
    with torch.no_grad():
        pred = wm.rollout(z[:, :k], acts[:, k - 1 :], past_actions=acts[:, : k - 1])  # [W, H, D]
        error = (pred - z[:, k:]).square().mean(-1).numpy()  # [W, H]
        own = ensemble.rollouts(z[:, :k], acts[:, : k - 1], acts[:, None, k - 1 :])[:, :, 0]  # [M, W, H, D]
        spread = (own - pred).square().mean(-1).mean(0).numpy()  # [W, H]: the planner's disagreement
        among = own.var(dim=0, unbiased=False).mean(-1).numpy() if len(own) > 1 else None  # [W, H]: members alone
        moved = (z[:, k - 1 : k] - z[:, k:]).square().mean(-1).numpy()  # [W, H]: copy-last error
        mean_error = (torch.cat([pred[None], own]).mean(0) - z[:, k:]).square().mean(-1).mean(0)  # [H], all averaged
    report = {"checkpoint": args.checkpoint, "env": env_name, "windows": args.windows, "horizon": h,
              "ensemble": "the refits' predictors" if args.refits else str(folder),
              "ensemble_config": None if args.refits else dataclasses.asdict(cfg),
              "fitted": fitted and {k_: fitted[k_] for k_ in ("encode_s", "train_s", "held_out_error",
                                                               "held_out_copy_last")},
              "spearman_per_step": [round(spearman(spread[:, i], error[:, i]), 3) for i in range(h)],
              "spearman_sum": round(spearman(spread.sum(1), error.sum(1)), 3),
              "spearman_members_alone_sum": among is not None and round(spearman(among.sum(1), error.sum(1)), 3),
              "spearman_copy_last_sum": round(spearman(moved.sum(1), error.sum(1)), 3),
              "mean_error_per_step": [round(float(v), 5) for v in error.mean(0)],
              "mean_disagreement_per_step": [round(float(v), 5) for v in spread.mean(0)]}
    if args.refits:
        report["refits"] = args.refits
        report["mean_rollout_error_per_step"] = [round(float(v), 5) for v in mean_error]
        report["member_error_per_step"] = [[round(float(v), 5) for v in (m - z[:, k:]).square().mean(-1).mean(0)]
                                           for m in own]
    if args.others:
        other = others_spread(args.others, ds, env_name, latents, held, e, span, acts, k, pred, z,
                              args.map_episodes, cfg.held_out_fraction, device)
        report["others"] = {"checkpoints": args.others, "map_r2": other["map_r2"],
                            "spearman_per_step": [round(spearman(other["spread"][:, i], error[:, i]), 3)
                                                  for i in range(h)],
                            "spearman_sum": round(spearman(other["spread"].sum(1), error.sum(1)), 3),
                            "mean_disagreement_per_step": [round(float(v), 5) for v in other["spread"].mean(0)],
                            "mean_own_error_per_step": other["own_error"]}
        spread = other["spread"]  # "where" below: the others' disagreement
    split = groups(env_name, proprio_all[e[:, None], span])
    if split is not None:
        name, mask = split
        top = spread.sum(1) >= np.quantile(spread.sum(1), 0.9)
        report["where"] = {
            "group": name, "share_of_windows": round(float(mask.mean()), 3),
            "share_among_top_10pct_disagreement": round(float(mask[top].mean()), 3),
            "mean_disagreement_sum": {name: round(float(spread.sum(1)[mask].mean()), 5),
                                "other": round(float(spread.sum(1)[~mask].mean()), 5)},
            "mean_error_sum": {name: round(float(error.sum(1)[mask].mean()), 5),
                               "other": round(float(error.sum(1)[~mask].mean()), 5)},
            "spearman_sum_within": {name: round(spearman(spread.sum(1)[mask], error.sum(1)[mask]), 3),
                                    "other": round(spearman(spread.sum(1)[~mask], error.sum(1)[~mask]), 3)}}
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
