"""Evaluation: every goal kind with the planner and the baselines on the same episodes; writes
records.jsonl, results.jsonl/csv, summary.json and videos into the run's output folder.

It resumes: each chunk of `eval.batch` episodes is recorded durably as soon as it ends
(agent/eval_folder.py), and a rerun into the same folder runs only the chunks not yet recorded.
Every chunk's randomness (planner noise, random baseline) is seeded from its goal kind and first
episode alone, so a resumed evaluation ends with the records of an uninterrupted one (apart from
the wall-clock fields plan_ms and wall_s). results.jsonl/csv and summary.json are rebuilt from all
records at the end, and the planner's videos are written with the first chunk, before its records.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from agent.configurator import Configurator, build_planner, build_subgoal_search
from agent.costs import build_cost
from agent.episode import run_episodes
from agent.episode_record import replay_matches
from agent.eval_folder import RecordStore, claim
from agent.eval_summary import summarize, table
from agent.goal_sources import build_source, needs
from agent.imagined import imagine_record
from agent.policies import PlanningPolicy, RandomPolicy, ZeroPolicy
from agent.protocols import chunk_seed, make_episodes
from agent.video import decode_trace, with_spread, write_episode_video
from world_model.checkpoint import WEIGHTS, read_manifest
from world_model.dataset import write_json_atomic
from world_model.encoder import GRID
from world_model.metrics_log import rewrite_log
from world_model.plain import plain


def trained_envs(manifest: dict) -> list[str] | None:
    """The names of the envs whose video a checkpoint was trained on, from its manifest
    (train_config.identity.data: the identity of its dataset, or of each of its datasets); None when
    the manifest does not say (a checkpoint saved outside world_model.train)."""
    data = ((manifest.get("train_config") or {}).get("identity") or {}).get("data")
    datasets = data if isinstance(data, list) else [data]
    names = [d["env"]["name"] for d in datasets if isinstance(d, dict) and isinstance(d.get("env"), dict)
             and "name" in d["env"]]
    return sorted(set(names)) or None


def model_for_env(wm, env, checkpoint: Path, manifest: dict):
    """The world model as env uses it (`wm.for_env(env.name)`: a shared model's view in env's own
    actions, a single-env model as it is), or one clear line when a checkpoint (its manifest:
    `manifest`) was trained on another env's video, or for other frames or actions than env's. A
    shared model (trained on several envs' video, world_model/mixture.py) fits exactly the envs it
    was trained on."""
    known = trained_envs(manifest)
    if known is not None and env.name not in known and len(known) == 1:
        raise ValueError(f"checkpoint {checkpoint} was trained on the video of env {', '.join(known)}, not {env.name}; "
                         f"pass env={known[0]}, or a checkpoint trained on {env.name}")
    if known is not None and env.name not in known:
        raise ValueError(f"checkpoint {checkpoint} is a world model shared by envs {', '.join(known)}, not {env.name}; "
                         f"pass env=<one of them>, or a checkpoint trained on {env.name}")
    wm = wm.for_env(env.name)  # a single-env model as it is; a shared one refuses an env it does not know
    if wm.cfg.image_size != env.image_size:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on {wm.cfg.image_size}px frames but env {env.name} renders "
            f"{env.image_size}px; pass env.image_size={wm.cfg.image_size}"
        )
    if (wm.cfg.action_dim,) != env.action_space.shape:
        raise ValueError(f"checkpoint {checkpoint} takes {wm.cfg.action_dim}-d actions but env {env.name} has "
                         f"action shape {env.action_space.shape}; it was trained for another env")
    return wm


def identity(cfg, checkpoint: Path, device, batch: int, goal_kinds: list[str], critic, macro=None,
             landmarks=None, ensemble=None, readout=None, prior=None) -> dict:
    """Everything that decides an evaluation's records (not its progress bars or output paths)."""
    return {
        "checkpoint": str(Path(checkpoint).resolve()),
        "weights_sha256": read_manifest(checkpoint)["files"][WEIGHTS]["sha256"],
        "env": plain(cfg.env),
        "device": str(device),
        "eval": {**plain(cfg.eval), "batch": batch, "goal_kinds": goal_kinds},
        "planner": plain(cfg.planner),
        "configurator": plain(cfg.configurator),
        "critic": plain(cfg.critic) if critic is not None else None,
        **({"macro": plain(cfg.macro)} if macro is not None else {}),
        **({"landmarks": plain(cfg.landmarks)} if landmarks is not None else {}),
        **({"ensemble": plain(cfg.ensemble)} if ensemble is not None else {}),
        **({"readout": plain(cfg.readout)} if readout is not None else {}),
        **({"prior": plain(cfg.prior)} if prior is not None else {}),
    }


def plan_grid(wm) -> tuple[int, int] | None:
    """(tokens per frame, numbers per token) of a token model's latent, which the goal energy
    compares token by token; None for a pooled one."""
    return (GRID, wm.cfg.token_dim) if wm.cfg.representation == "tokens" else None


def chunk_policy(cfg, name: str, first: int, kind_index: int, wm, setup, grid, device, modules: dict, bounds: tuple,
                 imagine: int = 0):
    """A fresh policy for the chunk of episodes starting at `first`, its randomness seeded from
    (goal kind, first) alone, so it does not depend on which chunks ran before it in this process.
    modules: the fitted modules by name ("critic", "landmarks", "macro", "ensemble", "readout", "prior"; None where
    not fitted);
    bounds: the env's action bounds (low [A], high [A]) on `device`; imagine: the planner's episodes
    whose imagined latents are kept for videos (PlanningPolicy)."""
    if name != "planner":
        return RandomPolicy(chunk_seed(cfg.eval.seed, kind_index, first)) if name == "random" else ZeroPolicy()
    seed = None if cfg.planner.seed is None else chunk_seed(cfg.planner.seed, kind_index, first)
    planner_cfg = plain(cfg.planner)
    planner = build_planner(planner_cfg, setup, seed=seed)
    # a hierarchical planner's high level draws from the next stream
    search = build_subgoal_search(planner_cfg, setup, None if seed is None else seed + 1)
    source, cost = plan_parts(setup, grid, modules, search, *bounds)
    return PlanningPolicy(wm, planner, cost, source, setup, device, imagine=imagine, prior=modules.get("prior"),
                          readout=modules.get("readout"))


def plan_parts(setup, grid, modules: dict, search=None, low=None, high=None) -> tuple:
    """(the goal kind's goal source, the cost the planner's plans are scored by toward what it
    answers). A source aiming at a subgoal (the graph's, or a hierarchical planner's: `search`)
    scores its low level with the critic weighted by subgoal_critic_weight; a hierarchical
    planner's high level scores its macro plans with the goal kind's full cost, less the model
    disagreement (its members predict single decisions, not macro steps). low, high [A]: the action
    bounds a high level searches within."""
    critic, ensemble, readout = modules.get("critic"), modules.get("ensemble"), modules.get("readout")

    def full(weights: dict):  # built only where it scores something: its critic may not have been fitted otherwise
        return build_cost(weights, setup.goal_energy, grid, critic, ensemble, readout)

    high_cost = full({**setup.cost_weights, "disagreement": 0.0}) if search is not None else None
    source = build_source(setup, modules, search, high_cost=high_cost, low=low, high=high)
    if not source.subgoal:
        return source, full(setup.cost_weights)
    return source, full({**setup.cost_weights, "critic": setup.cost_weights["subgoal_critic"]})


def _with_spread(record: dict, trace: list[dict], wm, decoder, ensemble, device) -> tuple[list[dict], object]:
    """A planner video's trace with each decision's ensemble disagreement, and its spread panel
    (agent/video.py spread_frames, uint8 [decisions, h, w, 3]); as given and None without an
    ensemble or a decoder. The members' rollouts are rebuilt from the record (agent/imagined.py)."""
    if ensemble is None or decoder is None:
        return trace, None
    return with_spread(decoder, imagine_record(record, wm, device, ensemble), trace)


def evaluate(cfg, wm, envs: list, device, out: Path, checkpoint: Path, critic=None, macro=None,
             progress: bool = True, decoder=None, landmarks=None, ensemble=None, readout=None, prior=None) -> dict:
    """Runs each goal kind with the planner and the baselines on `envs` (one per batched
    episode, all alike), continuing the evaluation already in `out` if there is one; returns the
    summary (also written to out/summary.json). `checkpoint` is the folder `wm` was loaded from;
    `critic`, `macro` (the level-2 predictor), `landmarks` (the graph of the training video's
    frames), `ensemble` (the predictor ensemble of the model-disagreement cost), `readout` (the probe
    readout of the readout cost), `prior` (the action prior the planner starts from): the fitted modules
    the goal kinds' sources and costs need (agent/goal_sources.py: needs); `decoder` (world_model/decoder.py)
    draws the imagined panel of the videos (none without it), and beside it, where the goal kind's
    cost has the ensemble, its spread panel."""
    env0 = envs[0]
    configurator = Configurator.of_run(cfg.configurator, env0)
    goal_kinds = list(cfg.eval.goal_kinds or env0.goal_kinds)
    unknown = [b for b in cfg.eval.baselines if b not in ("random", "zero")]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from ['random', 'zero']")
    if "seed" not in cfg.planner:
        raise ValueError(f"planner {cfg.planner.get('_target_')} has no seed in its config; add `seed: 0` to its "
                         "configs/planner file (each chunk of episodes reseeds it, so a resumed evaluation repeats)")
    batch = len(envs)
    grid = plan_grid(wm)
    modules = {"critic": critic, "landmarks": landmarks, "macro": macro, "ensemble": ensemble, "readout": readout,
               "prior": prior}
    needed = set().union(*(needs(configurator.setup(k, cfg.planner.get("name")), cfg.planner) for k in goal_kinds))
    missing = sorted(m for m in needed if modules[m] is None)
    if missing:
        raise ValueError(f"the goal sources and costs of goal kind(s) {goal_kinds} need {', '.join(missing)}; "
                         f"pass {', '.join(m + '=' for m in missing)}")
    claim(out, identity(cfg, checkpoint, device, batch, goal_kinds, critic, macro if "macro" in needed else None,
                        landmarks if "landmarks" in needed else None, ensemble if "ensemble" in needed else None,
                        readout if "readout" in needed else None, prior if "prior" in needed else None))
    space = env0.action_space
    bounds = tuple(torch.as_tensor(b, dtype=torch.float32, device=device) for b in (space.low, space.high))  # [A] each
    store = RecordStore(out, cfg.eval.episodes, batch)
    rows, bar = [], None
    try:
        for goal_kind in goal_kinds:
            setup = configurator.setup(goal_kind, cfg.planner.get("name"))
            if setup.planner_overrides:  # they win over planner.<setting>=... from the command line: say so
                print(f"{goal_kind}: {cfg.planner.get('name')} with this goal kind's {setup.planner_overrides} "
                      f"(configurator.{goal_kind}.planner.{cfg.planner.get('name')}.<setting>=... changes them)")
            specs = make_episodes(env0, goal_kind, cfg.eval.episodes, cfg.eval.seed, setup.budget)
            at = (list(env0.goal_kinds).index(goal_kind), wm, setup, grid, device, modules, bounds)
            for name in ["planner", *cfg.eval.baselines]:
                firsts = range(0, len(specs), batch)
                todo = [first for first in firsts if store.get(goal_kind, name, first) is None]
                bar = tqdm(total=len(firsts) * setup.decisions, initial=(len(firsts) - len(todo)) * setup.decisions,
                           desc=f"{goal_kind}/{name}", unit="decision", disable=not progress)
                for first in todo:
                    keep = cfg.eval.videos if (name == "planner" and first == 0) else 0
                    policy = chunk_policy(cfg, name, first, *at, imagine=cfg.eval.videos)
                    chunk, videos = run_episodes(envs, specs[first : first + batch], policy, keep, bar)
                    for i, record in enumerate(chunk):
                        record["episode"] = first + i
                        if cfg.eval.verify_replay and name == "planner":
                            record["replay_matches"] = replay_matches(record)
                    # videos first: once the chunk is recorded it never runs again to write them
                    for i, trace in enumerate(videos):  # the kept episodes are the chunk's first ones
                        trace, spread = _with_spread(chunk[i], trace, wm, decoder, ensemble, device)
                        write_episode_video(out / "videos" / f"{goal_kind}-{i:02d}.mp4", chunk[i],
                                            cfg.eval.video_size, decode_trace(decoder, trace), trace, spread)
                    store.append(goal_kind, name, first, chunk)
                bar.close()
                records = [r for first in firsts for r in store.get(goal_kind, name, first)]
                rows.append({"protocol": goal_kind, "env": env0.name, "policy": name, **summarize(records)})
        replay_failures = sum(not r["replay_matches"] for chunk in store.done.values() for r in chunk
                              if r["policy"] == "planner") if cfg.eval.verify_replay else None
    finally:
        store.close()
        if bar is not None:
            bar.close()  # idempotent; an error then goes on a line of its own, not after the bar
    rewrite_log(out, "results", [{k: v for k, v in row.items() if not isinstance(v, list)} for row in rows])
    summary = {"env": env0.name, "device": str(device), "batch": batch, "replay_failures": replay_failures,
               "rows": rows}
    write_json_atomic(out / "summary.json", summary)
    print(table(rows))
    if cfg.eval.verify_replay:
        print(f"replay with the simulator alone: {replay_failures} of the planner's records differ from their reported outcome")
    print(f"records: {store.path}\nsummary: {out / 'summary.json'}")
    return summary
