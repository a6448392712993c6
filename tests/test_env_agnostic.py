"""agent/, world_model/ and planners/ know no env family: every env-specific name, size and
bound reaches them through envs/base.py."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Names of the reacher's internals, and the shapes a 2-D, [-1, 1] action space used to be hard-coded as.
FORBIDDEN = {
    "an env family's name": r"\breacher\b|rooms/|two-rooms|four-rooms|dm_control|suite\.load|\bpusht\b|gym_pusht|pymunk",
    "a joint or body name": r"qpos|fingertip|wrist|shoulder|\bjoint",
    "a hard-coded action size": r"action_dim\s*(:\s*int\s*)?=\s*\d|\(\s*len\(\w+\),\s*2\s*\)|\[0\.0,\s*0\.0\]",
    "hard-coded action bounds": r"uniform\(\s*-1,\s*1|full\([^)]*-1\.0|clip\([^)]*-1\.0,\s*1\.0",
}
PACKAGES = ("agent", "world_model", "planners")


def sources():
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_no_env_specifics_outside_envs(what):
    pattern = re.compile(FORBIDDEN[what], re.IGNORECASE)
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in sources() for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"{what} in env-agnostic code:\n" + "\n".join(hits)


def test_world_model_does_not_import_envs():
    pattern = re.compile(r"^\s*(import envs|from envs\b)|import_module\(.envs", re.MULTILINE)
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "world_model").rglob("*.py") if pattern.search(p.read_text())]
    assert not hits, f"world_model imports envs: {hits}"


def test_the_patterns_do_catch_what_they_forbid():
    """The grep is not vacuous: each pattern fires on a line of the kind it forbids."""
    samples = {
        "an env family's name": 'suite.load("reacher", "easy")',
        "a joint or body name": "error = qpos - goal_qpos",
        "a hard-coded action size": "return np.zeros((len(obs), 2), np.float32)",
        "hard-coded action bounds": "self.rng.uniform(-1, 1, (n, 2))",
    }
    for what, line in samples.items():
        assert re.search(FORBIDDEN[what], line, re.IGNORECASE), what
