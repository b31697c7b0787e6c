"""The documentation site builds without a warning (mkdocs build --strict), every guide page is in its
navigation, and the API pages are read from the docstrings."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("mkdocs", reason="the docs extra (pip install 'droplab[docs]') is not installed")
pytest.importorskip("mkdocstrings", reason="the docs extra (pip install 'droplab[docs]') is not installed")
sys.path.insert(0, str(ROOT / "tools"))
from griffe_doctest import fence_doctests  # noqa: E402


def test_the_site_builds_strict_with_every_page(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    for page in ("index.html", "training/index.html", "estimators/index.html", "any-model/index.html",
                 "reproduce/index.html", "sweeps/index.html", "cli/index.html",
                 "results/index.html", "api/ensemble/index.html", "api/metrics/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "ensemble" / "index.html").read_text()
    assert "monte_carlo" in api and "PredictiveStatistics" in api  # rendered from the docstrings
    assert "language-pycon" in (site / "api" / "droplab" / "index.html").read_text()  # doctests as code
    assert (site / "report.png").is_file()  # the report's figure, on the reproduction page


def test_every_guide_page_is_in_the_navigation_and_the_readme_links_resolve():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f" {page.name}" in config, f"{page.name} is not in mkdocs.yml's nav"
    for target in re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text()):
        assert (ROOT / target).is_file(), target


def test_doctest_lines_become_code_blocks():
    text = "Prose.\n\n>>> 1 + 1\n2\n\nMore prose."
    assert fence_doctests(text) == "Prose.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nMore prose."
    assert fence_doctests("    >>> x\n    1") == "    ```pycon\n    >>> x\n    1\n    ```"
