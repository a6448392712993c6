"""Summaries of evaluated episodes: success with a Wilson interval, planning time, the table."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound at 0% and 100%, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval always holds p; rounding can put a bound a hair past it at 0 or n successes
    # (100 of 100 gave an upper bound below 1.0, a negative error bar on the results page's plot)
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def summarize(records: list[dict]) -> dict:
    """One row for the records of one (protocol, env, policy): success at the end of the budget
    (success_rate, ci95) and at any control step within it (success_any_rate, ci95_any: the
    anchors' rule)."""
    n = len(records)
    wins = sum(r["success"] for r in records)
    low, high = wilson_interval(wins, n)
    wins_any = sum(r["success_any"] for r in records)
    plans = np.array([ms for r in records for ms in r["plan_ms"] if ms > 0])
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else float("nan"),
        "ci95": [low, high],
        "successes_any": wins_any,
        "success_any_rate": wins_any / n if n else float("nan"),
        "ci95_any": list(wilson_interval(wins_any, n)),
        "final_distance_mean": float(np.mean([r["final_distance"] for r in records])) if n else float("nan"),
        "plan_ms_mean": float(plans.mean()) if plans.size else 0.0,
        "plan_ms_p95": float(np.percentile(plans, 95)) if plans.size else 0.0,
        "wall_s_per_episode": float(np.mean([r["wall_s"] for r in records])) if n else float("nan"),
    }


def table(rows: list[dict]) -> str:
    """Fixed-width results table: "success" at the end of the budget, "any step" at any control
    step within it (the anchors' rule)."""
    head = (f"{'protocol':<10}{'env':<14}{'policy':<9}{'success':>8}  {'95% CI':<13}{'any step':>8}  {'95% CI':<13}{'dist':>8}"
            f"{'plan ms':>9}{'p95 ms':>9}{'s/ep':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = f"[{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}%]"
        ci_any = f"[{100 * r['ci95_any'][0]:.0f}-{100 * r['ci95_any'][1]:.0f}%]"
        lines.append(
            f"{r['protocol']:<10}{r['env']:<14}{r['policy']:<9}{100 * r['success_rate']:>7.0f}%  {ci:<13}"
            f"{100 * r['success_any_rate']:>7.0f}%  {ci_any:<13}"
            f"{r['final_distance_mean']:>8.3f}{r['plan_ms_mean']:>9.0f}{r['plan_ms_p95']:>9.0f}{r['wall_s_per_episode']:>7.1f}"
        )
    return "\n".join(lines)
