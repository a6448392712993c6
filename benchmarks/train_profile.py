"""Where the CPU time of a world-model training step goes: by part of the step (data, encoder stem
stages, encoder transformer blocks, encoder head, predictor, loss terms, backward, optimizer) and
by torch operator.

    PYTHONPATH=. python benchmarks/train_profile.py --env reacher [--dataset PATH] [--steps 20] \\
        [--warmup 3] [--ops-steps 5] [OVERRIDES ...]

The run config is composed as `python -m agent.run env=NAME OVERRIDES` composes it (the env's
world model, loss, optimizer and batch size; `--env NAME` is the override env=NAME, and without it
the env is the dataset's). The dataset is --dataset, else the env's default dataset folder under
cache_root (collect it with `python -m agent.run env=NAME stage=collect`). The steps are the ones
world_model/train.py's loop runs on one CPU process, built by the same functions: the model of the
config with the dataset's frame and action sizes, JEPALoss, AdamW with its schedule, batches drawn
by WindowSampler from the torch RNG seeded with the config's seed. Not run: the monitors, logging
and checkpoints, which train() runs every log_every / monitor_every / checkpoint_every steps.

How each part is measured (time.perf_counter; on the CPU every operator has finished when it
returns). A part's time is its self time: its wall time less that of the parts inside it, so the
parts add up to the step's wall time less the Python between them ("unattributed"):
  - around a statement of the step: data.sample, data.to_device, step.checks, backward and the
    optimizer.* parts;
  - forward pre/post hooks on modules (nn.Module.register_forward_pre_hook / register_forward_hook,
    from outside world_model/): every encoder stem stage, the encoder blocks' attention and MLP
    (encoder.block.rest: the blocks less those), the encoder itself (encoder.head: the encoder less
    its other parts), the target encoder, the predictor (teacher-forced), the inverse-dynamics head,
    the probe head (with the probe term, loss.probe_weight > 0), the loss module
    (loss.prediction_and_rest: JEPALoss.forward less its other parts);
  - wrappers put on the model instance (WorldModel.rollout) and on world_model.losses' functions
    (vicreg_variance, vicreg_covariance, barlow_twins, motion_spread) while the steps run;
  - data.frames_to_float runs inside Encoder.tokens: from the encoder's pre-hook to the stem's
    pre-hook (input checks, uint8 [B, L, H, W, 3] -> float [B*L, 3, H, W] in [-0.5, 0.5]).
The operator table and the backward column come from --ops-steps more steps under torch.profiler,
with the parts opened as record_function ranges (left out of the operator table). Self CPU time is
the calling thread's wall time inside an operator less its child operators (intra-op threads
included); Python between operators is in no row. The backward column splits the timed backward
part over the forward parts in the shares of the profiled backward passes: each backward node's
time (its evaluate_function event, children included) goes to the part whose forward operator made
the node (matched by autograd sequence number); AccumulateGrad nodes and the engine's own time are
rows of their own.
What this does not capture: a part's time includes its own Python and the hooks' overhead (a few
microseconds per hooked call, about 20 calls a step); the profiler's overhead (a few percent) makes
the profiled steps slower than the timed ones, which is why only their shares are used; with
--ops-steps small the backward shares are those of few steps. Data loading reads memory-mapped
shards, which Dataset() has just read through (it checks their sha256), so they come from the page
cache when memory holds the dataset, as in a training run after its first pass.

Prints one JSON line (seconds per step: the mean over --steps steps after --warmup untimed ones),
then the same as tables.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from profile_ops import ops_table, top_ops  # benchmarks/profile_ops.py, beside this script

from world_model import losses
from world_model.dataset import Dataset, read_manifest
from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel
from world_model.plain import plain
from world_model.probe import probe_stats
from world_model.train import _optimizer, model_config, use_threads, warmup_cosine
from world_model.windows import WindowSampler, split_episodes

GROUPS = ("data", "encoder", "target_encoder", "predictor", "loss", "step", "backward", "optimizer")
FORWARD = ("encoder", "target_encoder", "predictor", "loss")  # the groups inside loss_fn(model, frames, actions)


class Regions:
    """Wall time of named regions of a step, which may nest. A region's self time is its time less
    that of the regions inside it, so every second inside some region is counted once.
    annotate=True also opens a torch.profiler record_function of the region's name."""

    def __init__(self, annotate: bool = False):
        self.annotate = annotate
        self.stack: list[list] = []  # open regions: [name, start, seconds of the regions inside, record_function]
        self.self_s: dict[str, float] = defaultdict(float)

    def enter(self, name: str) -> None:
        mark = torch.autograd.profiler.record_function(name).__enter__() if self.annotate else None
        self.stack.append([name, time.perf_counter(), 0.0, mark])

    def exit(self, name: str) -> None:
        now = time.perf_counter()
        top, start, inner, mark = self.stack.pop()
        if top != name:
            raise RuntimeError(f"region {name} ended while {top} was open: the hooks fired out of order")
        if mark is not None:
            mark.__exit__(None, None, None)
        self.self_s[name] += now - start - inner
        if self.stack:
            self.stack[-1][2] += now - start

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.enter(name)
        yield
        self.exit(name)


def timed(regions: Regions, name: str, fn: Callable) -> Callable:
    """fn, timed as the region `name`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        regions.enter(name)
        out = fn(*args, **kwargs)
        regions.exit(name)
        return out

    return wrapper


@dataclass
class Setup:
    """What train() builds before its loop, on the CPU."""

    cfg: object  # the composed run config
    dataset: Dataset
    sampler: WindowSampler
    model: WorldModel
    loss_fn: JEPALoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    params: list[torch.nn.Parameter]


def build(cfg, root: Path) -> Setup:
    """The model, loss, optimizer, schedule and clip sampler as world_model/train.py's _train builds them."""
    ds = Dataset(root)
    model_cfg = model_config(cfg.world_model, ds)
    loss_cfg = LossConfig(**plain(cfg.loss))
    train_eps, _ = split_episodes(ds.num_episodes, cfg.held_out_fraction)
    labelled = loss_cfg.probe_weight > 0  # the probe term (e.g. the reacher's and Push-T's schedules) reads labels
    sampler = WindowSampler(ds, train_eps, model_cfg.history + loss_cfg.rollout_steps, probe=labelled)
    torch.manual_seed(cfg.seed)
    model = WorldModel(model_cfg)
    loss_fn = JEPALoss(loss_cfg, model, probe_stats(ds, train_eps) if labelled else None)
    optimizer = _optimizer(cfg.optim, [model, loss_fn])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio, cfg.optim.decay_fraction)
    )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    return Setup(cfg, ds, sampler, model, loss_fn, optimizer, scheduler, params)


def train_step(s: Setup, regions: Regions) -> None:
    """One step of train()'s loop on one CPU process (no autocast there: it is CUDA's only)."""
    with regions("data.sample"):
        batch = s.sampler.sample(s.cfg.optim.batch_size)  # frames uint8 [B, L, H, W, 3], actions [B, L-1, A]
    with regions("data.to_device"):
        frames = batch["frames"].to("cpu", non_blocking=True)
        actions = batch["actions"].to("cpu", non_blocking=True).float()
        probe = batch["probe"].to("cpu", non_blocking=True) if "probe" in batch else None  # [B, L, K]
    out = s.loss_fn(s.model, frames, actions, probe=probe)  # hooked: every forward part
    loss = out["loss"]
    with regions("step.checks"):
        if not torch.isfinite(out["loss"]):
            raise RuntimeError(f"the loss became {out['loss'].item()}; profile a config that trains")
    with regions("optimizer.zero_grad"):
        s.optimizer.zero_grad(set_to_none=True)
    with regions("backward"):
        loss.backward()
    with regions("optimizer.clip_grad_norm"):
        grad_norm = torch.nn.utils.clip_grad_norm_(s.params, s.cfg.optim.grad_clip)
        if not torch.isfinite(grad_norm):
            raise RuntimeError(f"the gradient norm became {grad_norm.item()}; profile a config that trains")
    with regions("optimizer.step"):
        s.optimizer.step()
        s.scheduler.step()
    if s.loss_fn.target_encoder is None:
        s.loss_fn.update_target(s.model)  # a no-op without loss.ema_target: no part of its own
    else:
        with regions("optimizer.ema_update"):
            s.loss_fn.update_target(s.model)


def instrument(s: Setup, regions: Regions) -> Callable[[], None]:
    """Times the forward parts into `regions` with hooks and wrappers; returns what removes them."""
    handles, undo = [], []

    def hook(module: torch.nn.Module, name: str) -> None:
        handles.append(module.register_forward_pre_hook(lambda _m, _args: regions.enter(name)))
        handles.append(module.register_forward_hook(lambda _m, _args, _out: regions.exit(name)))

    enc = s.model.encoder
    hook(enc, "encoder.head")  # self time: position add, final norm, pool, head, reshapes
    # pre-hooks run in the order they were registered: this region opens inside encoder.head
    handles.append(enc.register_forward_pre_hook(lambda _m, _args: regions.enter("data.frames_to_float")))
    handles.append(enc.stem.register_forward_pre_hook(lambda _m, _args: regions.exit("data.frames_to_float")))
    for i, stage in enumerate(enc.stem):
        hook(stage, f"encoder.stem[{i}]")
    for block in enc.blocks:
        hook(block, "encoder.block.rest")
        hook(block.attn, "encoder.block.attention")
        hook(block.mlp, "encoder.block.mlp")
    if s.loss_fn.target_encoder is not None:
        hook(s.loss_fn.target_encoder, "target_encoder")
    hook(s.model.predictor, "predictor.teacher_forced")
    s.model.rollout = timed(regions, "predictor.rollout", s.model.rollout)  # an instance attribute over the method
    undo.append(lambda: delattr(s.model, "rollout"))
    for fn, name in (("vicreg_variance", "loss.vicreg_variance"), ("vicreg_covariance", "loss.vicreg_covariance"),
                     ("barlow_twins", "loss.barlow"), ("motion_spread", "loss.motion")):
        undo.append(functools.partial(setattr, losses, fn, getattr(losses, fn)))
        setattr(losses, fn, timed(regions, name, getattr(losses, fn)))  # JEPALoss.forward looks them up per call
    if s.loss_fn.inverse_dynamics is not None:
        hook(s.loss_fn.inverse_dynamics, "loss.inverse_dynamics_head")
    if s.loss_fn.probe_head is not None:
        hook(s.loss_fn.probe_head, "loss.probe_head")
    hook(s.loss_fn, "loss.prediction_and_rest")

    def remove() -> None:
        for h in handles:
            h.remove()
        for u in undo:
            u()

    return remove


def parts(s: Setup) -> list[tuple[str, str]]:
    """(part, what it is, with its shapes) of every part a step of this setup has, in step order."""
    m, lc, b = s.model.cfg, s.loss_fn.cfg, s.cfg.optim.batch_size
    k, r = m.history, lc.rollout_steps
    length, h, a, d, w = k + r, m.image_size, m.action_dim, m.latent_dim, m.encoder_width
    n = b * length  # frames through the encoder
    out = [
        ("data.sample", f"WindowSampler.sample: {b} clips from the memory-mapped shards, stacked: "
                        f"frames uint8 [{b}, {length}, {h}, {h}, 3], actions [{b}, {length - 1}, {a}]"),
        ("data.to_device", "batch .to(cpu) (no copy) and actions .float()"),
        ("data.frames_to_float", f"in Encoder.tokens: input checks, uint8 [{b}, {length}, {h}, {h}, 3] -> "
                                 f"float [{n}, 3, {h}, {h}] in [-0.5, 0.5]"),
    ]
    size = h
    for i, stage in enumerate(s.model.encoder.stem):
        conv = stage.down[0]
        c_in, c_out, stride = conv.in_channels, conv.out_channels, conv.stride[0]
        out.append((f"encoder.stem[{i}]", f"conv {conv.kernel_size[0]}x{conv.kernel_size[0]} stride {stride} + "
                    f"residual conv 3x3, GroupNorm, GELU: [{n}, {c_in}, {size}, {size}] -> "
                    f"[{n}, {c_out}, {size // stride}, {size // stride}]"))
        size //= stride
    depth = len(s.model.encoder.blocks)
    out += [
        ("encoder.block.attention", f"{depth} block(s): qkv, attention over 64 tokens, out; [{n}, 64, {w}]"),
        ("encoder.block.mlp", f"{depth} block(s): {w} -> {4 * w} -> {w} GELU MLP per token; [{n}, 64, {w}]"),
        ("encoder.block.rest", f"{depth} block(s): 2 LayerNorms and 2 residual adds; [{n}, 64, {w}]"),
        ("encoder.head", f"position add, final LayerNorm, {m.representation} head: [{n}, 64, {w}] -> "
                         f"z [{b}, {length}, {d}]"),
    ]
    if s.loss_fn.target_encoder is not None:
        out.append(("target_encoder", f"EMA encoder, no grad: frames -> [{b}, {length}, {d}]"))
    out += [
        ("predictor.teacher_forced", f"every window of {k} latents: [{b * (length - k)}, {k}, {d}] -> same"),
        ("predictor.rollout", f"WorldModel.rollout, {r} steps fed back: [{b}, {k}, {d}] -> [{b}, {r}, {d}]"),
    ]
    if lc.regularizer == "vicreg":
        out += [("loss.vicreg_variance", f"per-dimension std hinge over [{n}, {d}]"),
                ("loss.vicreg_covariance", f"covariance [{d}, {d}] of [{n}, {d}], off-diagonal squares")]
    else:
        out.append(("loss.barlow", f"cross-correlation [{d}, {d}] of predicted vs target latents"))
    out.append(("loss.motion", f"std hinge of z_(t+1) - z_t over [{b * (length - 1)}, {d}]"))
    if s.loss_fn.inverse_dynamics is not None:
        out.append(("loss.inverse_dynamics_head", f"MLP [{b}, {length - 2}, {3 * d}] -> "
                    f"{lc.inverse_dynamics_hidden} -> {lc.inverse_dynamics_hidden} -> [{b}, {length - 2}, {a}]"))
    if s.loss_fn.probe_head is not None:
        out.append(("loss.probe_head", f"linear probe of every latent and of the rollout: [{b}, {length}, {d}] -> "
                    f"[{b}, {length}, {s.loss_fn.probe_head.out_features}] (the probe term)"))
    out += [
        ("loss.prediction_and_rest", "JEPALoss.forward's own: input checks, window unfolds, prediction and rollout "
                                     "MSE, smoothness, inverse-dynamics triples and MSE, weighted sum"),
        ("step.checks", "isfinite(loss)"),
        ("optimizer.zero_grad", "set_to_none"),
        ("backward", "loss.backward(): every gradient (split by operator below)"),
        ("optimizer.clip_grad_norm", "global gradient norm, clip, isfinite"),
        ("optimizer.step", "AdamW step (decay and no-decay groups) + LambdaLR step"),
    ]
    if s.loss_fn.target_encoder is not None:
        out.append(("optimizer.ema_update", "EMA of the target encoder toward the encoder"))
    return out


EVALUATE = "autograd::engine::evaluate_function: "  # the profiler's event around one backward node


def backward_by_part(events, forward_parts: set[str]) -> tuple[dict[str, float], float]:
    """The profiled backward passes' time by the forward part whose operator made each autograd node.

    A forward operator that records an autograd node carries the node's sequence number, and so does
    the node's evaluate_function event in backward; the part is the innermost annotated region around
    the forward operator (the last operator of that number, which is the one that made the node).
    Returns ({part or "backward.accumulate_grad" / "backward.unmapped": seconds}, seconds inside the
    "backward" regions), summed over the profiled steps; what the nodes leave of the backward regions
    is the engine's own work (ones_like of the loss, scheduling, summing gradients of shared inputs).
    """
    names = forward_parts | {"backward"}

    def region(e) -> str | None:
        p = e.cpu_parent
        while p is not None and p.name not in names:
            p = p.cpu_parent
        return p.name if p is not None else None

    creator = {}  # sequence number -> (start, forward part) of the last forward operator carrying it
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith(EVALUATE):
            part = region(e)
            if part in forward_parts and e.time_range.start >= creator.get(e.sequence_nr, (-1, None))[0]:
                creator[e.sequence_nr] = (e.time_range.start, part)
    out: dict[str, float] = defaultdict(float)
    total = sum(e.cpu_time_total for e in events if e.name == "backward") / 1e6
    for e in events:
        if e.name.startswith(EVALUATE):
            if "AccumulateGrad" in e.name:
                part = "backward.accumulate_grad"
            else:
                part = creator.get(e.sequence_nr, (None, "backward.unmapped"))[1]
            out[part] += e.cpu_time_total / 1e6
    return dict(out), total


def compose(args) -> tuple[object, Path]:
    """(run config, dataset folder) from the command line."""
    from agent.collect import dataset_dir
    from agent.grid import compose_cell

    overrides = list(args.overrides)
    env = args.env
    if env is None and not any(o.startswith("env=") for o in overrides) and args.dataset:
        env = read_manifest(Path(args.dataset))["env"]["name"]
    if env is not None:
        overrides.insert(0, f"env={env}")
    cfg = compose_cell(overrides)
    root = Path(args.dataset) if args.dataset else dataset_dir(cfg.env, cfg.data, cfg.cache_root)
    if not (root / "manifest.json").exists():
        raise SystemExit(f"error: no dataset at {root}; pass --dataset PATH, or collect the env's default one with "
                         f"`python -m agent.run env={cfg.env.name} stage=collect cache_root={cfg.cache_root}`")
    held = read_manifest(root)["env"]["name"]
    if held != cfg.env.name:
        raise SystemExit(f"error: the dataset at {root} holds {held} frames but the config's env is {cfg.env.name}; "
                         f"pass --env {held} or a {cfg.env.name} dataset")
    if cfg.compile:
        raise SystemExit("error: compile=true fuses the modules the hooks time; profile the eager step")
    if cfg.device not in ("auto", "cpu"):
        raise SystemExit(f"error: device={cfg.device}: this profile times the CPU step (perf_counter on a "
                         "synchronous device); leave device unset")
    return cfg, root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="dataset folder (default: the env's default one under cache_root)")
    parser.add_argument("--env", help="env name (configs/env/<name>.yaml); default: the dataset's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--ops-steps", type=int, default=5,
                        help="steps under torch.profiler after the timed ones (0: no operator table, no backward split)")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of the run config (optim.batch_size=32, ...)")
    args = parser.parse_intermixed_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.ops_steps < 0:
        raise SystemExit("error: --steps must be at least 1, --warmup and --ops-steps at least 0")
    cfg, root = compose(args)
    use_threads(cfg.threads)  # as agent.run: 0 keeps torch's default (OMP_NUM_THREADS, else the cores)
    s = build(cfg, root)
    named = dict(parts(s))
    regions = Regions()
    remove = instrument(s, regions)
    try:
        for _ in range(args.warmup):
            train_step(s, regions)
        regions.self_s.clear()
        walls = []
        for _ in range(args.steps):
            start = time.perf_counter()
            train_step(s, regions)
            walls.append(time.perf_counter() - start)
    finally:
        remove()
    missing = [name for name in named if name not in regions.self_s]
    extra = sorted(set(regions.self_s) - set(named))
    if missing or extra:
        raise RuntimeError(f"parts not timed: {missing}; timed but not listed: {extra}")
    step_s = sum(walls) / len(walls)
    parts_s = {name: regions.self_s[name] / args.steps for name in named}
    present = {k.split(".")[0] for k in parts_s}
    groups = {g: sum(v for k, v in parts_s.items() if k.split(".")[0] == g) for g in GROUPS if g in present}
    ops, ops_total, backward_s = [], 0.0, {}
    if args.ops_steps:
        marks = Regions(annotate=True)  # the parts as record_function ranges, for the backward split
        remove = instrument(s, marks)
        try:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(args.ops_steps):
                    train_step(s, marks)
        finally:
            remove()
        ops, ops_total = top_ops(prof, 15, per=args.ops_steps, skip=set(named))
        forward = {k for k in named if k.split(".")[0] in FORWARD or k == "data.frames_to_float"}
        by_part, profiled = backward_by_part(prof.events(), forward)
        # shares of the profiled backward passes, applied to the timed backward
        scale = parts_s["backward"] / profiled if profiled else 0.0
        backward_s = {k: by_part[k] * scale for k in [*named, "backward.accumulate_grad", "backward.unmapped"]
                      if k in by_part}
        backward_s["backward.engine_and_rest"] = parts_s["backward"] - sum(backward_s.values())
    m = s.model.cfg
    record = {
        "benchmark": "train_profile", "env": cfg.env.name, "dataset": str(root), "image_size": m.image_size,
        "representation": m.representation, "latent_dim": m.latent_dim, "batch_size": cfg.optim.batch_size,
        "clip_frames": s.sampler.length, "regularizer": s.loss_fn.cfg.regularizer,
        "ema_target": s.loss_fn.cfg.ema_target, "parameters_m": round(sum(p.numel() for p in s.params) / 1e6, 3),
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "steps": args.steps, "warmup": args.warmup,
        "step_s": step_s, "step_s_min": min(walls), "step_s_max": max(walls),
        "parts_s": parts_s, "unattributed_s": step_s - sum(parts_s.values()),
        "groups_s": groups, "forward_s": sum(groups.get(g, 0.0) for g in FORWARD),
        "ops_steps": args.ops_steps, "backward_parts_s": backward_s, "ops_self_s": ops_total, "ops": ops,
    }
    print(json.dumps(record))
    print(report(record, named))
    return record


def report(record: dict, what: dict[str, str]) -> str:
    """The record as tables: parts (with their backward), groups, operators."""
    step, backward = record["step_s"], record["backward_parts_s"]

    def ms(s: float | None) -> str:  # 16 characters: milliseconds per step and share of the step
        return f"{1000 * s:>9.2f} {100 * s / step:>5.1f}%" if s is not None else " " * 16

    lines = [f"\n{record['env']} {record['image_size']} px, batch {record['batch_size']} clips of "
             f"{record['clip_frames']} frames, {record['parameters_m']}M parameters, {record['threads']} threads: "
             f"{1000 * step:.1f} ms per step (min {1000 * record['step_s_min']:.1f}, max "
             f"{1000 * record['step_s_max']:.1f}) over {record['steps']} steps",
             f"\n{'part':<26} {'ms/step':>9} {'share':>6}  {'bwd ms':>9} {'share':>6}  {'fwd+bwd':>7}  what"]
    for name, s in record["parts_s"].items():
        b = backward.get(name)
        both = f"{100 * (s + b) / step:>6.1f}%" if b is not None else ""
        lines.append(f"{name:<26} {ms(s)}  {ms(b)}  {both:>7}  {what[name]}")
    lines.append(f"{'unattributed':<26} {ms(record['unattributed_s'])}  {ms(None)}  {'':>7}  Python between the parts")
    for name in ("backward.accumulate_grad", "backward.unmapped", "backward.engine_and_rest"):
        if name in backward:
            lines.append(f"{name:<26} {ms(None)}  {ms(backward[name])}  {'':>7}  {BACKWARD_REST[name]}")
    if backward:
        lines.append("(the backward column splits the backward row over the parts whose forward made each autograd "
                     f"node, in the shares of {record['ops_steps']} profiled steps)")
    lines.append(f"\n{'group':<26} {'ms/step':>9} {'share':>6}  {'with its backward':>17}")
    for name, s in record["groups_s"].items():
        b = sum(v for k, v in backward.items() if k.split(".")[0] == name) if name != "backward" else None
        lines.append(f"{name:<26} {ms(s)}  {ms(s + b) if backward and b is not None else '':>17}")
    lines.append(f"{'forward':<26} {ms(record['forward_s'])}  ({' + '.join(g for g in FORWARD if g in record['groups_s'])})")
    if record["ops"]:
        lines.append(f"\ntop {len(record['ops'])} operators by self CPU time, over {record['ops_steps']} "
                     "profiled steps (share: of all operators' self CPU time)")
        lines.append(ops_table(record["ops"], record["ops_self_s"]))
    return "\n".join(lines)


BACKWARD_REST = {
    "backward.accumulate_grad": "AccumulateGrad nodes: gradients written into the parameters' .grad",
    "backward.unmapped": "backward nodes whose forward operator was in no part",
    "backward.engine_and_rest": "the engine's own work: ones_like of the loss, scheduling, summing gradients",
}


if __name__ == "__main__":
    main()
