"""`python -m agent.run env=reacher`: collect agent video, train the world model, evaluate planning.

The one place that builds everything (envs, world model, planner, cost, logger) from the config
and hands them over. Datasets and models are cached by their config under `cache_root`, so a
second run reuses them; everything this run produces goes to its hydra output folder:
records.jsonl (one line per episode), summary.json, results.csv/jsonl and videos/*.mp4.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STAGES = ("collect", "train", "eval", "all")


def critic_for(cfg, checkpoint: Path, device, progress: bool = True):
    """The reach critic for this world model, trained once on the config's dataset (collected
    first if it is not cached) and cached under cache_root/critics; None when no protocol gives
    it a weight."""
    from agent.critic import CriticConfig, critic_key, load_critic, save_critic, train_critic
    from world_model.collect import collect
    from world_model.dataset import Dataset
    from world_model.plain import plain

    if not any(cfg.configurator[p].critic_weight for p in cfg.eval.protocols):
        return None
    ccfg = CriticConfig(**plain(cfg.critic))
    dataset_root = collect(cfg.env, cfg.data, cfg.cache_root)
    folder = Path(cfg.cache_root) / "critics" / f"{cfg.env.name}-{critic_key(checkpoint, dataset_root, ccfg)}"
    if (folder / "critic.json").exists():
        return load_critic(folder).to(device)
    import world_model

    wm = world_model.load(checkpoint)
    critic, stats = train_critic(wm, Dataset(dataset_root, verify="size"), ccfg, device, progress)
    save_critic(folder, critic, stats)
    print(f"critic: {folder} (encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s, "
          f"held-out step {stats['held_out_step']:.2f}, spread {stats['held_out_spread']:.2f})")
    return critic


def evaluate(cfg, checkpoint: Path, out: Path, progress: bool = True, critic=None) -> dict:
    """Runs every protocol with the planner and the baselines; writes records, summary, videos."""
    from hydra.utils import instantiate
    from tqdm import tqdm

    import envs as envs_pkg
    import world_model
    from agent.configurator import Configurator, ConfiguratorConfig, TaskSettings
    from agent.costs import build_cost
    from agent.episode import run_episodes
    from agent.policies import PlanningPolicy, RandomPolicy, ZeroPolicy
    from agent.protocols import make_episodes
    from agent.records import replay
    from agent.report import summarize, table
    from agent.video import write_video
    from world_model.collect import env_settings
    from world_model.encoder import GRID
    from world_model.metrics_log import MetricsLog
    from world_model.plain import plain
    from world_model.train import pick_device

    device = pick_device(cfg.device)
    wm = world_model.load(checkpoint).to(device)
    if wm.cfg.image_size != cfg.env.image_size:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on {wm.cfg.image_size}px frames but env.image_size="
            f"{cfg.env.image_size}; pass env.image_size={wm.cfg.image_size}"
        )
    configurator = Configurator(ConfiguratorConfig(**{k: TaskSettings(**v) for k, v in plain(cfg.configurator).items()}))
    batch = min(cfg.eval.batch, cfg.eval.episodes)
    envs = [envs_pkg.make(**env_settings(cfg.env)) for _ in range(batch)]
    log = MetricsLog(out, name="results")
    rows, records_path = [], out / "records.jsonl"
    replay_failures = 0
    with open(records_path, "w") as records_file:
        for protocol in cfg.eval.protocols:
            setup = configurator.setup(protocol, envs[0].action_repeat)
            specs = make_episodes(protocol, envs[0], cfg.eval.episodes, cfg.eval.seed, setup.budget)
            planner = instantiate(cfg.planner, **setup.planner_overrides)
            grid = (GRID, wm.cfg.token_dim) if wm.cfg.representation == "tokens" else None
            cost = build_cost(setup.cost_weights, setup.goal_energy, grid, critic)
            policies = [PlanningPolicy(wm, planner, cost, setup, device)]
            baselines = {"random": lambda: RandomPolicy(cfg.eval.seed), "zero": ZeroPolicy}
            for name in cfg.eval.baselines:
                if name not in baselines:
                    raise ValueError(f"unknown baseline {name!r}; choose from {sorted(baselines)}")
                policies.append(baselines[name]())
            for policy in policies:
                bar = tqdm(total=len(specs) // batch * setup.decisions + (len(specs) % batch > 0) * setup.decisions,
                           desc=f"{protocol}/{policy.name}", unit="decision", disable=not progress)
                records, videos = [], []
                for first in range(0, len(specs), batch):
                    keep = cfg.eval.videos if (policy.name == "planner" and first == 0) else 0
                    chunk_records, frames = run_episodes(envs, specs[first : first + batch], policy, keep, bar)
                    records += chunk_records
                    videos += frames
                bar.close()
                for record in records:
                    record["protocol"] = protocol
                    if cfg.eval.verify_replay and policy.name == "planner":
                        again = replay(record)
                        record["replay_matches"] = again["final_qpos"] == record["final_qpos"] and again["success"] == record["success"]
                        replay_failures += not record["replay_matches"]
                    records_file.write(json.dumps(record) + "\n")
                for i, frames in enumerate(videos):
                    write_video(out / "videos" / f"{protocol}-{i:02d}.mp4", frames)
                row = {"protocol": protocol, "env": cfg.env.name, "policy": policy.name, **summarize(records)}
                rows.append(row)
                log.log(len(rows), {k: v for k, v in row.items() if not isinstance(v, list)})
    log.close()
    for env in envs:
        env.close()
    summary = {
        "checkpoint": str(checkpoint),
        "env": cfg.env.name,
        "device": str(device),
        "batch": batch,
        "replay_failures": replay_failures if cfg.eval.verify_replay else None,
        "rows": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(rows))
    if cfg.eval.verify_replay:
        print(f"replay in plain dm_control: {replay_failures} of the planner's records differ from their reported outcome")
    print(f"records: {records_path}\nsummary: {out / 'summary.json'}")
    return summary


def run(cfg, out: Path) -> None:
    from world_model.collect import collect
    from world_model.train import pick_device, run_dir, train

    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}; choose one of {', '.join(STAGES)}")
    start = time.perf_counter()
    timings = {}
    if cfg.stage in ("collect", "all") and not cfg.checkpoint:
        path = collect(cfg.env, cfg.data, cfg.cache_root)
        timings["collect_s"] = time.perf_counter() - start
        print(f"dataset: {path}")
        if cfg.stage == "collect":
            return
    if cfg.checkpoint:
        checkpoint = Path(cfg.checkpoint)
    elif cfg.stage in ("train", "all"):
        checkpoint = train(cfg) / "latest"
        timings["train_s"] = time.perf_counter() - start - timings.get("collect_s", 0.0)
        if cfg.stage == "train":
            print(f"world model: {checkpoint}")
            return
    else:
        folder = run_dir(cfg)
        if not (folder / "summary.json").exists():
            raise FileNotFoundError(
                f"no trained world model for this config at {folder}; run stage=train first or pass checkpoint=PATH"
            )
        checkpoint = folder / "latest"
    mark = time.perf_counter()
    critic = critic_for(cfg, checkpoint, pick_device(cfg.device))
    if critic is not None:
        timings["critic_s"] = time.perf_counter() - mark
    summary = evaluate(cfg, checkpoint, out, critic=critic)
    timings["total_s"] = time.perf_counter() - start
    summary["timings"] = timings
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))


def main() -> None:
    import hydra
    from hydra.core.config_store import ConfigStore
    from hydra.core.hydra_config import HydraConfig

    from agent.run_config import RunConfig

    ConfigStore.instance().store(name="run_schema", node=RunConfig)

    @hydra.main(version_base="1.3", config_path="../configs", config_name="run")
    def entry(cfg) -> None:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))

    entry()


if __name__ == "__main__":
    sys.exit(main())
