"""torch.profiler's operators by self CPU time, as rows and as a table (benchmarks/train_profile.py,
benchmarks/plan_profile.py).

Self CPU time is the wall time an operator spends on the calling thread outside the operators it
calls; with intra-op threads it is still the caller's wall time, not CPU seconds summed over cores.
Python between operators is in no row.
"""

from __future__ import annotations

import torch


def top_ops(prof: torch.profiler.profile, count: int = 15, per: int = 1, skip: frozenset[str] | set[str] = frozenset()
            ) -> tuple[list[dict], float]:
    """The `count` operators of `prof` with the most self CPU time, and the self CPU seconds of all
    its events but those named in `skip` (the caller's own record_function ranges). `per` divides
    times and calls (the number of steps or decisions profiled).

    Returns:
        ([{"op", "self_s", "share", "calls"}], total_self_s); self_s and calls per step, share of total_self_s
    """
    events = [e for e in prof.key_averages() if e.key not in skip]
    total_us = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    out = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6 / per,
            "share": e.self_cpu_time_total / total_us if total_us else 0.0, "calls": e.count / per} for e in rows]
    return out, total_us / 1e6 / per


def ops_table(rows: list[dict], total_s: float, unit: str = "step") -> str:
    """The rows of top_ops as aligned text."""
    width = max([len("operator")] + [len(r["op"][:60]) for r in rows])
    time_head, calls_head = f"self ms/{unit}", f"calls/{unit}"
    tw, cw = max(len(time_head), 10), max(len(calls_head), 8)
    lines = [f"{'operator':<{width}}  {time_head:>{tw}}  {'share':>6}  {calls_head:>{cw}}"]
    for r in rows:
        lines.append(f"{r['op'][:60]:<{width}}  {1000 * r['self_s']:>{tw}.2f}  {100 * r['share']:>5.1f}%  "
                     f"{r['calls']:>{cw}.1f}")
    shown = sum(r["self_s"] for r in rows)
    lines.append(f"{'(these ' + str(len(rows)) + ' / all ops)':<{width}}  {1000 * shown:>{tw}.2f}  "
                 f"{100 * shown / total_s if total_s else 0.0:>5.1f}%  of {1000 * total_s:.2f} ms self CPU per {unit}")
    return "\n".join(lines)
