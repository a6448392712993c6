"""Collection and loading of offline agent video: round trip, determinism, resume, corruption."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import report_lines
from hydra import compose, initialize_config_dir

import envs
from agent.collect import CollectConfig, DataConfig, collect, identity
from agent.parts import merge, parse_shard_range
from world_model.atomic import NotWritable
from world_model.dataset import Dataset, DatasetError

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(out, **overrides) -> CollectConfig:
    data = DataConfig(episodes=4, steps=6, episodes_per_shard=2, workers=1, out=str(out))
    for key, value in overrides.items():
        setattr(data, key, value)
    return CollectConfig(env={"name": "reacher", "image_size": 16, "action_repeat": 5}, data=data)


def collect_cfg(cfg: CollectConfig, progress: bool = False, shards=None) -> Path:
    return collect(cfg.env, cfg.data, cfg.cache_root, progress=progress, shards=shards)


def merge_cfg(cfg: CollectConfig) -> Path:
    return merge(Path(cfg.data.out), identity(cfg.env, cfg.data), cfg.data)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return collect_cfg(tiny_config(tmp_path_factory.mktemp("ds") / "data"))


def file_hashes(root: Path) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    return {(s["name"], f): m["sha256"] for s in manifest["shards"] for f, m in s["files"].items()}


def test_round_trip_matches_the_simulator(tiny_dataset):
    ds = Dataset(tiny_dataset)
    assert ds.num_episodes == 4 and list(ds.episode_lengths) == [7] * 4
    assert ds.image_size == 16 and ds.action_dim == 2 and ds.env_name == "reacher"
    episode = ds.episode(3)
    assert episode.frames.shape == (7, 16, 16, 3) and episode.frames.dtype == np.uint8
    assert isinstance(episode.frames.base, np.memmap) or isinstance(episode.frames, np.memmap)
    assert np.all(episode.actions[-1] == 0) and np.all(np.abs(episode.actions) <= 1)
    assert episode.states.shape == (7, 6) and episode.probe.shape == (7, 6) and episode.probe.dtype == np.float32
    assert set(episode.extras) == {"target_pos"} and episode.extras["target_pos"].shape == (2,)
    assert ds.probe_groups == {k: list(v) for k, v in envs.REGISTRY["reacher"][0].probe_groups.items()}
    # Replaying the stored start state and actions reproduces every stored frame, state and probe target.
    env = envs.make("reacher", image_size=16, action_repeat=5)
    obs, _ = env.reset(seed=0, options={"physics_state": episode.states[0, :4], "target_pos": episode.extras["target_pos"]})
    np.testing.assert_array_equal(obs["pixels"], episode.frames[0])
    np.testing.assert_array_equal(env.get_sim_state(), episode.states[0])
    np.testing.assert_array_equal(env.probe_targets(), episode.probe[0])
    for t in range(6):
        obs, *_ = env.step(episode.actions[t])
        np.testing.assert_array_equal(obs["pixels"], episode.frames[t + 1])
        np.testing.assert_array_equal(env.get_sim_state(), episode.states[t + 1])
        np.testing.assert_array_equal(obs["proprio"], episode.proprio[t + 1])
        np.testing.assert_array_equal(env.probe_targets(), episode.probe[t + 1])
    env.close()


def test_manifest_records_versions_shapes_and_config(tiny_dataset):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["complete"]
    assert manifest["versions"]["mujoco"] == envs.MUJOCO_VERSION
    assert manifest["versions"]["dm_control"] == envs.DM_CONTROL_VERSION
    assert manifest["env"]["config"]["image_size"] == 16 and manifest["env"]["name"] == "reacher"
    assert manifest["env"]["action_repeat"] == 5
    assert manifest["env"]["action_low"] == [-1.0, -1.0] and manifest["env"]["action_high"] == [1.0, 1.0]
    assert manifest["env"]["probe_groups"] == {"joints": ["sin_shoulder", "cos_shoulder", "sin_wrist", "cos_wrist"],
                                               "fingertip": ["tip_x", "tip_y"]}
    assert manifest["arrays"]["frames"] == {"dtype": "uint8", "row_shape": [16, 16, 3]}
    assert manifest["arrays"]["states"] == {"dtype": "float64", "row_shape": [6]}
    assert manifest["arrays"]["probe"] == {"dtype": "float32", "row_shape": [6]}
    assert manifest["arrays"]["extra_target_pos"] == {"dtype": "float64", "row_shape": [2]}
    assert len(manifest["shards"]) == 2


def test_workers_do_not_change_the_data(tiny_dataset, tmp_path):
    parallel = collect_cfg(tiny_config(tmp_path / "p", workers=2))
    assert file_hashes(parallel) == file_hashes(tiny_dataset)


def test_collected_twice_is_reused(tiny_dataset, capsys):
    before = (tiny_dataset / "manifest.json").stat().st_mtime_ns
    collect_cfg(tiny_config(tiny_dataset))
    assert "already complete" in capsys.readouterr().out
    assert (tiny_dataset / "manifest.json").stat().st_mtime_ns == before


def test_other_config_in_same_folder_is_refused(tiny_dataset):
    with pytest.raises(DatasetError, match="different config"):
        collect_cfg(tiny_config(tiny_dataset, seed=1))


def test_resume_after_kill_gives_the_uninterrupted_data(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "agent.collect", "env=reacher", "env.image_size=16", "data.episodes=16",
            "data.steps=20", "data.episodes_per_shard=2", "data.workers=1", f"data.out={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        manifest = out / "manifest.json"
        if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"], "collection finished before it was killed; the test proves nothing"
    with pytest.raises(DatasetError, match="incomplete"):
        Dataset(out)

    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = Dataset(out)
    assert resumed.num_episodes == 16
    # Shards written before the kill were kept, not rewritten.
    kept = {(s["name"], f): m["sha256"] for s in partial["shards"] for f, m in s["files"].items()}
    assert kept.items() <= file_hashes(out).items()
    reference = collect_cfg(tiny_config(tmp_path / "whole", episodes=16, steps=20, episodes_per_shard=2))
    assert file_hashes(out) == file_hashes(reference)
    assert not list(out.glob("*.tmp"))


def _file_size_limit(limit: int):
    """preexec_fn: files may grow to `limit` bytes; a write past it fails with EFBIG, as on a full
    disk it fails with ENOSPC (SIGXFSZ ignored, or it would kill the process instead)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_names_the_file_and_the_cause_and_a_rerun_completes(tiny_dataset, tmp_path):
    out = tmp_path / "limited"
    args = [sys.executable, "-m", "agent.collect", "env=reacher", "env.image_size=16", "data.episodes=4",
            "data.steps=6", "data.episodes_per_shard=2", "data.workers=1", f"data.out={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # 6000 bytes: room for the manifest, not for a shard's 10880-byte frames.npy
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env,
                          preexec_fn=_file_size_limit(6000))
    assert done.returncode == 1
    # one line, no traceback
    assert report_lines(done.stderr) == [
        f"error: collection stopped: cannot write {out / 'shard-00000.tmp' / 'frames.npy'} (File too large); "
        "the file is larger than its file system or the file size limit (`ulimit -f`) allows: raise the limit, or "
        "point cache_root (or data.out) at another disk, then run the same command again: it resumes after the last "
        "whole shard"], done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["shards"] == []
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # the partial shard was removed
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Dataset(out).num_episodes == 4 and file_hashes(out) == file_hashes(tiny_dataset)


def test_a_split_collection_merged_equals_the_unsplit_one(tiny_dataset, tmp_path):
    # two machines: each collects its shard range into its own folder; both are copied into one
    shutil.copytree(collect_cfg(tiny_config(tmp_path / "a"), shards=(0, 1)), tmp_path / "merged")
    shutil.copytree(collect_cfg(tiny_config(tmp_path / "b"), shards=(1, 2)), tmp_path / "merged", dirs_exist_ok=True)
    merged = tmp_path / "merged"
    with pytest.raises(DatasetError, match=r"parts of a split collection .* merge=true"):
        Dataset(merged)  # not a dataset until merged
    merge_cfg(tiny_config(merged))
    # the same manifest, byte for byte, and files that match its hashes: the same dataset
    assert (merged / "manifest.json").read_bytes() == (tiny_dataset / "manifest.json").read_bytes()
    assert file_hashes(merged) == file_hashes(tiny_dataset)
    assert Dataset(merged).num_episodes == 4  # every file hashed against the merged manifest
    assert not list(merged.glob("part-*.json"))


def test_merge_refuses_a_missing_range_an_altered_file_and_another_config(tmp_path):
    root = tmp_path / "d"
    collect_cfg(tiny_config(root, episodes=6), shards=(0, 1))
    with pytest.raises(DatasetError, match=r"shards 1:3 of .* are in no part; .* shard_range=A:B"):
        merge_cfg(tiny_config(root, episodes=6))
    collect_cfg(tiny_config(root, episodes=6), shards=(1, 3))
    path = root / "shard-00002" / "frames.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"shard-00002/frames\.npy has sha256 .* shard_range=2:3"):
        merge_cfg(tiny_config(root, episodes=6))
    with pytest.raises(DatasetError, match=r"part-00000-00001\.json was collected with another config \(seed: 0 vs 1\)"):
        merge_cfg(tiny_config(root, episodes=6, seed=1))
    assert not (root / "manifest.json").exists()


@pytest.mark.parametrize("text", ["0:3", "2:1", "1", "a:b", "-1:2"])
def test_a_shard_range_outside_the_dataset_is_refused(text):
    with pytest.raises(ValueError, match=rf"shard_range={text}: give A:B with 0 <= A < B <= 2 .* make 2 shards"):
        parse_shard_range(text, DataConfig(episodes=4, episodes_per_shard=2))
    assert parse_shard_range("1:2", DataConfig(episodes=4, episodes_per_shard=2)) == (1, 2)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_altered_byte_is_refused(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path / "d")
    path = root / "shard-00001" / "frames.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"shard-00001/frames\.npy has sha256 .* was changed; delete"):
        Dataset(root)


def test_truncated_file_is_refused(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path / "d")
    path = root / "shard-00000" / "actions.npy"
    os.truncate(path, path.stat().st_size - 8)
    with pytest.raises(DatasetError, match=r"actions\.npy has \d+ bytes but its manifest says \d+: it was truncated"):
        Dataset(root)


def test_missing_dataset_says_how_to_collect(tmp_path):
    with pytest.raises(DatasetError, match=r"python -m agent\.collect env=<name>"):
        Dataset(tmp_path / "nothing")


def test_collect_config_composes_from_yaml():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        from agent.collect import _register_configs

        _register_configs()
        cfg = compose("collect", overrides=["env=reacher-hard", "data.episodes=3", "shard_range=0:40"])
    assert cfg.env.name == "reacher-hard" and cfg.data.episodes == 3 and cfg.env.action_repeat == 5
    assert cfg.shard_range == "0:40" and cfg.merge is False
    assert len(cfg.data.behaviour.mode_weights) == 3  # configs/data/reacher-hard.yaml, picked by the env's name
    for typo in ("data.episodez=3", "episodez=3"):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            with pytest.raises(Exception, match="episodez"):
                compose("collect", overrides=[typo])


def test_collecting_into_a_read_only_cache_says_which_folder_and_what_to_do(tmp_path, read_only):
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(cache)
    with pytest.raises(DatasetError, match=rf"^collection stopped: cannot write {cache}/data \(Permission denied\); "
                                           r"you have no write permission there: get it, or point cache_root \(or "
                                           r"data.out\) at another disk"):
        collect_cfg(tiny_config(cache / "data"))
    assert list(cache.iterdir()) == []


def test_an_unfinished_dataset_in_a_read_only_folder_is_refused_before_collecting(tmp_path, read_only):
    out = collect_cfg(tiny_config(tmp_path / "data"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(complete=False, shards=manifest["shards"][:1])  # as a killed collection leaves it
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(out / manifest["shards"][0]["name"].replace("00000", "00001"))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    read_only(out)
    with pytest.raises(NotWritable, match=rf"^cannot write the dataset's shards: {out} is not writable \(you have no "
                                          r"write permission there\); point cache_root \(or data.out\) at a folder "
                                          r"you can write to$"):
        collect_cfg(tiny_config(out))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
