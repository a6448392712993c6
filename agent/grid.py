"""`python -m agent.grid`: one `agent.run` per cell of a grid of envs x planners x seeds.

    python -m agent.grid env=<name>,<name> planner=cem,mppi seed=0,1 eval.episodes=20 \\
        [bench=outputs/benchmark/NAME]

Every override that lists values separated by commas (hydra's sweep syntax) is an axis of the grid;
the others apply to every cell. An axis other than env, planner and seed (a search budget, e.g.
`planner.samples=50,150,300`) makes each of its values a row of its own and a point on the
planner's line in success_vs_ms.png. Cells share `cache_root`, so a dataset, model or critic is built
once and reused by every cell that needs it (a planner axis trains nothing new). Each cell writes
its run into <bench>/cells/<cell>/; a cell whose summary is there is not run again, so a killed
grid continues where it stopped. At the end the results table and plots are written to <bench>
(agent/results_page.py), and `python -m agent.results_page <bench> --page docs/RESULTS.md` makes the page.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

from world_model.dataset import write_json_atomic


def parse_grid(args: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Command-line overrides -> (fixed overrides, [(key, values)] axes), by hydra's own parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fixed, axes = [], []
    for override in OverridesParser.create().parse_overrides(args):
        if override.is_sweep_override():
            axes.append((override.get_key_element(), list(override.sweep_string_iterator())))
        else:
            fixed.append(override.input_line)
    return fixed, axes


def cell_name(cell: list[tuple[str, str]]) -> str:
    """A folder name for one cell: [("planner", "cem-gd"), ("seed", "0")] -> "planner-cem-gd_seed-0"."""
    name = "_".join(f"{k}-{v}" for k, v in cell) or "single"
    return re.sub(r"[^A-Za-z0-9.+-]", "-", name.replace("_", "__")).replace("--", "_")


def compose_cell(overrides: list[str]):
    """The run config of one cell, as `python -m agent.run <overrides>` would build it."""
    from agent.run_config import compose_run

    return compose_run(overrides)


def machine() -> str:
    """One line: CPU count and model, GPU if any, torch version."""
    import os
    import platform

    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}){gpu}, torch {torch.__version__}"


def run_grid(args: list[str], bench: Path | None = None, progress: bool = True) -> Path:
    """Runs every cell of the grid `args` describes that is not done yet; returns the bench folder."""
    from agent.results_page import write_results
    from agent.run import run

    bench_args = [a for a in args if a.startswith("bench=")]
    args = [a for a in args if not a.startswith("bench=")]
    if bench is None:
        bench = Path(bench_args[-1].split("=", 1)[1]) if bench_args else Path("outputs/benchmark") / time.strftime(
            "%Y-%m-%d_%H-%M-%S")
    fixed, axes = parse_grid(args)
    cells = [list(zip([k for k, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    # a bad key or value fails before any work, and before the bench folder records the grid
    configs = [compose_cell(fixed + [f"{k}={v}" for k, v in cell]) for cell in cells]
    bench.mkdir(parents=True, exist_ok=True)
    grid = {"fixed": fixed, "axes": [[k, v] for k, v in axes]}
    grid_file = bench / "grid.json"
    if grid_file.exists() and json.loads(grid_file.read_text()) != grid:
        raise ValueError(f"{bench} holds another grid ({grid_file}); pass a new bench=FOLDER or rerun the same grid")
    grid_file.write_text(json.dumps(grid, indent=1))
    bar = tqdm(total=len(cells), desc="benchmark cells", unit="cell", disable=not progress)
    for cell, cfg in zip(cells, configs):
        folder = bench / "cells" / cell_name(cell)
        bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in cell))
        if not (folder / "cell.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            run(cfg, folder)
            # written last: its presence means the cell is finished
            write_json_atomic(folder / "cell.json", {
                "cell": dict(cell), "overrides": fixed, "wall_s": time.perf_counter() - start, "finished": time.time(),
                "planner": cfg.planner.get("name"), "seed": cfg.seed,
                "eval": {"episodes": cfg.eval.episodes, "seed": cfg.eval.seed}, "machine": machine(),
            })
        bar.update(1)
    bar.close()
    write_results(bench)
    return bench


def main() -> None:
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return
    from hydra.errors import HydraException

    try:
        bench = run_grid(args)
    except HydraException as e:  # an override hydra cannot parse or merge: its message, and why
        why = f": {str(e.__cause__).splitlines()[0]}" if e.__cause__ else ""
        raise SystemExit(f"error: {str(e).splitlines()[0]}{why}; correct that override") from None
    print(f"results: {bench / 'results.md'}")


if __name__ == "__main__":
    main()
