"""`python -m agent.run env=<name>`: collect agent video, train the world model, evaluate planning.

The one place that builds everything from the config, once, and hands values on: the dataset
folder, the trained model (loaded once), the device (picked once), the critic, the evaluation
envs. Datasets, models and critics are cached by their config under `cache_root`, so a second run
reuses them; everything this run produces goes to its hydra output folder: records.jsonl (one line
per episode), summary.json, results.csv/jsonl and videos/*.mp4 (real | imagined | goal, drawn by a
pixel decoder fitted on the frozen latents and cached like the critic). An evaluation killed part
way continues when run again into the same folder (hydra.run.dir=FOLDER): agent/evaluate.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import envs as envs_pkg
from agent.collect import collect, dataset_dir, env_settings
from agent.configurator import Configurator
from agent.critic import MANIFEST as CRITIC_MANIFEST
from agent.critic import CriticConfig, critic_key, load_critic, save_critic, train_critic
from agent.evaluate import evaluate, model_for_env
from agent.goal_sources import needs
from agent.landmarks import MANIFEST as LANDMARKS_MANIFEST
from agent.landmarks import LandmarkConfig, fit_landmarks, landmarks_key, load_landmarks, save_landmarks
from agent.onpolicy import OnPolicyConfig, play, write_dataset
from agent.prior import MANIFEST as PRIOR_MANIFEST
from agent.prior import PriorConfig, load_prior, prior_key, save_prior, train_prior
from agent.readout import MANIFEST as READOUT_MANIFEST
from agent.readout import ReadoutConfig, load_readout, readout_key, save_readout, train_readout
from agent.run_checks import check_eval_settings, check_frame_size, check_settings
from agent.shared_envs import check_shared_envs, env_data_configs
from world_model.atomic import check_writable
from world_model.cache_key import cache_key
from world_model.cache_lock import building
from world_model.checkpoint import MANIFEST as CHECKPOINT_MANIFEST
from world_model.checkpoint import WEIGHTS as MODEL_WEIGHTS
from world_model.checkpoint import load_with_manifest, read_manifest
from world_model.cli import SettingError
from world_model.dataset import MANIFEST as DATASET_MANIFEST
from world_model.dataset import Dataset, DatasetError, write_json_atomic
from world_model.dataset import read_manifest as read_dataset_manifest
from world_model.decoder import MANIFEST as DECODER_MANIFEST
from world_model.decoder import DecoderConfig, decoder_key, load_decoder, save_decoder, train_decoder
from world_model.ensemble import MANIFEST as ENSEMBLE_MANIFEST
from world_model.ensemble import EnsembleConfig, ensemble_key, load_ensemble, save_ensemble, train_ensemble
from world_model.latents import EpisodeLatents
from world_model.macro import MANIFEST as MACRO_MANIFEST
from world_model.macro import MacroConfig, load_macro, macro_key, save_macro, train_macro
from world_model.plain import plain
from world_model.refit import (
    RefitConfig,
    finetune_refit,
    for_model,
    is_onpolicy,
    is_refit,
    refit_key,
    save_refit,
    train_refit,
)
from world_model.train import pick_device, run_dir, train, use_threads

STAGES = ("collect", "train", "eval", "all")
CRITIC_OFF = "set configurator.<goal kind>.critic_weight=0"


def _fitted_folder(cfg, kind: str, what: str, remedy: str, dataset_root: Path | None, key) -> Path:
    """The cache folder, cache_root/<kind>/<env>-<key>, of something fitted afterwards on the
    latents of the dataset the world model was trained on (`what`, for the error; `remedy`, what
    to do when that dataset is gone). key: dataset folder -> the config's cache key."""
    if dataset_root is None or not (Path(dataset_root) / "manifest.json").exists():
        raise DatasetError(f"{what} is fitted on the dataset the world model was trained on, {dataset_root}, "
                           f"which is not there; collect it again or {remedy}")
    env_name = read_dataset_manifest(dataset_root)["env"]["name"]  # the manifest alone: no shard is opened
    return Path(cfg.cache_root) / kind / f"{env_name}-{key(Path(dataset_root))}"


def _built_fitted(cfg, kind: str, what: str, remedy: str, dataset_root: Path | None, key, manifest: str, fit):
    """(cache_root/<kind>/<env>-<key>, the thing fitted now or None): the folder of something fitted on
    the latents of the dataset the world model was trained on, fitted, saved there and reported in one
    line unless its manifest is there already; processes that need the same one take turns
    (world_model/cache_lock.py). fit: (folder, the verified dataset) -> (the thing, saved there, and the
    line's details); what, remedy: for the errors and the line."""
    folder = _fitted_folder(cfg, kind, what, remedy, dataset_root, key)
    if (folder / manifest).exists():
        return folder, None
    check_writable(folder, what, f"pass cache_root=<a folder you can write to>, or {remedy}")
    dataset = Dataset(dataset_root)  # verified before the lock, so a refused dataset leaves nothing in the cache
    with building(folder, what):  # one process fits it; another waits, then loads what the first saved
        if (folder / manifest).exists():
            return folder, None
        thing, details = fit(folder, dataset)
    print(f"{what.removeprefix('the ')}: {folder} ({details})")
    return folder, thing


def _cached_fitted(cfg, kind: str, what: str, remedy: str, dataset_root: Path | None, key, manifest: str, load,
                   fit, device: torch.device):
    """Something fitted on the latents of the dataset the world model was trained on (_built_fitted),
    on `device`: the one fitted now, or load(folder) of the one cached."""
    folder, thing = _built_fitted(cfg, kind, what, remedy, dataset_root, key, manifest, fit)
    return (load(folder) if thing is None else thing).to(device)


def shared_latents(kept: dict | None, wm, dataset: Dataset, device: torch.device) -> EpisodeLatents:
    """The run's one EpisodeLatents of the training video, made by the first module fitted on it and
    kept in `kept` for the next (None: a fresh one), so the video is encoded once per run."""
    if kept is None:
        return EpisodeLatents(wm, dataset, device)
    if "latents" not in kept:
        kept["latents"] = EpisodeLatents(wm, dataset, device)
    return kept["latents"]


def needed_modules(cfg, env) -> set[str]:
    """The fitted modules ("critic", "landmarks", "macro", "ensemble", "readout", "prior") the evaluated goal kinds' goal sources
    and costs declare they need (agent/goal_sources.py: needs), with the configurator's settings
    for env and the run's planner; the evaluation checks it was handed each of them."""
    configurator = Configurator.of_run(cfg.configurator, env)
    kinds = cfg.eval.goal_kinds or list(env.goal_kinds)
    return set().union(*(needs(configurator.setup(k, cfg.planner.get("name")), cfg.planner) for k in kinds))


@dataclass(frozen=True)
class FittedModule:
    """How one module fitted on the latents of the training video is configured, trained, cached and
    reported (fitted_for)."""

    folder: str
    """cache_root/<folder>/<env>-<key> holds it."""
    what: str
    """Its name in the line that reports it and in errors."""
    remedy: str
    """The setting that does without it, for the error when its dataset is gone."""
    config: type
    """Its settings' dataclass, built from cfg.<name> (configs/<name>)."""
    train: Callable
    """(wm, dataset, config, device, progress, latents) -> (module, stats)."""
    save: Callable
    """(folder, module, stats) -> None."""
    load: Callable
    """folder -> module."""
    key: Callable
    """(weights sha256, dataset folder name, config) -> cache key."""
    manifest: str
    """The file whose presence marks it saved."""
    details: Callable
    """stats -> the details of the line that reports it."""


def _macro_details(stats: dict) -> str:
    errors = ", ".join(f"{e:.3f} (copy-last {c:.3f})" for e, c in zip(stats["held_out_error"], stats["held_out_copy_last"]))
    return f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s, held-out error per macro step {errors}"


def _ensemble_details(stats: dict) -> str:
    errors = ", ".join(f"{e:.4f}" for e in stats["held_out_error"])
    return (f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s, held-out one-step error per member "
            f"{errors} (copy-last {stats['held_out_copy_last']:.4f})")


def _readout_details(stats: dict) -> str:
    held = "; ".join(f"{k} " + ", ".join(f"{g} {v:.3g}" for g, v in stats[k].items())
                     for k in stats if k == "encoded" or k.startswith("predicted_"))
    return f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s; held-out median errors: {held}"


FITTED_MODULES = {
    "critic": FittedModule(
        "critics", "the critic", CRITIC_OFF, CriticConfig, train_critic, save_critic, load_critic, critic_key,
        CRITIC_MANIFEST, lambda stats: (f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s, held-out "
                                        f"step {stats['held_out_step']:.2f}, spread {stats['held_out_spread']:.2f}")),
    "macro": FittedModule(
        "macros", "the level-2 predictor", "choose a flat planner", MacroConfig, train_macro, save_macro, load_macro,
        macro_key, MACRO_MANIFEST, _macro_details),
    "landmarks": FittedModule(
        "landmarks", "the landmark graph", "set configurator.<goal kind>.goal_source=final", LandmarkConfig,
        lambda wm, dataset, lcfg, device, progress, latents: fit_landmarks(wm, dataset, lcfg, device, latents),
        save_landmarks, load_landmarks, landmarks_key, LANDMARKS_MANIFEST,
        lambda stats: (f"{stats['nodes']} frames; encode {stats['encode_s']:.0f} s, build {stats['build_s']:.0f} s; "
                       f"a neighbour is a median {stats['neighbour_decisions_median']:.2f} decisions away")),
    "ensemble": FittedModule(
        "ensembles", "the predictor ensemble", "set configurator.<goal kind>.disagreement_weight=0", EnsembleConfig,
        train_ensemble, save_ensemble, load_ensemble, ensemble_key, ENSEMBLE_MANIFEST, _ensemble_details),
    "readout": FittedModule(
        "readouts", "the probe readout", "set configurator.<goal kind>.readout_weight=0", ReadoutConfig, train_readout,
        save_readout, load_readout, readout_key, READOUT_MANIFEST, _readout_details),
    "prior": FittedModule(
        "priors", "the action prior", "set configurator.<goal kind>.warm_start=shifted", PriorConfig, train_prior,
        save_prior, load_prior, prior_key, PRIOR_MANIFEST,
        lambda stats: (f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s; held-out action error "
                       f"{stats['error']:.3f} (the video's mean action: {stats['mean_action_error']:.3f})")),
}
"""The modules a goal kind's source or cost may need (agent/goal_sources.py: needs), by name: the
critic, the level-2 predictor of a hierarchical planner, the landmark graph, the predictor ensemble,
the probe readout and the action prior."""


def fitted_for(name: str, cfg, wm, weights: str, dataset_root: Path | None, device: torch.device,
               progress: bool = True, kept: dict | None = None):
    """FITTED_MODULES[name] for this world model (`weights`: the sha256 of the weights `wm` was loaded
    from, as its checkpoint's manifest records it; every fitted module is keyed by it), fitted once on
    the dataset the model was trained on, on the run's one encoding of it (`kept`), and cached."""
    spec = FITTED_MODULES[name]
    mcfg = spec.config(**plain(cfg[name]))

    def fit(folder: Path, dataset: Dataset):
        module, stats = spec.train(wm, dataset, mcfg, device, progress, shared_latents(kept, wm, dataset, device))
        spec.save(folder, module, stats)
        return module, spec.details(stats)

    return _cached_fitted(cfg, spec.folder, spec.what, spec.remedy, dataset_root,
                          lambda root: spec.key(weights, root.name, mcfg), spec.manifest, spec.load, fit, device)


def decoder_for(cfg, wm, weights: str, dataset_root: Path | None, device: torch.device, progress: bool = True,
                kept: dict | None = None):
    """The pixel decoder for the videos' imagined panel, fitted once on the dataset the world
    model was trained on and cached under cache_root/decoders; None when no video is written."""
    if cfg.eval.videos == 0:
        return None
    dcfg = DecoderConfig(**plain(cfg.decoder))

    def fit(folder: Path, dataset: Dataset):
        decoder, stats = train_decoder(wm, dataset, dcfg, device, progress,
                                       shared_latents(kept, wm, dataset, device))
        save_decoder(folder, decoder, stats, weights)
        per_step = ", ".join(f"{m:.4f}" for m in stats["prediction_mse"])
        copy = ", ".join(f"{m:.4f}" for m in stats["copy_last_mse"])
        return decoder, (f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s; held-out reconstruction "
                         f"MSE {stats['held_out_mse']:.4f} on [0, 1] pixels, PSNR {stats['held_out_psnr']:.1f} dB; "
                         f"decoded world-model rollout of the recorded actions, MSE per decision {per_step} "
                         f"(copy-last {copy})")

    return _cached_fitted(cfg, "decoders", "the videos' decoder", "set eval.videos=0", dataset_root,
                          lambda root: decoder_key(weights, root.name, dcfg), DECODER_MANIFEST, load_decoder, fit,
                          device)


def refit_for(cfg, wm, manifest: dict, checkpoint: Path, dataset_root: Path | None, device: torch.device,
              progress: bool = True, kept: dict | None = None) -> Path:
    """The checkpoint folder of this world model with its predictor refitted on its frozen latents
    (world_model/refit.py), fitted once on the dataset the model was trained on and cached under
    cache_root/refits; `checkpoint` itself when cfg.refit.steps is 0 or it is a refit already. The
    encoder is the model's, so the latents the refit encodes are kept for the modules fitted after it."""
    rcfg = for_model(RefitConfig(**plain(cfg.refit)), wm.cfg)  # the key names the shape it fits
    if rcfg.steps == 0 or is_refit(manifest):
        return checkpoint
    if manifest["model_config"].get("envs") is not None:
        raise SettingError(f"refit.steps={rcfg.steps} refits a single-env model's predictor and {checkpoint} is a "
                           "shared model; pass refit.steps=0")
    weights = manifest["files"][MODEL_WEIGHTS]["sha256"]

    def fit(folder: Path, dataset: Dataset):
        model, stats = train_refit(wm, dataset, rcfg, device, progress, shared_latents(kept, wm, dataset, device))
        save_refit(folder, model, manifest, rcfg, stats)
        return model, (f"encode {stats['encode_s']:.0f} s, train {stats['train_s']:.0f} s, held-out error "
                       f"{rcfg.rollout} steps ahead {stats['held_out_error'][-1]:.4f}, the model's own "
                       f"{stats['held_out_error_before'][-1]:.4f}")

    return _built_fitted(cfg, "refits", "the refitted predictor", "pass refit.steps=0", dataset_root,
                         lambda root: refit_key(weights, root.name, rcfg), CHECKPOINT_MANIFEST, fit)[0]


def onpolicy_for(cfg, wm, manifest: dict, checkpoint: Path, dataset_root: Path | None, device: torch.device,
                 env, progress: bool = True, kept: dict | None = None) -> Path:
    """The checkpoint folder of this refitted model with its predictor trained on further, on episodes
    the planner played with it (agent/onpolicy.py); both the episodes (cache_root/onpolicy) and the
    model (cache_root/refits) are made once and cached. `checkpoint` itself when cfg.onpolicy.episodes
    is 0 or it was trained so already. env: one env of the run (plays the first of the batch)."""
    ocfg = OnPolicyConfig(**plain(cfg.onpolicy))
    if ocfg.episodes == 0 or is_onpolicy(manifest):
        return checkpoint
    if not is_refit(manifest):
        raise SettingError(f"onpolicy.episodes={ocfg.episodes} trains a refitted predictor further and {checkpoint} "
                           "holds none; set refit.steps (configs/schedule) or onpolicy.episodes=0")
    goal_kind = ocfg.goal_kind or env.default_goal_kind
    if goal_kind not in env.goal_kinds:
        raise SettingError(f"onpolicy.goal_kind={goal_kind!r}: {env.name} offers {', '.join(env.goal_kinds)}")
    weights = manifest["files"][MODEL_WEIGHTS]["sha256"]
    wm = model_for_env(wm, env, checkpoint, manifest)
    settings = env_settings(cfg.env)
    setup = Configurator.of_run(cfg.configurator, env).setup(goal_kind, cfg.planner.get("name"))
    needed = needs(setup, cfg.planner)
    identity = {"weights": weights, "onpolicy": {"episodes": ocfg.episodes, "goal_kind": goal_kind, "seed": ocfg.seed},
                "env": settings, "planner": plain(cfg.planner), "configurator": plain(cfg.configurator),
                "batch": min(cfg.eval.batch, ocfg.episodes), **{name: plain(cfg[name]) for name in sorted(needed)}}

    def played(folder: Path, dataset: Dataset):
        modules = fitted_modules(cfg, wm, weights, dataset_root, device, needed, kept)
        mark = time.perf_counter()
        batch = [env] + [envs_pkg.make(**settings) for _ in range(identity["batch"] - 1)]
        try:
            records = play(cfg, wm, batch, modules, goal_kind, setup, ocfg, device, progress)
        finally:
            for other in batch[1:]:
                other.close()
        write_dataset(folder, settings, env, records, identity, ocfg.episodes_per_shard)
        rate = sum(r["success"] for r in records) / len(records)
        return None, (f"{len(records)} episodes of {goal_kind}, {rate:.0%} reached their goal; played and written in "
                      f"{time.perf_counter() - mark:.0f} s")

    remedy = "pass onpolicy.episodes=0"
    onpolicy = _built_fitted(cfg, "onpolicy", "the planner's own episodes", remedy, dataset_root,
                             lambda root: cache_key({"dataset": root.name, **identity}), DATASET_MANIFEST, played)[0]
    rcfg = RefitConfig(**{**plain(cfg.refit), "steps": ocfg.steps, "lr": ocfg.lr, "warmup_steps": ocfg.warmup_steps,
                          "width": wm.cfg.predictor_width, "depth": wm.cfg.predictor_depth,
                          "heads": wm.cfg.predictor_heads})

    def tuned(folder: Path, dataset: Dataset):
        episodes = Dataset(onpolicy)
        model, stats = finetune_refit(wm, dataset, episodes, rcfg, ocfg.fraction, device, progress,
                                      shared_latents(kept, wm, dataset, device))
        save_refit(folder, model, manifest, rcfg, stats, onpolicy={"episodes": str(onpolicy), "fraction": ocfg.fraction,
                                                                    "success": episodes.manifest["collect"]["behaviour"]["success"]})
        return model, (f"train {stats['train_s']:.0f} s, held-out error {rcfg.rollout} steps ahead on the video "
                       f"{stats['held_out_error_before'][-1]:.4f} -> {stats['held_out_error'][-1]:.4f}, on the planner's "
                       f"own {stats['onpolicy_held_out_error_before'][-1]:.4f} -> {stats['onpolicy_held_out_error'][-1]:.4f}")

    return _built_fitted(cfg, "refits", "the refit trained on the planner's own episodes", remedy, dataset_root,
                         lambda root: cache_key({"of": weights, "dataset": root.name, "episodes": onpolicy.name,
                                              "refit": rcfg.__dict__, "fraction": ocfg.fraction}),
                         CHECKPOINT_MANIFEST, tuned)[0]


def fitted_modules(cfg, wm, weights: str, dataset_root: Path | None, device: torch.device, needed: set[str],
                   kept: dict | None = None, timings: dict | None = None) -> dict:
    """The fitted modules named in `needed` for this world model (`weights`: its sha256), each fitted
    once and cached (fitted_for), by name; their wall times go into `timings` when given."""
    fitted = {}
    for name in FITTED_MODULES:
        if name in needed:  # fitted or loaded only where a goal source or cost declares it
            mark = time.perf_counter()
            fitted[name] = fitted_for(name, cfg, wm, weights, dataset_root, device, kept=kept)
            if timings is not None:
                timings[f"{name}_s"] = time.perf_counter() - mark
    return fitted


def recorded_dataset(manifest: dict, env_name: str) -> Path | None:
    """The dataset a checkpoint (its manifest) was trained on, which the fitted modules are fitted on;
    for a shared model, the dataset of env `env_name` (train_config.dataset lists one per env, in the
    order of model_config.envs). None when the manifest does not say, or names no dataset of that env
    (model_for_env then refuses the env)."""
    recorded = (manifest.get("train_config") or {}).get("dataset")
    if isinstance(recorded, list):  # a shared model's datasets
        envs = manifest["model_config"].get("envs") or []
        return Path(recorded[envs.index(env_name)]) if env_name in envs and len(recorded) == len(envs) else None
    return Path(recorded) if recorded else None


def _trained_model(cfg, timings: dict, start: float) -> tuple[Path, Path | None]:
    """(checkpoint folder, dataset folder) for this config, collecting and training as the stage
    asks; (None, None) once a collect or train stage is done."""
    if cfg.checkpoint:
        checkpoint = Path(cfg.checkpoint)
        return checkpoint, recorded_dataset(read_manifest(checkpoint), cfg.env["name"])
    # one (env node, data node) per env the model is trained on: env alone, or a shared model's envs
    videos = env_data_configs(cfg) if cfg.envs else [(cfg.env, cfg.data)]
    own = [env_settings(env)["name"] for env, _ in videos].index(cfg.env["name"])
    if cfg.stage == "eval":
        roots = [dataset_dir(env, data, cfg.cache_root) for env, data in videos]
        folder = run_dir(cfg, roots)  # a list of one dataset names the single-env model's folder
        if not (folder / "summary.json").exists():
            raise FileNotFoundError(
                f"no trained world model for this config at {folder}; run stage=train first or pass checkpoint=PATH"
            )
        return folder / "latest", roots[own]
    roots = [collect(env, data, cfg.cache_root) for env, data in videos]
    timings["collect_s"] = time.perf_counter() - start
    print(f"dataset{'s' if cfg.envs else ''}: {', '.join(map(str, roots))}")
    if cfg.stage == "collect":
        return None, None
    checkpoint = train(cfg, roots) / "latest"  # a list of one trains as a single dataset does
    timings["train_s"] = time.perf_counter() - start - timings["collect_s"]
    if cfg.stage == "train":
        print(f"world model: {checkpoint}")
        return None, None
    return checkpoint, roots[own]


def run(cfg, out: Path) -> None:
    if cfg.stage not in STAGES:
        raise SettingError(f"stage={cfg.stage!r}: choose one of {', '.join(STAGES)}")
    use_threads(cfg.threads)  # once, for everything this process trains and fits: their bytes depend on it
    check_settings(cfg)  # every typed setting now, not after collecting and training
    check_shared_envs(cfg)
    start, timings = time.perf_counter(), {}
    settings = env_settings(cfg.env)
    check_frame_size(cfg)  # before an env allocates frames of that size
    probe_env = envs_pkg.make(**settings)  # fails fast on a bad env name or setting
    needed = set()
    try:
        if cfg.stage in ("eval", "all"):
            check_eval_settings(cfg, probe_env)
            needed = needed_modules(cfg, probe_env)  # also refuses a bad goal source or planner block now
        checkpoint, dataset_root = _trained_model(cfg, timings, start)
    except BaseException:
        probe_env.close()
        raise
    if checkpoint is None:
        probe_env.close()
        return
    device = pick_device(cfg.device)
    wm, manifest = load_with_manifest(checkpoint)
    wm = wm.to(device)
    kept = {}  # the training video's latents, encoded once for the refit and every module fitted below
    mark = time.perf_counter()
    refitted = refit_for(cfg, wm, manifest, checkpoint, dataset_root, device, kept=kept)
    if refitted != checkpoint:
        checkpoint = refitted
        wm, manifest = load_with_manifest(checkpoint)
        wm = wm.to(device)
        timings["refit_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    tuned = onpolicy_for(cfg, wm, manifest, checkpoint, dataset_root, device, probe_env, kept=kept)
    if tuned != checkpoint:
        checkpoint = tuned
        wm, manifest = load_with_manifest(checkpoint)
        wm = wm.to(device)
        timings["onpolicy_s"] = time.perf_counter() - mark
    wm = model_for_env(wm, probe_env, checkpoint, manifest)  # a shared model: its view in this env's own actions
    # every fitted module is keyed by the weights loaded here, read once: a training process may save
    # a newer checkpoint into the same folder meanwhile
    weights = manifest["files"][MODEL_WEIGHTS]["sha256"]
    fitted = fitted_modules(cfg, wm, weights, dataset_root, device, needed, kept, timings)
    mark = time.perf_counter()
    decoder = decoder_for(cfg, wm, weights, dataset_root, device, kept=kept)
    kept.clear()  # the latents are not needed while evaluating
    if decoder is not None:
        timings["decoder_s"] = time.perf_counter() - mark
    envs = [probe_env] + [envs_pkg.make(**settings) for _ in range(min(cfg.eval.batch, cfg.eval.episodes) - 1)]
    try:
        summary = evaluate(cfg, wm, envs, device, out, checkpoint, decoder=decoder, **fitted)
    finally:
        for env in envs:
            env.close()
    timings["total_s"] = time.perf_counter() - start
    summary.update(checkpoint=str(checkpoint), dataset=str(dataset_root), timings=timings)
    write_json_atomic(out / "summary.json", summary)
    print("wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))


def main() -> None:
    import hydra
    from hydra.core.config_store import ConfigStore
    from hydra.core.hydra_config import HydraConfig

    from agent.eval_folder import EvaluationFolderError
    from agent.hydra_folder import restore
    from agent.run_config import RunConfig
    from world_model.checkpoint import CheckpointError
    from world_model.cli import one_line_errors
    from world_model.train import TrainingDiverged, TrainingStopped

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # N copies would collect, train and evaluate into the same folders
        raise SystemExit(
            "error: agent.run runs as one process, not under torchrun; train across processes with "
            "`torchrun --nproc_per_node N -m world_model.train dataset=PATH`, then `python -m agent.run "
            "stage=eval checkpoint=<run folder>/latest`"
        )

    @hydra.main(version_base="1.3", config_path="../configs", config_name="run")
    def entry(cfg) -> None:
        out = Path(HydraConfig.get().runtime.output_dir)
        try:
            with one_line_errors(DatasetError, CheckpointError, TrainingDiverged, TrainingStopped,
                                 EvaluationFolderError):
                run(cfg, out)
        except BaseException:
            # a refused folder (another evaluation's) keeps the .hydra files that say how its records were made
            try:
                restore(out, HydraConfig.get().job.name)
            except OSError as err:  # the run's own error, raised below, is the one to report
                print(f"notice: the .hydra files of {out} could not be put back ({err})", file=sys.stderr)
            raise

    entry()


if __name__ == "__main__":
    sys.exit(main())
