"""A checkpoint folder changes in one step: a save killed at any moment leaves a checkpoint that
verifies and loads, and resuming picks the newest one that does."""

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import time

import pytest
import torch
from conftest import file_size_limit

import world_model
from world_model import CheckpointError, JEPALoss, LossConfig, WorldModel, WorldModelConfig, checkpoint
from world_model.atomic import WriteError
from world_model.checkpoint import newest_verified, restore_newest, verify
from world_model.windows import WindowSampler

SIZES = dict(image_size=32, action_dim=2, dim=16, stem_channels=8, encoder_width=16, encoder_depth=1,
             encoder_heads=2, predictor_width=32, predictor_depth=1, predictor_heads=2)


def tiny_state(optimizer: bool = True):
    """A tiny model, its loss module and (unless optimizer=False) an optimizer."""
    model = WorldModel(WorldModelConfig(**SIZES))
    loss_fn = JEPALoss(LossConfig(inverse_dynamics_hidden=16), model)
    params = list(model.parameters()) + loss_fn.trainable_parameters()
    return model, loss_fn, torch.optim.AdamW(params, lr=1e-3) if optimizer else None


def save_at(folder, step, model, loss_fn, optimizer):
    """Save with every weight set to `step`, so that a loaded checkpoint shows which save it came from."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    return world_model.save(folder, model, step, loss_fn=loss_fn, optimizer=optimizer)


def assert_complete(folder, step):
    """`folder` verifies, and its weights and training state are those of the save at `step`."""
    verify(folder)
    assert world_model.read_manifest(folder)["step"] == step
    assert all(torch.all(p == step) for p in world_model.load(folder).parameters())
    assert world_model.load_training_state(folder, restore_rng=False) == step


@pytest.mark.parametrize("failing", ["model.safetensors", "training_state.pt", "checkpoint.json"])
def test_a_save_that_fails_part_way_leaves_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    folder = tmp_path / "latest"
    state = tiny_state()
    save_at(folder, 7, *state)
    real_write = checkpoint.write_bytes_atomic

    def disk_full(path, data):
        if path.name == failing:
            raise OSError(errno.EFBIG, "File too large")
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "write_bytes_atomic", disk_full)
    with pytest.raises(OSError, match="File too large"):
        save_at(folder, 8, *state)
    assert_complete(folder, 7)
    assert not list(tmp_path.glob(".latest.tmp-*"))  # the unfinished folder was removed

    monkeypatch.setattr(checkpoint, "write_bytes_atomic", real_write)
    assert save_at(folder, 9, *state) == folder / "checkpoint.json"
    assert_complete(folder, 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_a_save_past_the_file_size_limit_names_the_file_and_keeps_the_previous(tmp_path):
    folder = tmp_path / "latest"
    state = tiny_state()
    save_at(folder, 7, *state)
    weights = (folder / "model.safetensors").stat().st_size
    with file_size_limit(weights // 2), pytest.raises(WriteError) as caught:
        save_at(folder, 8, *state)
    # one line naming the file the save was writing (not its temporary folder), the cause and the remedy
    assert str(caught.value) == (
        f"cannot write {folder / 'model.safetensors'} (File too large); the file is larger than its file system or "
        "the file size limit (`ulimit -f`) allows: raise the limit")
    assert_complete(folder, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_a_save_stopped_between_its_renames_leaves_the_previous_as_prev(tmp_path, monkeypatch):
    folder = tmp_path / "latest"
    state = tiny_state()
    save_at(folder, 7, *state)
    real_replace = os.replace

    def killed(src, dst):
        if os.path.basename(src).startswith(".latest.tmp-"):  # the new folder's rename into place
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_at(folder, 8, *state)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not folder.exists()
    assert newest_verified(folder) == tmp_path / "latest.prev"
    assert_complete(tmp_path / "latest.prev", 7)
    # the next save replaces it; the .prev goes once the new folder is in place
    save_at(folder, 9, *state)
    assert_complete(folder, 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_leftover_temporary_folders_are_ignored_and_removed(tmp_path):
    folder = tmp_path / "latest"
    state = tiny_state()
    save_at(folder, 1, *state)
    stale = tmp_path / ".latest.tmp-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert newest_verified(folder) == folder
    save_at(folder, 2, *state)
    assert not stale.exists()
    assert_complete(folder, 2)


def _save_forever(folder: str, saved_once) -> None:
    """Child process: save checkpoints with growing steps into `folder` until killed, starting
    after the newest that verifies."""
    torch.set_num_threads(1)
    newest = newest_verified(folder)
    step = world_model.read_manifest(newest)["step"] if newest is not None else 0
    state = tiny_state(optimizer=False)  # building an optimizer imports torch._dynamo: 3 s per kill
    while True:
        step += 1
        save_at(folder, step, *state)
        saved_once.set()


def test_sigkill_at_random_moments_always_leaves_a_checkpoint_that_verifies(tmp_path):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "world_model", __name__])  # each kill then costs a fork, not imports
    folder = tmp_path / "latest"
    rng = random.Random(0)
    last = 0
    for _ in range(8):
        saved_once = ctx.Event()
        child = ctx.Process(target=_save_forever, args=(str(folder), saved_once), daemon=True)
        child.start()
        assert saved_once.wait(timeout=60), "the saving process never finished a save"
        # one save takes a few milliseconds: this lands anywhere in one of the next few saves
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        newest = newest_verified(folder)
        assert newest is not None, f"no checkpoint verifies after a kill: {sorted(os.listdir(tmp_path))}"
        step = world_model.read_manifest(newest)["step"]
        assert step > last  # the child finished a save after the previous kill
        assert_complete(newest, step)
        last = step
    restore_newest(folder)
    save_at(folder, last + 1, *tiny_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # leftovers of the kills are gone


def test_restore_newest_moves_a_verified_prev_back_and_keeps_the_broken_one_aside(tmp_path):
    folder = tmp_path / "latest"
    state = tiny_state()
    save_at(folder, 3, *state)
    assert restore_newest(folder) is None  # latest/ verifies: nothing to do
    # what the old save left when killed between its writes: new weights under the old manifest
    shutil.copytree(folder, tmp_path / "latest.prev")
    (folder / "model.safetensors").write_bytes(b"new weights, cut short")

    note = restore_newest(folder)
    assert "latest/ does not verify" in note and "latest.prev/ at step 3" in note
    assert_complete(folder, 3)
    assert not (tmp_path / "latest.prev").exists() and (tmp_path / "latest.unverified").exists()


def test_restore_newest_refuses_when_nothing_verifies(tmp_path):
    folder = tmp_path / "latest"
    save_at(folder, 3, *tiny_state())
    (folder / "checkpoint.json").write_text("{")
    with pytest.raises(CheckpointError, match="neither latest/ nor latest.prev/ .* verifies"):
        restore_newest(folder)
    assert newest_verified(folder) is None


def test_resume_after_a_save_killed_part_way_continues_from_the_previous_checkpoint(
    tiny_data, tmp_path, monkeypatch, capsys
):
    from test_train import tiny_train_config, weights

    from world_model.train import train

    whole = train(tiny_train_config(tiny_data, tmp_path / "whole"), tiny_data[2], progress=False)

    real_sample = WindowSampler.sample
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint and one more step that is lost
            raise KeyboardInterrupt
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(WindowSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tiny_data, tmp_path / "cut"), tiny_data[2], progress=False)
    monkeypatch.setattr(WindowSampler, "sample", real_sample)
    # the step-3 checkpoint is latest.prev and latest/ is a half-written folder, as a kill leaves it
    cut = tmp_path / "cut"
    os.rename(cut / "latest", cut / "latest.prev")
    (cut / "latest").mkdir()
    (cut / "latest" / "model.safetensors").write_bytes(b"half")
    with pytest.raises(RuntimeError, match="resume=true"):  # still an unfinished run
        train(tiny_train_config(tiny_data, cut), tiny_data[2], progress=False)
    os.rename(cut / "latest", tmp_path / "half")  # and with only latest.prev left
    with pytest.raises(RuntimeError, match="resume=true"):
        train(tiny_train_config(tiny_data, cut), tiny_data[2], progress=False)
    os.rename(tmp_path / "half", cut / "latest")

    capsys.readouterr()
    resumed = train(tiny_train_config(tiny_data, cut, resume=True), tiny_data[2], progress=False)
    out = capsys.readouterr().out
    assert "latest/ does not verify" in out and "latest.prev/ at step 3" in out
    assert f"resuming {cut} at step 3" in out
    assert json.loads((resumed / "summary.json").read_text())["step"] == 6
    a, b = weights(whole / "latest"), weights(resumed / "latest")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_atomically_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    """mkstemp makes 0600 files; a cache shared with colleagues needs 0666 & ~umask, like the shards."""
    from world_model.atomic import write_bytes_atomic

    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "manifest.json", b"{}")
        (tmp_path / "plain.json").write_bytes(b"{}")
        os.umask(0o077)
        write_bytes_atomic(tmp_path / "private.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "manifest.json").read_bytes() == b"{}"


def test_a_temporary_left_by_a_killed_write_is_removed_by_the_next_write_of_that_file(tmp_path):
    from world_model.atomic import write_bytes_atomic

    # what a SIGKILL during write_bytes_atomic(manifest.json) leaves: its temporary, half written
    (tmp_path / ".manifest.json.0a1b2c3d.tmp").write_bytes(b'{"half')
    (tmp_path / ".manifest.json.old.0a1b2c3d.tmp").write_bytes(b"another file's")  # not manifest.json's
    write_bytes_atomic(tmp_path / "manifest.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".manifest.json.old.0a1b2c3d.tmp", "manifest.json"]
