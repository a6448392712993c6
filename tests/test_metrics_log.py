"""The metrics log: after a resume at step N it holds each step once, as an uninterrupted run's does."""

import csv
import json

from world_model.metrics_log import MetricsLog


def rows(folder, name="metrics"):
    """(JSON lines records, CSV rows as dicts) of the log `name` in `folder`."""
    jsonl = [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]
    with open(folder / f"{name}.csv", newline="") as f:
        return jsonl, list(csv.DictReader(f))


def test_resume_step_drops_rows_logged_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 6):  # a run checkpointed at step 3, then killed after logging steps 4 and 5
        log.log(step, {"loss": step / 10})
    log.log(3, {"held_loss": 0.3})  # a monitor row at the checkpoint step stays
    log.close()

    log = MetricsLog(tmp_path, resume_step=3)
    for step in range(4, 7):
        log.log(step, {"loss": step / 10})
    log.close()

    jsonl, table = rows(tmp_path)
    assert [r["step"] for r in jsonl] == [1, 2, 3, 3, 4, 5, 6]
    assert [int(r["step"]) for r in table] == [1, 2, 3, 3, 4, 5, 6]
    assert list(table[0]) == ["step", "loss"]  # the header survives the rewrite
    assert not list(tmp_path.glob(".*.tmp"))  # rewritten atomically, nothing left behind


def test_resume_step_zero_starts_the_logs_over_and_none_appends(tmp_path):
    log = MetricsLog(tmp_path)
    log.log(1, {"loss": 1.0})
    log.close()
    log = MetricsLog(tmp_path)  # resume_step=None: append, as before
    log.log(2, {"loss": 2.0})
    log.close()
    assert [r["step"] for r in rows(tmp_path)[0]] == [1, 2]

    log = MetricsLog(tmp_path, resume_step=0)  # a run killed before its first checkpoint starts over
    log.log(1, {"other": 5.0})
    log.close()
    jsonl, table = rows(tmp_path)
    assert jsonl == [{"step": 1, "other": 5.0}]
    assert table == [{"step": "1", "other": "5.0"}]  # the header comes from the new first record
