"""The benchmark harness runs a grid of cells once each (a killed grid continues without redoing
finished cells), and the results page is built from a benchmark folder alone."""

import json
from pathlib import Path

import pytest

import agent.run
from agent.grid import cell_name, parse_grid, run_grid
from agent.results_page import load_anchors, pool, write_page

TINY = [
    "env=reacher", "env.image_size=32", "data.episodes=4", "data.steps=12", "data.workers=1",
    "data.episodes_per_shard=2", "steps=4", "optim.batch_size=4", "monitor_every=4", "probe_frames=20",
    "monitor_clips=4", "world_model.dim=16", "world_model.stem_channels=8", "world_model.encoder_width=16",
    "world_model.encoder_depth=1", "world_model.predictor_width=32", "world_model.predictor_depth=1",
    "eval.episodes=2", "eval.videos=0", "eval.goal_kinds=[state]", "eval.verify_replay=false",
    "planner.samples=16", "planner.iterations=1",
]


def test_grid_axes_follow_hydra_sweep_syntax():
    fixed, axes = parse_grid(["env=reacher,two-rooms", "planner=cem,mppi", "seed=0", "eval.goal_kinds=[a,b]"])
    assert fixed == ["seed=0", "eval.goal_kinds=[a,b]"]
    assert axes == [("env", ["reacher", "two-rooms"]), ("planner", ["cem", "mppi"])]
    assert cell_name([("env", "two-rooms"), ("planner", "cem-gd")]) == "env-two-rooms_planner-cem-gd"


def test_a_bad_override_or_folder_is_one_line(tmp_path, monkeypatch):
    import agent.grid
    import agent.results_page

    for args, line in ((["seed="], r"^error: Error merging override seed=: Value '' of type 'str' could not be "
                                   r"converted to Integer; correct that override$"),
                       (["no_such_key=1"], r"^error: Could not override 'no_such_key'.*; correct that override$")):
        monkeypatch.setattr("sys.argv", ["agent.grid", *args, f"bench={tmp_path / 'bench'}"])
        with pytest.raises(SystemExit, match=line):  # before: hydra's traceback
            agent.grid.main()
    assert not (tmp_path / "bench").exists()  # no grid.json of a grid that never composed
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr("sys.argv", ["agent.results_page", str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match=rf"^error: no finished cell in {tmp_path / 'empty'}/cells; run python -m "
                                         r"agent.grid first$"):  # before: a FileNotFoundError's traceback
        agent.results_page.main()
    monkeypatch.setattr("sys.argv", ["agent.results_page", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as refused:  # argparse's usage line and one line naming the folder
        agent.results_page.main()
    assert refused.value.code == 2


def test_a_killed_grid_continues_without_redoing_finished_cells(tmp_path, monkeypatch):
    args = [*TINY, f"cache_root={tmp_path / 'cache'}", "planner=cem,mppi"]
    real_run, calls = agent.run.run, []

    def failing_second(cfg, out):
        calls.append(cfg.planner.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the grid is killed during its second cell
        real_run(cfg, out)

    monkeypatch.setattr(agent.run, "run", failing_second)
    with pytest.raises(KeyboardInterrupt):
        run_grid(args, tmp_path / "bench", progress=False)
    monkeypatch.setattr(agent.run, "run", lambda cfg, out: (calls.append(cfg.planner.name), real_run(cfg, out)))
    run_grid(args, tmp_path / "bench", progress=False)
    assert calls == ["cem", "mppi", "mppi"]  # the finished cem cell was not run again
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    planners = {(r["planner"], r["goal_kind"]) for r in results["rows"]}
    assert planners == {("cem", "state"), ("mppi", "state"), ("random", "state"), ("zero", "state")}
    for name in ("results.md", "results.csv", "success.png", "success_vs_ms.png", "training.png"):
        assert (tmp_path / "bench" / name).stat().st_size > 0
    with pytest.raises(ValueError, match="another grid"):
        run_grid([*args[:-1], "planner=cem,icem"], tmp_path / "bench", progress=False)


def _fake_cell(bench: Path, planner: str, seed: int, successes: int, extra: dict | None = None,
               ms: float = 100.0, eval_seed: int = 0, successes_any: int | None = None) -> None:
    """A finished cell of a two-rooms `rooms` grid: 10 episodes each of the planner, random (1 success)
    and doing nothing (none); successes_any, where given, records the any-step rule too (random: 2)."""
    folder = bench / "cells" / cell_name([("planner", planner), ("seed", str(seed)), *(extra or {}).items()])
    folder.mkdir(parents=True)
    rows = [{"protocol": "rooms", "env": "two-rooms", "policy": policy, "episodes": 10, "successes": s,
             "success_rate": s / 10, "ci95": [0.0, 1.0], "final_distance_mean": 0.1, "plan_ms_mean": ms * (policy == "planner"),
             "plan_ms_p95": 150.0 * (policy == "planner"), "wall_s_per_episode": 1.0,
             **({} if successes_any is None else {"successes_any": a, "success_any_rate": a / 10})}
            for policy, s, a in (("planner", successes, successes_any), ("random", 1, 2), ("zero", 0, 0))]
    (folder / "summary.json").write_text(json.dumps({"env": "two-rooms", "rows": rows, "checkpoint": None}))
    (folder / "records.jsonl").write_text(json.dumps({"goal_kind": "rooms", "budget": 215}) + "\n")
    (folder / "cell.json").write_text(json.dumps({"cell": {"planner": planner, "seed": seed, **(extra or {})}, "wall_s": 60.0,
                                                  "planner": planner, "seed": seed, "machine": "2 CPU cores",
                                                  "eval": {"episodes": 10, "seed": eval_seed}}))


def test_results_page_is_built_from_a_benchmark_folder(tmp_path):
    bench = tmp_path / "bench"
    for planner, seed, wins in (("cem", 0, 4), ("cem", 1, 6), ("hierarchical", 0, 9), ("hierarchical", 1, 8)):
        _fake_cell(bench, planner, seed, wins)
    page = write_page(bench, tmp_path / "docs" / "RESULTS.md")
    text = page.read_text()
    assert "| rooms | hierarchical | 0/0, 1/0 | **85%** (17/20) |" in text  # pooled over the two seeds
    assert "| rooms | cem | 0/0, 1/0 | **50%** (10/20) |" in text
    assert "budget 215 control steps, 10 episodes per cell, evaluation seeds 0" in text
    # baselines listed once per seed (and pooled once), not once per planner cell
    assert text.count("| rooms | random | 0/0, 1/0 |") == 1 and text.count("| rooms | random | 0/0 |") == 1
    for name in ("success.png", "success_vs_ms.png", "training.png"):
        assert (tmp_path / "docs" / "results" / name).stat().st_size > 0


def test_pooled_interval_narrows_with_more_seeds():
    row = {"env": "e", "goal_kind": "k", "planner": "p", "episodes": 50, "successes": 40, "success_rate": 0.8,
           "final_distance_mean": 0.0, "plan_ms_mean": 1.0, "plan_ms_p95": 1.0}
    one = pool([{**row, "seed": 0}])[0]
    two = pool([{**row, "seed": 0}, {**row, "seed": 1}])[0]
    assert two["ci_high"] - two["ci_low"] < one["ci_high"] - one["ci_low"] and two["success_rate"] == 0.8


def test_a_budget_axis_gives_each_budget_its_own_row(tmp_path):
    """planner.samples=50,300 as a grid axis: two rows per planner (not the first budget's row
    twice), the baselines once, and the pooled rows keep the planner's name for its plot line."""
    bench = tmp_path / "bench"
    for samples, wins, ms in (("50", 3, 40.0), ("300", 7, 250.0)):
        for seed in (0, 1):
            _fake_cell(bench, "cem", seed, wins, {"planner.samples": samples}, ms)
    text = write_page(bench, tmp_path / "RESULTS.md").read_text()
    assert "| rooms | cem planner.samples=50 | 0/0, 1/0 | **30%** (6/20) |" in text
    assert "| rooms | cem planner.samples=300 | 0/0, 1/0 | **70%** (14/20) |" in text
    assert text.count("| rooms | random | 0/0, 1/0 |") == 1
    pooled = json.loads((bench / "results.json").read_text())["pooled"]
    assert {r["planner_name"] for r in pooled} == {"cem", "random", "zero"}


def test_evaluation_seeds_pool_like_training_seeds(tmp_path):
    """eval.seed=0,1 as an axis: other episodes of the same model, pooled into one row (not a
    variant row per seed), the baselines of each evaluation seed kept apart."""
    bench = tmp_path / "bench"
    for eval_seed, wins in ((0, 4), (1, 6)):
        _fake_cell(bench, "cem", 0, wins, {"eval.seed": str(eval_seed)}, eval_seed=eval_seed)
    text = write_page(bench, tmp_path / "RESULTS.md").read_text()
    assert "| rooms | cem | 0/0, 0/1 | **50%** (10/20) |" in text
    assert "| rooms | random | 0/0, 0/1 | **10%** (2/20) |" in text
    assert "evaluation seeds 0, 1" in text


def test_a_page_combines_grids_run_separately(tmp_path):
    """Two benchmark folders (say one env each, run at different times) make one page with both
    commands and both sets of rows."""
    for name, planner, wins in (("a", "cem", 4), ("b", "mppi", 7)):
        _fake_cell(tmp_path / name, planner, 0, wins)
        (tmp_path / name / "grid.json").write_text(json.dumps({"fixed": ["eval.episodes=10"], "axes": [["planner", [planner]]]}))
    text = write_page([tmp_path / "a", tmp_path / "b"], tmp_path / "RESULTS.md").read_text()
    assert "| rooms | cem | 0/0 | **40%** (4/10) |" in text and "| rooms | mppi | 0/0 | **70%** (7/10) |" in text
    assert f"planner=cem bench={tmp_path / 'a'}" in text and f"planner=mppi bench={tmp_path / 'b'}" in text
    assert (tmp_path / "results" / "success_vs_ms.png").stat().st_size > 0


def test_each_page_keeps_its_plots_in_a_folder_named_after_it(tmp_path):
    """A second page (say the budget grids beside the seed grid) must not overwrite the first one's
    plots: docs/BUDGETS.md's live in docs/budgets/ and the page links them there."""
    _fake_cell(tmp_path / "a", "cem", 0, 4)
    (tmp_path / "a" / "grid.json").write_text(json.dumps({"fixed": [], "axes": [["planner", ["cem"]]]}))
    text = write_page([tmp_path / "a"], tmp_path / "BUDGETS.md").read_text()
    assert "](budgets/success_vs_ms_two-rooms.png)" in text and "](results/" not in text
    assert (tmp_path / "budgets" / "success_vs_ms_two-rooms.png").stat().st_size > 0
    assert not (tmp_path / "results").exists()


def test_a_planners_budgets_stay_together_best_planner_first(tmp_path):
    """The pooled table lists planners by their best budget's success, each planner's budgets in a
    block ordered by time per decision, so a budget grid reads planner by planner."""
    bench = tmp_path / "bench"
    for planner, samples, wins, ms in (("cem", "50", 2, 40.0), ("cem", "300", 6, 250.0),
                                       ("mppi", "50", 5, 45.0), ("mppi", "300", 4, 260.0)):
        _fake_cell(bench, planner, 0, wins, {"planner.samples": samples}, ms)
    text = write_page(bench, tmp_path / "RESULTS.md").read_text()
    pooled_table = text.split("<details>")[0]
    order = [pooled_table.index(f"| rooms | {p} planner.samples={s} |")
             for p, s in (("cem", "50"), ("cem", "300"), ("mppi", "50"), ("mppi", "300"))]
    assert order == sorted(order)  # cem (best 60%) before mppi (best 50%), cheapest budget first
    assert pooled_table.index("| rooms | random |") > order[-1]


README = """# a project

Intro that the generator must leave alone.

<!-- results from docs/RESULTS.md: copied by python -m agent.results_page; do not edit -->
| a table typed by hand | 99% |
<!-- results: end -->

<!-- results from docs/BUDGETS.md: copied by python -m agent.results_page; do not edit -->
budgets block
<!-- results: end -->

The end.
"""


def test_writing_the_page_rewrites_the_readme_block_that_names_it(tmp_path):
    """The README's table is the page's pooled rows, copied when the page is written: the default
    planner's success by both rules with its interval, the other planner and the baselines at the
    end / at any step, the episodes; the README's other text and a block naming another page stay."""
    bench = tmp_path / "bench"
    for planner, seed, wins, wins_any in (("cem", 0, 4, 5), ("cem", 1, 6, 7), ("mppi", 0, 3, 3), ("mppi", 1, 2, 4)):
        _fake_cell(bench, planner, seed, wins, successes_any=wins_any)
    (tmp_path / "README.md").write_text(README)
    write_page(bench, tmp_path / "docs" / "RESULTS.md")
    readme = (tmp_path / "README.md").read_text()
    block = readme.split("docs/RESULTS.md: copied")[1].split("<!-- results: end -->")[0]
    assert "typed by hand" not in block and "[docs/RESULTS.md](docs/RESULTS.md)" in block
    # cem 10/20 at the end, 12/20 at any step; mppi 5/20 and 7/20; random 2/20 and 4/20; zero 0/20
    assert "| two-rooms | rooms | 50% [30-70] | 60% [39-78] | 25% / 35% | 10% / 20% | 0% / 0% | 20 |" in block
    assert "| cem, at the end | cem, at any step | mppi (end / any) | random (end / any) |" in block
    assert readme.startswith("# a project\n\nIntro that the generator must leave alone.\n")
    assert "budgets block" in readme and readme.endswith("The end.\n")
    # a second page (success against compute) names no block of its own here: the table stays the first page's
    before = (tmp_path / "README.md").read_text()
    write_page(bench, tmp_path / "docs" / "OTHER.md")
    assert (tmp_path / "README.md").read_text() == before


def test_the_page_carries_the_anchors_numbers_from_one_file(tmp_path):
    """docs/anchors.yaml beside the page is written onto it as one block, before the plots, with
    each table's protocol and success rule; written again, the block is replaced, not repeated."""
    _fake_cell(tmp_path / "bench", "cem", 0, 4)
    (tmp_path / "docs").mkdir()
    anchors = Path(__file__).parents[1] / "docs" / "anchors.yaml"
    (tmp_path / "docs" / "anchors.yaml").write_text(anchors.read_text())
    page = tmp_path / "docs" / "RESULTS.md"
    write_page(tmp_path / "bench", page)
    write_page(tmp_path / "bench", page)
    text = page.read_text()
    assert text.count("## The anchors' published numbers") == 1
    assert text.index("| rooms | cem |") < text.index("## The anchors' published numbers") < text.index("## Plots")
    for table in load_anchors(anchors)["tables"]:
        assert f"- success: {table['success']}" in text and f"- protocol: {table['protocol']}" in text
        for row in table["rows"]:
            assert "| " + " | ".join("-" if v is None else str(v) for v in row) + " |" in text
    assert "| LeWM | 87 | 96 | 86 | 74 |" in text  # stable-worldmodel's row: TwoRoom, Push-T, Reacher, Cube
    assert "success at the end" in text and "success at any step (anchors' rule)" in text
    assert "(1 min elapsed; their wall times add up to 1 min" in text and "2 CPU cores" in text
    assert "bench` (finished cells: two-rooms)" in text


def test_the_page_states_the_grids_elapsed_time_apart_from_its_cells_added_up(tmp_path):
    """Cells that ran side by side (two grid processes) overlap: the page gives the span from the
    first cell's start to the last one's end, and the cells' wall times added up beside it."""
    for planner, finished in (("cem", 1_000_000_000.0), ("mppi", 1_000_000_000.0 + 30 * 60)):
        _fake_cell(tmp_path / "bench", planner, 0, 4)
        cell = tmp_path / "bench" / "cells" / cell_name([("planner", planner), ("seed", "0")]) / "cell.json"
        cell.write_text(json.dumps({**json.loads(cell.read_text()), "wall_s": 60.0 * 60, "finished": finished}))
    text = write_page(tmp_path / "bench", tmp_path / "docs" / "RESULTS.md").read_text()
    assert "(90 min elapsed; their wall times add up to 120 min" in text


def test_an_anchors_table_without_its_success_rule_or_a_value_per_column_is_refused(tmp_path):
    bad = tmp_path / "anchors.yaml"
    bad.write_text("tables:\n  - {title: t, source: s, protocol: p, success: any step, columns: [a, b], rows: [[X, 1]]}\n")
    with pytest.raises(ValueError, match=r"table 't', row 'X' gives 1 values for 2 columns \(a, b\)"):
        load_anchors(bad)
    bad.write_text("tables:\n  - {title: t, source: s, protocol: p, columns: [a], rows: [[X, 1]]}\n")
    with pytest.raises(ValueError, match="table 't' has no success"):
        load_anchors(bad)
