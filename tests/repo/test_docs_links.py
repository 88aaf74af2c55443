"""Repo hygiene (issue 20.1): every relative link in the README and docs/ leads somewhere: the
file exists and, for `file#anchor`, the file has that heading (GitHub's anchor rule), so the
split of the README into docs/ left no dead link."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    in_code = False
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#{1,6} (.*)", line)):
            found.add(anchor(m.group(1)))
    return found


def dead_links(page: Path) -> list[str]:
    dead = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, name = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            dead.append(f"{target} (no such file)")
        elif name and where.suffix == ".md" and name not in anchors(where):
            dead.append(f"{target} (no such heading)")
    return dead


def test_the_anchor_rule_matches_githubs() -> None:
    assert anchor("Your address (`auto`)") == "your-address-auto"
    assert anchor("2. Previews on pull requests") == "2-previews-on-pull-requests"


def test_a_dead_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n[a](#title) [b](#nope) [c](missing.md)\n")
    assert dead_links(page) == ["#nope (no such heading)", "missing.md (no such file)"]


def test_every_relative_link_in_the_readme_and_docs_leads_somewhere() -> None:
    assert {page.name: dead_links(page) for page in PAGES} == {page.name: [] for page in PAGES}


def test_the_readme_is_a_short_entry_point() -> None:
    """At most 250 lines (issue 20.1): the two commands, what is proven, and a map of docs/."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "pulumi up -s dev" in readme and "bash tests/run.sh" in readme
    for page in ("configuration", "day2", "security", "design", "development", "ways-to-use"):
        assert f"(docs/{page}.md)" in readme, page
