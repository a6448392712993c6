"""The results of a benchmark folder (agent/grid.py): one table and plots, and the page.

    python -m agent.results_page BENCH [BENCH ...] [--page docs/RESULTS.md] [--readme README.md]
    python -m agent.results_page --page docs/RESULTS.md   # only its anchors block and the README's table, again

Rows: per env, goal kind, planner (with any other axis of the grid, such as a search budget),
training seed and evaluation seed, the success rate with its 95% Wilson interval, mean final distance, mean / p95 ms per decision and the cell's wall time; pooled rows add
the seeds up (training seeds, evaluation seeds, or both). Random and do-nothing baselines ran on the same episodes in every cell and are
listed once per env, goal kind and seed. Written to BENCH/results.{md,csv,json} and BENCH/*.png
(success_vs_ms_<env>.png: success against ms per decision, a line per planner through its budgets);
--page also writes a results page (and copies the plots next to it) for docs/, with the anchors'
published numbers (anchors.yaml beside the page) in a marked block of it.

The page is the one source of the README's results table: a README block opened by
`<!-- results from docs/RESULTS.md ... -->` is rewritten from that page's pooled rows whenever the page
is written (readme_table), so the two cannot disagree; a page that no README block names (e.g.
docs/BUDGETS.md) leaves the README alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path

from agent.eval_summary import wilson_interval
from world_model.atomic import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]

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
    """The agent.grid command that made `bench`, from its grid.json, and the envs whose cells it
    holds finished (a grid stopped early, or split over several folders, holds fewer than it names)."""
    grid = json.loads((bench / "grid.json").read_text()) if (bench / "grid.json").exists() else {}
    command = "python -m agent.grid " + " ".join(
        grid.get("fixed", []) + [f"{k}={','.join(v)}" for k, v in grid.get("axes", [])] + [f"bench={bench}"])
    envs = sorted({json.loads(s.read_text())["env"] for s in Path(bench).glob("cells/*/summary.json")
                   if (s.parent / "cell.json").exists()})
    return f"`{command}` (finished cells: {', '.join(envs) or 'none'})"


def _span(bench: Path) -> tuple[float, float]:
    """(first start, last end) of `bench`'s finished cells, seconds since the epoch: a cell ends at
    its cell.json's `finished` (or, for cells written before that field, the file's modification
    time) and starts its wall time earlier."""
    ends = [(json.loads(c.read_text()), c.stat().st_mtime) for c in Path(bench).glob("cells/*/cell.json")]
    return (min(cell.get("finished", mtime) - cell["wall_s"] for cell, mtime in ends),
            max(cell.get("finished", mtime) for cell, mtime in ends))


def write_page(benches: Path | list[Path], page: Path, anchors: Path | None = None, readme: Path | None = None) -> Path:
    """A results page at `page` from the cells of one or more benchmark folders (grids run
    separately: other envs, other budgets, other machines), with its plots in a folder named after
    the page beside it (docs/RESULTS.md -> docs/results/), so two pages never share plots.

    anchors: the anchors' published numbers (default: anchors.yaml beside the page, if there is one).
    readme: the README whose results block names this page is rewritten from it (default: README.md
        in the folder above the page's, if there is one; see copy_to_readme).
    """
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
    spans = [_span(bench) for bench in benches]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    text = [
        "# Results",
        "",
        "Generated by `python -m agent.results_page " + " ".join(map(str, benches)) + " --page " + str(page) + "` from "
        "benchmark folders; do not edit by hand. The dated lab notebook with every experiment is docs/NOTEBOOK.md.",
        "",
        *[f"- command: {_command(bench)}" for bench in benches],
        f"- machine: {results['machine']}; written {results['written']}; the cells ran from "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(start))} to {time.strftime('%Y-%m-%d %H:%M', time.localtime(end))} "
        f"({(end - start) / 60:.0f} min elapsed; their wall times add up to {sum(walls) / 60:.0f} min: cells that ran "
        "side by side shared the cores; a world model already cached when its cell started is not counted)",
        "- success rates with 95% Wilson intervals; baselines (random actions, doing nothing) on the same episodes",
        f"- {SUCCESS_RULES}",
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
    anchors = page.parent / ANCHORS_FILE if anchors is None else Path(anchors)
    text = "\n".join(text)
    if anchors.exists():
        text = with_anchors(text, anchors, page)
    write_bytes_atomic(page, text.encode())
    copy_to_readme(page, readme)
    return page


# --- the anchors' published numbers, kept in one file (docs/anchors.yaml) and written onto the page

ANCHORS_FILE = "anchors.yaml"
ANCHORS_END = "<!-- anchors: end -->"
SUCCESS_RULES = ("two success rules: **at the end** (the criterion holds after the budget's last control step; "
                 "ours) and **at any step** (it held after some control step within the budget; the anchors')")


def load_anchors(path: Path) -> dict:
    """{"tables": [...], "protocols": [...]} from an anchors file, checked: each table states its
    source, protocol and success rule and gives one value per column in every row."""
    from omegaconf import OmegaConf

    path = Path(path)
    data = OmegaConf.to_container(OmegaConf.load(path))
    for table in data.get("tables", []):
        missing = [k for k in ("title", "source", "protocol", "success", "columns", "rows") if not table.get(k)]
        if missing:
            raise ValueError(f"{path}: table {table.get('title', '?')!r} has no {', '.join(missing)}; "
                             "every published number needs its source, protocol and success rule")
        for row in table["rows"]:
            if len(row) != len(table["columns"]) + 1:
                raise ValueError(f"{path}: table {table['title']!r}, row {row[0]!r} gives {len(row) - 1} values for "
                                 f"{len(table['columns'])} columns ({', '.join(table['columns'])}); give one per "
                                 "column (null where none was published)")
    for entry in data.get("protocols", []):
        missing = [k for k in ("theirs", "ours", "differences") if not entry.get(k)]
        if missing:
            raise ValueError(f"{path}: protocol entry {entry!r} has no {', '.join(missing)}")
    return data


def anchors_markdown(path: Path, page: Path) -> str:
    """The page's section of the anchors' numbers, between its markers, from the anchors file."""
    data = load_anchors(path)
    source = Path(os.path.relpath(path, Path(page).parent)).as_posix()
    lines = [f"<!-- anchors: written from {source} by python -m agent.results_page; edit that file, not this block -->",
             "## The anchors' published numbers", "",
             "As published, under each anchor's own protocol; none was rerun here. Each table says which success "
             "rule it uses; ours are reported by both rules above (at the end of the budget and at any step).", ""]
    for table in data["tables"]:
        lines += [f"### {table['title']}", "",
                  f"- source: {table['source']}", f"- protocol: {table['protocol']}",
                  f"- success: {table['success']}", "",
                  "| system | " + " | ".join(table["columns"]) + " |", "|---" * (len(table["columns"]) + 1) + "|"]
        lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in table["rows"]]
        lines.append("")
    if data.get("protocols"):
        lines += ["### Their protocols against ours", "", "| theirs | our goal kind | what differs |", "|---|---|---|"]
        lines += [f"| {e['theirs']} | {e['ours']} | {e['differences']} |" for e in data["protocols"]]
        lines.append("")
    return "\n".join([*lines, ANCHORS_END])


def with_anchors(text: str, anchors: Path, page: Path) -> str:
    """A page's text with its anchors block written anew from `anchors` (replaced where the page
    has one, else put before its plots, or at its end)."""
    block = anchors_markdown(anchors, page)
    found = re.search(r"<!-- anchors: written from .*?" + re.escape(ANCHORS_END), text, flags=re.DOTALL)
    if found:
        return text[:found.start()] + block + text[found.end():]
    at = text.find("\n## Plots")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:at + 1] + block + "\n\n" + text[at + 1:]


# --- the README's results table: copied from the page's pooled rows, never typed

README_END = "<!-- results: end -->"
_README_BLOCK = re.compile(r"<!-- results from (?P<page>\S+): copied by python -m agent\.results_page; do not edit -->\n"
                           r".*?" + re.escape(README_END), flags=re.DOTALL)
_PERCENT = re.compile(r"\**(\d+)%\**(?: \((\d+)/(\d+)\))?")


def page_rows(text: str) -> list[dict]:
    """The pooled rows of a results page as it prints them, in its order:
    [{env, goal_kind, planner, end, ci, any, episodes}], each value the page's own text ("75%",
    "53-89", "80% [58-92]" or None where the page has no any-step figure, "20")."""
    rows, env, header, in_details = [], None, None, False
    for line in text.splitlines():
        if line.startswith("## "):  # the anchors and the plots: no row of ours after this
            break
        if line.startswith("### "):
            env, header, in_details = line[4:].strip(), None, False
        elif line.startswith("<details>"):
            in_details = True  # per-seed rows, not pooled
        elif env and not in_details and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                row = dict(zip(header, cells))
                end = _PERCENT.fullmatch(row.get("success at the end", row.get("success", "")))
                if not end:
                    raise ValueError(f"results page row {line!r}: no success rate in it")
                any_step = next((v for k, v in row.items() if k.startswith("success at any step")), None)
                rows.append({"env": env, "goal_kind": row["goal kind"], "planner": row["planner"],
                             "end": f"{end[1]}%", "ci": row["95% CI"].removesuffix("%"),
                             "any": None if any_step in (None, "not recorded") else any_step, "episodes": end[3]})
    return rows


def default_planner() -> str:
    """The planner a plain `python -m agent.run` uses (configs/run.yaml's defaults)."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "run.yaml"))["defaults"]
    return next(d["planner"] for d in defaults if isinstance(d, dict) and "planner" in d)


def readme_table(text: str, link: str, default: str | None = None) -> str:
    """The README's results block for a results page's text: per env and goal kind, the default
    planner's success at the end [95% CI] and at any step, every other planner's, random's and
    doing nothing's (at the end / at any step), and the episodes per row, all copied from the page's
    pooled rows. `link` is the page's path as the README links it."""
    default = default or default_planner()
    rows = page_rows(text)
    others = list(dict.fromkeys(r["planner"] for r in rows if r["planner"] not in (default, *BASELINES)))
    cells: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for r in rows:
        cells[(r["env"], r["goal_kind"])][r["planner"]] = r

    def short(r: dict | None) -> str:  # "end / any" without intervals, for the columns beside the default's
        if r is None:
            return "-"
        return f"{r['end']} / {r['any'].split(' ')[0]}" if r["any"] else f"{r['end']} / -"

    machine = next((line.removeprefix("- machine: ") for line in text.splitlines() if line.startswith("- machine: ")), "")
    lines = [f"Copied from [{link}]({link}), pooled over seeds ({machine}). `{default}` is the default planner. "
             "Success **at the end** of the budget (ours) and **at any step** within it (the anchors' rule); "
             "[95% Wilson interval]; - where the grid did not record it.", "",
             f"| env | goal kind | {default}, at the end | {default}, at any step | "
             + "".join(f"{name} (end / any) | " for name in others) + "random (end / any) | do nothing (end / any) | "
             "episodes per row |",
             "|---" * (7 + len(others)) + "|"]
    for (env, kind), by in cells.items():
        mine = by.get(default)
        episodes = (mine or next(iter(by.values())))["episodes"]
        lines.append(f"| {env} | {kind} | " + (f"{mine['end']} [{mine['ci']}] | {mine['any'] or '-'} | " if mine else "- | - | ")
                     + "".join(f"{short(by.get(name))} | " for name in others)
                     + f"{short(by.get('random'))} | {short(by.get('zero'))} | {episodes} |")
    return "\n".join(lines)


def copy_to_readme(page: Path, readme: Path | None = None) -> Path | None:
    """Rewrites the README's results block that names `page` from the page's pooled rows; returns
    the README, or None where there is none or no block of it names this page (readme: default
    README.md in the folder above the page's)."""
    page = Path(page)
    readme = page.resolve().parent.parent / "README.md" if readme is None else Path(readme)
    if not readme.exists():
        return None
    link = Path(os.path.relpath(page.resolve(), readme.resolve().parent)).as_posix()
    old = readme.read_text()
    if not any(m["page"] == link for m in _README_BLOCK.finditer(old)):
        return None
    table = readme_table(page.read_text(), link)
    new = _README_BLOCK.sub(lambda m: m[0] if m["page"] != link else f"{m[0].splitlines()[0]}\n{table}\n{README_END}", old)
    if new != old:
        write_bytes_atomic(readme, new.encode())
    return readme


def refresh_page(page: Path, readme: Path | None = None) -> Path | None:
    """Writes a page's generated blocks again from their sources without rereading any benchmark:
    its anchors block from anchors.yaml beside it (where there is one), then the README's table
    from the page. Returns the README written, or None (as copy_to_readme)."""
    page = Path(page)
    anchors = page.parent / ANCHORS_FILE
    if anchors.exists():
        text = page.read_text()
        new = with_anchors(text, anchors, page)
        if new != text:
            write_bytes_atomic(page, new.encode())
    return copy_to_readme(page, readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, nargs="*", help="benchmark folders (none: write --page's anchors block "
                        "and the README's table again from their sources)")
    parser.add_argument("--page", type=Path, help="also write this results page from all of them (e.g. docs/RESULTS.md)")
    parser.add_argument("--readme", type=Path, help="the README whose results block names the page "
                        "(default: README.md in the folder above the page's)")
    args = parser.parse_args()
    missing = [str(b) for b in args.bench if not b.is_dir()]
    if missing:
        parser.error(f"no folder {', '.join(missing)}; pass a folder written by python -m agent.grid")
    if not args.bench and not args.page:
        parser.error("pass benchmark folders, or --page to copy an existing page's table into the README")
    if args.readme and not args.readme.exists():
        parser.error(f"no README at {args.readme}")
    try:
        if args.page and not args.bench:
            if not args.page.exists():
                parser.error(f"no page at {args.page}; pass the benchmark folders to write it")
            readme = refresh_page(args.page, args.readme)
            print(f"page: {args.page}\n" + (f"readme: {readme}" if readme else f"no README block names {args.page}"))
        elif args.page:
            print(f"page: {write_page(args.bench, args.page, readme=args.readme)}")
        else:
            for bench in args.bench:
                write_results(bench)
                print(f"results: {bench / 'results.md'}")
    except FileNotFoundError as e:  # a folder without finished cells: gather says so
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
