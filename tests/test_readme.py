"""The README is a front door: short, the pitch and the two commands first, every link alive, and
its results table the results page's, cell for cell (agent/results_page.py copies it; nobody types it).

The page is read here with a parser of this file's own, not the generator's, so a generator that
copies the wrong cell fails too."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
START = re.compile(r"<!-- results from (\S+): copied by python -m agent\.results_page; do not edit -->")


def _table(lines: list[str]) -> list[dict[str, str]]:
    """A markdown table's rows as {header: cell} (the separator line skipped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    return [dict(zip(rows[0], r)) for r in rows[2:]]


def _page_pooled(text: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """(env, goal kind, planner) -> the pooled row of a results page: the first table under each
    `### <env>` heading, before the per-seed details and before the anchors' and plots' sections."""
    ours = text.split("\n## ")[0]
    out = {}
    for section in ours.split("\n### ")[1:]:
        env, body = section.split("\n", 1)
        for row in _table(body.split("<details>")[0].splitlines()):
            out[(env.strip(), row["goal kind"], row["planner"])] = row
    return out


def _end(row: dict) -> tuple[str, str]:
    """(rate, episodes) of a pooled row's success at the end, e.g. ("75%", "20") from "**75%** (15/20)"."""
    cell = row.get("success at the end", row.get("success"))
    rate, _, episodes = re.fullmatch(r"\*\*(\d+%)\*\* \((\d+)/(\d+)\)", cell).groups()
    return rate, episodes


def _any(row: dict) -> str | None:
    """A pooled row's success at any step ("80% [58-92]"), or None where the page has none."""
    cell = next((v for k, v in row.items() if k.startswith("success at any step")), "not recorded")
    return None if cell == "not recorded" else cell


def test_the_readme_table_matches_the_results_page_cell_for_cell():
    readme = README.read_text()
    found = START.search(readme)
    assert found, "README.md has no results block; python -m agent.results_page --page docs/RESULTS.md writes it"
    page = ROOT / found[1]
    pooled = _page_pooled(page.read_text())
    block = readme[found.end():readme.index("<!-- results: end -->", found.end())]
    rows = _table(block.splitlines())
    assert rows, "the README's results block has no table"
    header = list(rows[0])
    default = header[2].removesuffix(", at the end")
    assert header[:4] == ["env", "goal kind", f"{default}, at the end", f"{default}, at any step"]
    assert header[-3:] == ["random (end / any)", "do nothing (end / any)", "episodes per row"]
    others = [h.removesuffix(" (end / any)") for h in header[4:-3]]
    assert {(r["env"], r["goal kind"]) for r in rows} == {(env, kind) for env, kind, _ in pooled}, \
        "the README and the page list other envs or goal kinds"
    mismatches = []
    for r in rows:
        key = (r["env"], r["goal kind"])
        mine = pooled[(*key, default)]
        rate, episodes = _end(mine)
        expected = {header[2]: f"{rate} [{mine['95% CI'].removesuffix('%')}]", header[3]: _any(mine) or "-",
                    "episodes per row": episodes}
        for name, column in [*zip(others, header[4:-3]), ("random", header[-3]), ("zero", header[-2])]:
            row = pooled.get((*key, name))
            any_rate = _any(row).split(" ")[0] if row and _any(row) else "-"
            expected[column] = f"{_end(row)[0]} / {any_rate}" if row else "-"
        mismatches += [f"{key} {column}: README {r[column]!r}, page {value!r}"
                       for column, value in expected.items() if r[column] != value]
    assert not mismatches, "the README's results table differs from the page (rerun python -m agent.results_page " \
                           "--page docs/RESULTS.md):\n" + "\n".join(mismatches)


def test_the_readme_is_a_front_door():
    """At most ~150 lines; the pitch, then the two commands, before any other section; every link
    to a file of the repository points at one that exists."""
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move details to a page under docs/"
    sections = [line for line in lines if line.startswith("## ")]
    assert sections[0] == "## Two commands"
    commands = text.split("## Two commands")[1].split("\n## ")[0]
    assert "make run" in commands and "make test" in commands
    assert "JEPA world model" in text.split("## ")[0]  # the pitch comes first
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links and not [link for link in links if "://" not in link and not (ROOT / link).exists()]
