"""Seconds from the world model loaded to the first planner decision, and peak resident memory, of
`python -m agent.run ... stage=eval` (issue 14: a light evaluation).

Runs agent.run's own entry point with the same overrides, records when `world_model.load` returns
and when the planner's first decision (PlanningPolicy.act) is called, prints one JSON line and
exits there (the rest of the evaluation is not run). "loaded_to_first_decision_s" is everything
evaluation does before it plans (envs, episodes, resets, goal encoding), in wall-clock and in
this process's CPU seconds (less sensitive to other jobs on the machine); peak resident memory is
the process's ru_maxrss at that moment. With EVAL_STARTUP_DECIDE=1 the first decision is made
too, and its seconds and the peak after it are added.

    MUJOCO_GL=egl PYTHONPATH=. python benchmarks/eval_startup.py env=reacher stage=eval \
        checkpoint=cache/models/<run>/latest eval.episodes=50 eval.videos=0 \
        hydra.run.dir=/tmp/eval-startup
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

START = time.perf_counter()
marks: dict[str, float] = {}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    import runpy

    import world_model
    from agent.policies import PlanningPolicy

    load, act = world_model.load, PlanningPolicy.act

    def timed_load(*args, **kwargs):
        model = load(*args, **kwargs)
        marks.setdefault("loaded", time.perf_counter())
        marks.setdefault("loaded_cpu", time.process_time())
        return model

    def first_act(self, *args, **kwargs):
        called, called_cpu = time.perf_counter(), time.process_time()
        report = {
            "import_to_loaded_s": round(marks["loaded"] - START, 2),
            "loaded_to_first_decision_s": round(called - marks["loaded"], 2),
            "loaded_to_first_decision_cpu_s": round(called_cpu - marks["loaded_cpu"], 2),
            "peak_rss_mb_at_first_decision": round(_peak_rss_mb()),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        if os.environ.get("EVAL_STARTUP_DECIDE") == "1":
            act(self, *args, **kwargs)
            report.update(first_decision_s=round(time.perf_counter() - called, 2),
                          peak_rss_mb_after_it=round(_peak_rss_mb()))
        print(json.dumps(report), flush=True)
        os._exit(0)  # the measurement ends here

    world_model.load = timed_load
    PlanningPolicy.act = first_act
    sys.argv = ["agent.run", *sys.argv[1:]]
    runpy.run_module("agent.run", run_name="__main__")  # as `python -m agent.run` (hydra finds configs/)


if __name__ == "__main__":
    main()
