"""The README stays a front door, and the README and docs describe the software as it is.

* README.md has at most 300 lines (the details live in docs/);
* README.md and docs/*.md carry no issue numbers ("issue 18", "issues 17 + 19", "#12") and no
  account of earlier versions ("previous session", "the old output") — history belongs in
  git log. Links to another project's tracker (a URL) are allowed;
* every doc the README points to exists, and the README's set-up test command is the one CI
  runs (``make test``, .ci/run).

Negative controls: the same checks flag a text with an issue number or a history phrase.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300

#: "issue 18", "Issue 19", "issues 17 + 19", "issue-19", "#12" (not inside a URL or a colour)
ISSUE = re.compile(r"\bissues?[ -]?\d+|(?<![\w/&])#\d+\b", re.I)
HISTORY = re.compile(r"\b(this|previous|earlier|an earlier|that) session\b|\bold output\b|"
                     r"\bpreviously\b|\bused to\b", re.I)


def offending(text, pattern):
    """(line number, line) of every line of ``text`` matching ``pattern``."""
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES})"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_no_issue_numbers_or_history(path):
    text = path.read_text()
    assert not offending(text, ISSUE), f"{path.name}: issue numbers {offending(text, ISSUE)}"
    assert not offending(text, HISTORY), f"{path.name}: history {offending(text, HISTORY)}"


def test_patterns_catch_what_they_should():
    for bad in ("as in issue 18", "Issues 17 + 19:", "the issue-19 goals", "see #12",
                "the previous session's run", "the old output printed", "it used to fail"):
        assert offending(bad, ISSUE) or offending(bad, HISTORY), bad
    for good in ("https://github.com/numba/numba/issues/10128", 'colour "#0072B2"',
                 "an issue with the step", "§4.4", "tested in one session of pytest"):
        assert not offending(good, ISSUE), good


def anchors(path):
    """GitHub's anchors of the headings of a markdown file."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_links_exist_and_test_command_is_ci():
    for doc in (README, *DOCS):
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", doc.read_text()):
            path = (doc.parent / target).resolve() if target else doc
            assert path.exists(), f"{doc.name} links to missing {target}"
            assert not anchor or anchor in anchors(path), f"{doc.name}: no #{anchor} in {path.name}"
    text = README.read_text()
    assert "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
