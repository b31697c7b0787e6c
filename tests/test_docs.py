"""The documentation site builds without a warning (mkdocs build --strict), every README section is on a page,
and the API pages are read from the docstrings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("mkdocs", reason="the docs extra (pip install 'droplab[docs]') is not installed")
pytest.importorskip("mkdocstrings", reason="the docs extra (pip install 'droplab[docs]') is not installed")
sys.path.insert(0, str(ROOT / "tools"))
import docs_hooks  # noqa: E402
from griffe_doctest import fence_doctests  # noqa: E402


def test_the_site_builds_strict_with_every_page(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    for page in ("index.html", "tour/index.html", "reproduce/index.html", "cli/index.html",
                 "results/index.html", "api/ensemble/index.html", "api/metrics/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "ensemble" / "index.html").read_text()
    assert "monte_carlo" in api and "PredictiveStatistics" in api  # rendered from the docstrings
    assert "language-pycon" in (site / "api" / "droplab" / "index.html").read_text()  # doctests as code
    assert (site / "report.png").is_file()  # the README's figures travel with its pages


def test_every_readme_section_lands_on_a_page():
    readme = (ROOT / "README.md").read_text()
    pages = docs_hooks.page_texts(readme)
    sections = docs_hooks.readme_sections(readme)
    for name, body in sections.items():
        first = body.strip().splitlines()[0] if body.strip() else ""
        assert any(first in text for text in pages.values()), name
    with pytest.raises(ValueError, match=r"README sections \['Brand new'\] are on no page"):
        docs_hooks.page_texts(readme + "\n## Brand new\n\ntext\n")
    # a "## " inside fenced code is not a section
    assert "Inside" not in docs_hooks.readme_sections("intro\n```\n## Inside\n```\n## Real\nbody\n")


def test_doctest_lines_become_code_blocks():
    text = "Prose.\n\n>>> 1 + 1\n2\n\nMore prose."
    assert fence_doctests(text) == "Prose.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nMore prose."
    assert fence_doctests("    >>> x\n    1") == "    ```pycon\n    >>> x\n    1\n    ```"
