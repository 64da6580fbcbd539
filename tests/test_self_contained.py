"""The project is self-contained: its protocol is docs/PROTOCOL.md, and nothing in it points at a
document or a folder outside the repository.

Scans every file git would commit (tracked files and untracked files that are not ignored;
binary files and `.ci/run`, the CI script that may point at data beside the checkout, are
skipped). Skips when the tree is not a git checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
SKIPPED = {".ci/run"}

# built from pieces so that this file does not match its own patterns
_SPEC = "SP" + "EC"
FORBIDDEN = (f"{_SPEC}.md", f"{_SPEC} §", f"shared/{_SPEC}")
OUTSIDE = "../" + "shared"
# recorded commands (and the data root a run recorded) may quote the folder they were run with
RECORD_DIRS = ("reports/", "results/")
RECORDED = re.compile(r"--data-root \.\./" + "shared" + r'|^\s*"root": ')
CITATION = re.compile(r"PROTOCOL §(\d+)(?:\s*[–-]\s*§?(\d+))?")
HEADING = re.compile(r"^## (\d+)\. ", re.M)


def _files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
    )
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    names = sorted({n for n in proc.stdout.decode("utf-8", "replace").split("\0") if n})
    return [n for n in names if n not in SKIPPED]


def _texts() -> dict[str, str]:
    """Path → text of every text file in `_files()` (binary and vanished files left out)."""
    out = {}
    for name in _files():
        path = REPO / name
        if not path.is_file():
            continue  # deleted in the working tree
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return _texts()


def spec_references(texts: dict[str, str]) -> list[str]:
    """'path:line: text' for every line naming the old, external protocol document."""
    return [
        f"{name}:{i}: {line.strip()}"
        for name, text in texts.items()
        for i, line in enumerate(text.splitlines(), 1)
        if any(s in line for s in FORBIDDEN)
    ]


def outside_references(texts: dict[str, str]) -> list[str]:
    """'path:line: text' for every line pointing outside the repository that is not a record
    of what was run (a command's `--data-root`, a run's recorded data root) under reports/ or
    results/."""
    bad = []
    for name, text in texts.items():
        record = name.startswith(RECORD_DIRS)
        for i, line in enumerate(text.splitlines(), 1):
            if OUTSIDE in line and not (record and RECORDED.search(line)):
                bad.append(f"{name}:{i}: {line.strip()}")
    return bad


def missing_sections(texts: dict[str, str], headings: set[int]) -> list[str]:
    """'path:line: citation' for every `PROTOCOL §N` (or §N–M) whose sections are not headings."""
    bad = []
    for name, text in texts.items():
        for i, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) else lo
                if hi < lo or any(n not in headings for n in range(lo, hi + 1)):
                    bad.append(f"{name}:{i}: {m.group(0)}")
    return bad


def protocol_headings() -> set[int]:
    return {int(n) for n in HEADING.findall(PROTOCOL.read_text(encoding="utf-8"))}


def test_protocol_document_has_sections_1_to_10():
    assert protocol_headings() == set(range(1, 11))


def test_no_reference_to_the_external_spec(texts):
    bad = spec_references(texts)
    assert not bad, "cite docs/PROTOCOL.md (PROTOCOL §N) instead:\n" + "\n".join(bad)


def test_no_path_outside_the_repository(texts):
    bad = outside_references(texts)
    assert not bad, "no path outside the repository (use --data-root DIR):\n" + "\n".join(bad)


def test_every_protocol_citation_exists(texts):
    bad = missing_sections(texts, protocol_headings())
    assert not bad, "cited sections missing from docs/PROTOCOL.md:\n" + "\n".join(bad)


def test_readme_links_the_protocol():
    assert "](docs/PROTOCOL.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_checks_catch_bad_lines():
    """Each check flags a bad line and passes its allowed forms."""
    spec = f"see ../{_SPEC}.md and {_SPEC} §3"
    assert len(spec_references({"bench/x.py": spec})) == 1
    assert outside_references({"README.md": f"--data-root {OUTSIDE}/data/celeba"})
    assert outside_references({"bench/x.py": f"{OUTSIDE}/data"})
    assert outside_references({"reports/README.md": f"the copy at {OUTSIDE}/data/celeba"})
    assert not outside_references({"reports/t.md": f"`bench run --data-root {OUTSIDE}/data`"})
    assert not outside_references({"results/r/run.json": f'  "root": "/w/{OUTSIDE}/data",'})
    p = "PROTOCOL" + " §"  # (not a citation of this file's own)
    cited = {"a.py": f"{p}2–3, {p}6 and {p}10"}
    assert missing_sections(cited, set(range(1, 10))) == [f"a.py:1: {p}10"]
    assert missing_sections({"a.py": f"{p}8-11"}, set(range(1, 10)))
