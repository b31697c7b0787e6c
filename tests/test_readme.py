"""Every Python example in the README and on the documentation's pages runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# an example, and what the page says it prints where it says so ("It prints ...:" and a text block just after)
EXAMPLES = [(page.relative_to(ROOT), block, printed) for page in PAGES
            for block, printed in re.findall(r"```python\n(.*?)```(?:\n\nIt prints[^\n]*:\n\n```text\n(.*?)```)?",
                                             page.read_text(), flags=re.S)]
BLOCKS = [(page, block) for page, block, _ in EXAMPLES]


def test_the_readme_and_the_guide_have_examples():
    assert sum(str(page) == "README.md" for page, _ in BLOCKS) == 3
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{p}-{i}" for i, (p, _) in enumerate(BLOCKS)])
def test_example_runs(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a figure
    page, block, printed = EXAMPLES[index]
    exec(compile(block, f"{page} example {index}", "exec"), {})
    if printed:  # the output shown on the page is the example's, to the character (same seed, same result)
        assert capsys.readouterr().out.rstrip("\n") == printed.rstrip("\n")


def test_the_home_page_shows_what_its_quickstart_prints():
    assert any(str(page) == "docs/index.md" and printed for page, _, printed in EXAMPLES)
