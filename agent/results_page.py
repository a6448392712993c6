"""The results of a benchmark folder (agent/grid.py): one table and plots, and the page.

    python -m agent.results_page BENCH [BENCH ...] [--page docs/RESULTS.md]

Rows: per env, goal kind, planner (with any other axis of the grid, such as a search budget),
training seed and evaluation seed, the success rate with its 95% Wilson interval, mean final distance, mean / p95 ms per decision and the cell's wall time; pooled rows add
the seeds up (training seeds, evaluation seeds, or both). Random and do-nothing baselines ran on the same episodes in every cell and are
listed once per env, goal kind and seed. Written to BENCH/results.{md,csv,json} and BENCH/*.png
(success_vs_ms_<env>.png: success against ms per decision, a line per planner through its budgets);
--page also writes a results page (and copies the plots next to it) for docs/.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

from agent.eval_summary import wilson_interval

BASELINES = ("random", "zero")
COLUMNS = ["env", "goal_kind", "planner", "seed", "eval_seed", "episodes", "successes", "success_rate", "ci_low", "ci_high",
           "successes_any", "success_any_rate", "final_distance_mean", "plan_ms_mean", "plan_ms_p95", "wall_s"]
# "success" columns judge at the end of the budget (ours); "any step" ones count an episode a
# success the first time the criterion holds within the budget (the anchors' rule). Grids run
# before records carried both have None there ("not recorded" on the page).


def _protocols(folder: Path) -> dict[str, dict]:
    """goal kind -> {budget, episodes, eval_seed} from a cell's records (the first of each kind)."""
    out = {}
    with open(folder / "records.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["goal_kind"] not in out:
                out[r["goal_kind"]] = {"budget": r["budget"]}
    return out


def load_rows(bench: Path) -> tuple[list[dict], dict]:
    """(one row per env, goal kind, planner or baseline, seed; protocol per env and goal kind)."""
    import envs

    rows, protocol, seen = [], {}, set()
    for cell_file in sorted(Path(bench).glob("cells/*/cell.json")):
        folder = cell_file.parent
        cell = json.loads(cell_file.read_text())
        summary = json.loads((folder / "summary.json").read_text())
        env, seed = summary["env"], cell["seed"]
        goal_kinds = envs.REGISTRY[env][0].goal_kinds if env in envs.REGISTRY else {}
        for kind, p in _protocols(folder).items():
            rule = goal_kinds[kind].success if kind in goal_kinds else ""
            seeds = protocol.get(f"{env}/{kind}", {}).get("eval_seeds", [])
            protocol[f"{env}/{kind}"] = {**p, "success": rule, "episodes": cell["eval"]["episodes"],
                                         "eval_seeds": sorted(set(seeds) | {cell["eval"]["seed"]})}
        # axes other than env, planner and seed (a search budget such as planner.samples=50) make
        # a planner variant of its own row, and a line through its budgets in success_vs_ms.png
        variant = " ".join(f"{k}={v}" for k, v in cell["cell"].items() if k not in ("env", "planner", "seed", "eval.seed"))
        episodes = json.dumps(cell["eval"], sort_keys=True)
        for r in summary["rows"]:
            planner = cell["planner"] if r["policy"] == "planner" else r["policy"]
            if r["policy"] == "planner" and variant:
                planner = f"{planner} {variant}"
            key = (env, r["protocol"], planner, seed, episodes)
            if key in seen:  # a baseline already listed from another cell: the same episodes
                continue
            seen.add(key)
            rows.append({"env": env, "goal_kind": r["protocol"], "planner": planner, "seed": seed,
                         "eval_seed": cell["eval"]["seed"],
                         "planner_name": cell["planner"] if r["policy"] == "planner" else r["policy"],
                         "episodes": r["episodes"], "successes": r["successes"], "success_rate": r["success_rate"],
                         "ci_low": r["ci95"][0], "ci_high": r["ci95"][1],
                         "successes_any": r.get("successes_any"), "success_any_rate": r.get("success_any_rate"),
                         "final_distance_mean": r["final_distance_mean"], "plan_ms_mean": r["plan_ms_mean"],
                         "plan_ms_p95": r["plan_ms_p95"], "wall_s": cell["wall_s"],
                         "model": summary.get("checkpoint")})
    return rows, protocol


def seed_label(row: dict) -> str:
    """"training seed/evaluation seed" of a row, e.g. "1/0"."""
    return f"{row['seed']}/{row.get('eval_seed', 0)}"


def pool(rows: list[dict]) -> list[dict]:
    """Rows added up over seeds: one per env, goal kind and planner."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["env"], r["goal_kind"], r["planner"])].append(r)
    pooled = []
    for (env, kind, planner), group in groups.items():
        n, wins = sum(r["episodes"] for r in group), sum(r["successes"] for r in group)
        low, high = wilson_interval(int(wins), int(n))
        recorded = all(r.get("successes_any") is not None for r in group)
        wins_any = sum(r["successes_any"] for r in group) if recorded else None

        def mean(key: str, group=group, n=n) -> float:  # episode-weighted over the seeds
            return sum(r[key] * r["episodes"] for r in group) / n if n else float("nan")

        pooled.append({"env": env, "goal_kind": kind, "planner": planner, "seeds": sorted(seed_label(r) for r in group),
                       "planner_name": group[0].get("planner_name", planner),
                       "episodes": n, "successes": wins, "success_rate": wins / n if n else float("nan"),
                       "ci_low": low, "ci_high": high, "successes_any": wins_any,
                       "success_any_rate": wins_any / n if recorded and n else None,
                       "final_distance_mean": mean("final_distance_mean"),
                       "plan_ms_mean": mean("plan_ms_mean"), "plan_ms_p95": max(r["plan_ms_p95"] for r in group)})
    return pooled


def markdown(rows: list[dict], pooled: list[dict], protocol: dict) -> str:
    """Tables per env: pooled over seeds first, then per seed; the protocol above each."""

    def ms(r: dict) -> str:  # baselines do not plan
        return "-" if r["planner"] in BASELINES else f"{r['plan_ms_mean']:.0f}, {r['plan_ms_p95']:.0f}"

    def any_step(r: dict) -> str:
        if r.get("successes_any") is None:
            return "not recorded"
        low, high = wilson_interval(int(r["successes_any"]), int(r["episodes"]))
        return f"{100 * r['success_any_rate']:.0f}% [{100 * low:.0f}-{100 * high:.0f}]"
    # best planner first; a planner's budgets (its variants) stay together, cheapest first
    best = defaultdict(float)
    for r in pooled:
        key = (r["env"], r["goal_kind"], r["planner_name"])
        best[key] = max(best[key], r["success_rate"])

    def order(r: dict) -> tuple:  # pool() gives every row its planner_name
        name = r["planner_name"]
        return r["goal_kind"], r["planner"] in BASELINES, -best[(r["env"], r["goal_kind"], name)], name, r["plan_ms_mean"]
    lines = []
    for env in sorted({r["env"] for r in rows}):
        lines += [f"### {env}", ""]
        for key, p in sorted(protocol.items()):
            if key.startswith(env + "/"):
                seeds = ", ".join(map(str, p["eval_seeds"]))
                lines.append(f"- `{key.split('/', 1)[1]}`: budget {p['budget']} control steps, {p['episodes']} episodes "
                             f"per cell, evaluation seeds {seeds}; success: {p['success']}")
        lines += ["", "| goal kind | planner | seeds (training/evaluation) | success at the end | 95% CI | "
                  "success at any step (anchors' rule) | final distance | ms / decision (mean, p95) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in pooled if r["env"] == env), key=order):
            lines.append(f"| {r['goal_kind']} | {r['planner']} | {', '.join(r['seeds'])} | "
                         f"**{100 * r['success_rate']:.0f}%** ({r['successes']:.0f}/{r['episodes']:.0f}) | "
                         f"{100 * r['ci_low']:.0f}-{100 * r['ci_high']:.0f}% | {any_step(r)} | "
                         f"{r['final_distance_mean']:.3f} | {ms(r)} |")
        lines += ["", "<details><summary>per seed</summary>", "", "| goal kind | planner | seed (training/evaluation) | "
                  "success at the end | 95% CI | success at any step | final distance | ms / decision (mean, p95) | "
                  "cell wall time |", "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in rows if r["env"] == env), key=lambda r: (r["goal_kind"], r["planner"], r["seed"], r["eval_seed"])):
            lines.append(f"| {r['goal_kind']} | {r['planner']} | {seed_label(r)} | {100 * r['success_rate']:.0f}% | "
                         f"{100 * r['ci_low']:.0f}-{100 * r['ci_high']:.0f}% | {any_step(r)} | {r['final_distance_mean']:.3f} | "
                         f"{ms(r)} | {r['wall_s'] / 60:.1f} min |")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def plot(bench: Path, rows: list[dict], pooled: list[dict]) -> list[Path]:
    """success.png, success_vs_ms.png (and one success_vs_ms_<env>.png per env) and training.png in bench;
    returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    envs_ = sorted({r["env"] for r in pooled})
    paths = []
    groups = {env: sorted((r for r in pooled if r["env"] == env), key=lambda r: (r["goal_kind"], r["planner"]))
              for env in envs_}
    widths = [max(4.0, 0.3 * len(groups[env])) for env in envs_]  # a budget grid has many bars: room for labels
    fig, axes = plt.subplots(1, len(envs_), figsize=(sum(widths) + 1, 4.5), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, env in zip(axes[0], envs_):
        group = groups[env]
        labels = [f"{r['goal_kind']} {r['planner']}" for r in group]
        rate = [100 * r["success_rate"] for r in group]
        err = [[100 * (r["success_rate"] - r["ci_low"]) for r in group], [100 * (r["ci_high"] - r["success_rate"]) for r in group]]
        ax.bar(range(len(group)), rate, yerr=err, capsize=3,
               color=["#bbbbbb" if r["planner"] in BASELINES else "#3b75af" for r in group])
        ax.set_xticks(range(len(group)), labels, fontsize=7, rotation=60, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("success % (95% Wilson interval)")
        ax.set_title(env)
    fig.tight_layout()
    paths.append(bench / "success.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # one colour per planner on every panel, one line style per goal kind
    names = sorted({r["planner_name"] for r in pooled if r["planner"] not in BASELINES})
    colour = {name: f"C{i % 10}" for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(envs_), figsize=(5 * len(envs_), 4), squeeze=False)
    for ax, env in zip(axes[0], envs_):
        _budget_panel(ax, env, pooled, colour)
    fig.tight_layout()
    paths.append(bench / "success_vs_ms.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    for env in envs_:  # the same panel alone, one file per env
        fig, ax = plt.subplots(figsize=(6, 4.5))
        _budget_panel(ax, env, pooled, colour)
        fig.tight_layout()
        paths.append(bench / f"success_vs_ms_{env}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    curves = {}
    for r in rows:
        if r.get("model") and r["planner"] not in BASELINES:
            log = Path(r["model"]).parent / "metrics.jsonl"
            if log.exists():
                with open(log) as f:
                    curves[f"{r['env']} seed {r['seed']}"] = [json.loads(line) for line in f]
    panels = [("held_loss", "held-out loss"), ("rollout_err_1", "rollout error, 1 step (dashed: copy-last)"),
              ("effective_rank", "effective rank"), ("probe_r2", "linear probe R^2")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for ax, (key, title) in zip(axes, panels):
        for name, log in sorted(curves.items()):
            points = [(m["step"], m[key]) for m in log if key in m]
            if points:
                line, = ax.plot(*zip(*points), label=name)
                if key == "rollout_err_1":
                    copy = [(m["step"], m["copy_last_err_1"]) for m in log if "copy_last_err_1" in m]
                    ax.plot(*zip(*copy), "--", color=line.get_color())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(bench / "training.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _budget_panel(ax, env: str, pooled: list[dict], colour: dict[str, str]) -> None:
    """Success against mean ms per decision on `ax`: a line per (goal kind, planner) through its
    variants (search budgets), with 95% Wilson intervals."""
    lines = defaultdict(list)  # (goal kind, planner name) -> its variants
    for r in pooled:
        if r["env"] == env and r["planner"] not in BASELINES:
            lines[(r["goal_kind"], r["planner_name"])].append(r)
    kinds = sorted({kind for kind, _ in lines})
    for (kind, name), group in sorted(lines.items()):
        group.sort(key=lambda r: r["plan_ms_mean"])
        rate = [100 * r["success_rate"] for r in group]
        ax.errorbar([r["plan_ms_mean"] for r in group], rate,
                    yerr=[[a - 100 * r["ci_low"] for a, r in zip(rate, group)],
                          [100 * r["ci_high"] - a for a, r in zip(rate, group)]],
                    fmt="o" + ("-", "--", ":", "-.")[kinds.index(kind) % 4], color=colour[name], capsize=3,
                    alpha=0.85, label=f"{kind} {name}")
    ax.set_xscale("log")
    ax.set_xlabel("ms per decision (mean)")
    ax.set_ylabel("success % (95% Wilson interval)")
    ax.set_ylim(0, 100)
    ax.set_title(env)
    ax.legend(fontsize=7)


def gather(benches: list[Path]) -> dict:
    """rows, pooled rows, protocol and machine of the finished cells of one or more benchmark folders."""
    rows, protocol = [], {}
    for bench in benches:
        more, prot = load_rows(Path(bench))
        rows += more
        for key, p in prot.items():
            seeds = set(protocol.get(key, {}).get("eval_seeds", [])) | set(p["eval_seeds"])
            protocol[key] = {**p, "eval_seeds": sorted(seeds)}
    if not rows:
        raise FileNotFoundError(f"no finished cell in {', '.join(f'{b}/cells' for b in benches)}; "
                                "run python -m agent.grid first")
    return {"rows": rows, "pooled": pool(rows), "protocol": protocol, "written": time.strftime("%Y-%m-%d %H:%M"),
            "machine": "; ".join(dict.fromkeys(m for m in (_machine(Path(b)) for b in benches) if m))}


def write_results(bench: Path) -> dict:
    """Reads every finished cell of `bench` and writes results.{json,csv,md} and the plots."""
    bench = Path(bench)
    results = gather([bench])
    rows, pooled, protocol = results["rows"], results["pooled"], results["protocol"]
    (bench / "results.json").write_text(json.dumps(results, indent=1))
    with open(bench / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (bench / "results.md").write_text(markdown(rows, pooled, protocol))
    results["plots"] = [str(p) for p in plot(bench, rows, pooled)]
    return results


def _machine(bench: Path) -> str:
    cells = sorted(Path(bench).glob("cells/*/cell.json"))
    return json.loads(cells[0].read_text()).get("machine", "") if cells else ""


def _command(bench: Path) -> str:
    """The agent.grid command that made `bench`, from its grid.json."""
    grid = json.loads((bench / "grid.json").read_text()) if (bench / "grid.json").exists() else {}
    return "python -m agent.grid " + " ".join(
        grid.get("fixed", []) + [f"{k}={','.join(v)}" for k, v in grid.get("axes", [])] + [f"bench={bench}"])


def write_page(benches: Path | list[Path], page: Path) -> Path:
    """A results page at `page` from the cells of one or more benchmark folders (grids run
    separately: other envs, other budgets, other machines), with its plots in a folder named after
    the page beside it (docs/RESULTS.md -> docs/results/), so two pages never share plots."""
    benches = [Path(b) for b in (benches if isinstance(benches, (list, tuple)) else [benches])]
    page = Path(page)
    for bench in benches:
        write_results(bench)
    results = gather(benches)
    figures = page.parent / page.stem.lower()
    figures.mkdir(parents=True, exist_ok=True)
    per_env = [p for p in plot(figures, results["rows"], results["pooled"]) if p.name.startswith("success_vs_ms_")]
    # one wall time per cell: its goal kinds and baselines are rows of their own that repeat it
    walls = list({(r["env"], r["planner"], r["seed"], r["eval_seed"]): r["wall_s"]
                  for r in results["rows"] if r["planner"] not in BASELINES}.values())
    text = [
        "# Results",
        "",
        "Generated by `python -m agent.results_page " + " ".join(map(str, benches)) + " --page " + str(page) + "` from "
        "benchmark folders; do not edit by hand. The dated lab notebook with every experiment is docs/NOTEBOOK.md.",
        "",
        *[f"- command: `{_command(bench)}`" for bench in benches],
        f"- machine: {results['machine']}; written {results['written']}; total cell wall time "
        f"{sum(walls) / 60:.0f} min",
        "- success rates with 95% Wilson intervals; baselines on the same episodes",
        "",
        markdown(results["rows"], results["pooled"], results["protocol"]),
        "## Plots",
        "",
        f"![success per env and planner]({figures.name}/success.png)",
        "",
        *[f"![success against planning time, {p.stem.removeprefix('success_vs_ms_')}]({figures.name}/{p.name})\n"
          for p in per_env],
        f"![training curves]({figures.name}/training.png)",
        "",
    ]
    page.write_text("\n".join(text))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, nargs="+", help="one or more benchmark folders")
    parser.add_argument("--page", type=Path, help="also write this results page from all of them (e.g. docs/RESULTS.md)")
    args = parser.parse_args()
    missing = [str(b) for b in args.bench if not b.is_dir()]
    if missing:
        parser.error(f"no folder {', '.join(missing)}; pass a folder written by python -m agent.grid")
    try:
        if args.page:
            print(f"page: {write_page(args.bench, args.page)}")
        else:
            for bench in args.bench:
                write_results(bench)
                print(f"results: {bench / 'results.md'}")
    except FileNotFoundError as e:  # a folder without finished cells: gather says so
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
