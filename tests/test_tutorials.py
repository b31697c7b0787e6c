"""tools/tutorials.py: a tutorial's cells run in order in one namespace, and its page shows each code cell with what
it printed and the figures it wrote; a page is rewritten only when its script changed. (The site's own tutorials
take minutes: ``make docs`` runs them; here a small one runs.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tutorials", ROOT / "tools" / "tutorials.py")
tutorials = importlib.util.module_from_spec(spec)
sys.modules["tutorials"] = tutorials
spec.loader.exec_module(tutorials)

SCRIPT = '''# %% [markdown]
# # A small tutorial
#
# Text between the cells.

# %%
x = 6 * 7
print("x is", x)

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots()
ax.plot([0, 1], [0, x])
fig.savefig("line.png")

# %% [markdown]
# The end.

# %%
print("one more:", x + 1)
'''


def test_cells_split_text_and_code():
    got = tutorials.cells(SCRIPT)
    assert [kind for kind, _ in got] == ["markdown", "code", "code", "markdown", "code"]
    assert got[0][1] == "# A small tutorial\n\nText between the cells."
    assert got[1][1] == 'x = 6 * 7\nprint("x is", x)'


def test_a_tutorial_runs_into_its_page_with_outputs_and_figures(tmp_path):
    (tmp_path / "small.py").write_text(SCRIPT)
    assert tutorials.build(folder=tmp_path) == ["small"]
    page = (tmp_path / "small.md").read_text()
    assert "```python\nx = 6 * 7" in page and "```text\nx is 42\n```" in page and "```text\none more: 43\n```" in page
    assert "![line.png](small/line.png)" in page and (tmp_path / "small" / "line.png").stat().st_size > 1000
    assert page.index("x is 42") < page.index("line.png") < page.index("The end.") < page.index("one more: 43")
    assert tutorials.build(folder=tmp_path) == []  # unchanged: not run again
    (tmp_path / "small.py").write_text(SCRIPT.replace("6 * 7", "6 * 8"))
    assert tutorials.build(folder=tmp_path) == ["small"] and "x is 48" in (tmp_path / "small.md").read_text()


def test_a_page_without_execution_says_so_and_a_failing_tutorial_stops_the_build(tmp_path):
    (tmp_path / "small.py").write_text(SCRIPT)
    tutorials.build(folder=tmp_path, execute=False)
    page = (tmp_path / "small.md").read_text()
    assert "Not executed in this build" in page and "x is 42" not in page
    (tmp_path / "broken.py").write_text("# %%\nraise RuntimeError('tutorial broke')\n")
    try:
        tutorials.build(folder=tmp_path, only=["broken"])
    except SystemExit as exc:
        assert "tutorial broke" in str(exc)
    else:
        raise AssertionError("a failing tutorial must stop the build")
    assert not (tmp_path / "broken.md").exists()
