import contextlib
import os
import re
import resource
import signal

# Headless rendering for every test process (spawned collection workers inherit it).
os.environ.setdefault("MUJOCO_GL", "egl")
# Under pytest-xdist (`make test` runs 2 workers) each worker gets its share of the cores for torch,
# set before torch is first imported: two workers with two threads each on 2 cores spent half their
# CPU time waiting on each other, and the suite took as long as in one process (docs/USAGE.md).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest

# A world model small enough to train a few steps in about a second on 2 cores. image_size is set
# (it must match the dataset's) and action_dim is left to training, which takes the dataset's.
TINY_MODEL = dict(image_size=32, dim=16, stem_channels=8, encoder_width=16, encoder_depth=1, encoder_heads=2,
                  predictor_width=32, predictor_depth=1, predictor_heads=2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(env node, DataConfig, dataset folder) of a 6-episode, 32 px reacher dataset, collected once
    per test session."""
    from agent.collect import DataConfig, collect

    env = {"name": "reacher", "image_size": 32, "action_repeat": 5}
    data = DataConfig(episodes=6, steps=12, episodes_per_shard=3, workers=1,
                      out=str(tmp_path_factory.mktemp("tiny") / "data"))
    root = collect(env, data, progress=False)
    return env, data, root


@pytest.fixture
def read_only(monkeypatch):
    """read_only(folder): nothing can be created under `folder` from now on, as in a cache folder
    without write permission. chmod 0555 for an ordinary user; root writes through any mode, so
    for root the calls that create files and folders (os.open with O_CREAT, os.mkdir) fail under
    `folder` with EACCES, as they do for a user without permission."""
    import errno
    from pathlib import Path

    chmodded = []

    def apply(folder: Path) -> None:
        folder = Path(folder).resolve()
        if os.geteuid() != 0:
            folder.chmod(0o555)
            chmodded.append(folder)
            return
        real_open, real_mkdir = os.open, os.mkdir

        def refused(path) -> bool:
            return Path(os.fsdecode(path)).resolve().is_relative_to(folder)

        def denied(path):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

        def open_(path, flags, *args, **kwargs):
            if flags & os.O_CREAT and refused(path):
                raise denied(path)
            return real_open(path, flags, *args, **kwargs)

        def mkdir_(path, *args, **kwargs):
            if refused(path):
                if os.path.exists(path):  # what mkdir says first, writable or not
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
                raise denied(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir_)

    yield apply
    for folder in chmodded:
        folder.chmod(0o755)  # so pytest can remove it


def flip_last_byte(path, mask: int = 1) -> None:
    """Changes the file at `path` in place: its last byte XOR `mask` (a tampered or damaged file)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= mask
    path.write_bytes(bytes(data))


@contextlib.contextmanager
def file_size_limit(limit: int):
    """In this process, until the block ends, a write that would make a file larger than `limit`
    bytes fails with EFBIG, as one on a full disk fails with ENOSPC (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def report_lines(stderr: str) -> list[str]:
    """The lines of a command's stderr that are not progress bars (tqdm redraws them after \\r)."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not re.search(r"\d+%\|", line)]


def file_size_limit_in_child(limit: int):
    """preexec_fn of a subprocess: its writes past `limit` bytes fail with EFBIG, as on a full disk
    with ENOSPC (SIGXFSZ ignored, or it would kill the process instead)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def record_behaviour_actions(env, monkeypatch) -> list:
    """Makes env.behaviour_policy hand out policies whose every action is appended to the list
    returned, so a test can replay what sample_episode's behaviour did."""
    actions = []
    make_policy = env.behaviour_policy

    def recording_policy(rng, **settings):
        policy = make_policy(rng, **settings)
        act = policy.act
        policy.act = lambda obs: actions.append(act(obs)) or actions[-1]
        return policy

    monkeypatch.setattr(env, "behaviour_policy", recording_policy)
    return actions
