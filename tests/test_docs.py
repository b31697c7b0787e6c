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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built once for this module's tests (mkdocs build --strict: a warning fails it)."""
    site = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    return site


# every public module: its __all__ is what the reference must show (droplab.cli is the command line: docs/cli.md)
PUBLIC_MODULES = ("droplab", "droplab.net", "droplab.nn", "droplab.modes", "droplab.gates", "droplab.transfer",
                  "droplab.ensemble", "droplab.metrics", "droplab.means", "droplab.theory", "droplab.train",
                  "droplab.stacked", "droplab.data", "droplab.presets", "droplab.host", "droplab.config",
                  "droplab.checkpoint", "droplab.threads", "droplab.report", "droplab.sweep", "droplab.experiments",
                  "droplab.statistics", "droplab.evaluation")


def test_every_public_module_is_in_the_list_the_reference_is_checked_against():
    import pkgutil

    import droplab
    found = {f"droplab.{m.name}" for m in pkgutil.iter_modules(droplab.__path__) if not m.name.startswith("_")}
    assert found - {"droplab.cli"} == set(PUBLIC_MODULES) - {"droplab"}


def test_every_public_name_has_an_entry_in_the_api_reference(site):
    import importlib
    import types

    anchors = set()
    for page in (site / "api").rglob("index.html"):
        anchors |= set(re.findall(r'id="(droplab[.\w]*)"', page.read_text()))
    missing = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        # droplab.net's names are the top level's (DropoutMLP, Trace) and Stage, on the droplab page
        assert name in anchors or name == "droplab.net", f"{name} has no page in the API reference"
        for member in module.__all__:
            if isinstance(getattr(module, member), types.ModuleType):
                continue  # a submodule: its own page
            # a name re-exported by the top level is documented there, or under the public module that defines it
            home = getattr(getattr(module, member), "__module__", "")
            if not {f"{name}.{member}", f"droplab.{member}", f"{home}.{member}"} & anchors:
                missing.append(f"{name}.{member}")
    assert not missing, f"public names without an entry in docs/api: {missing}"
    assert not any(a.startswith("droplab._") for a in anchors), "an entry under a private path"


def test_the_site_builds_strict_with_every_page(site):
    for page in ("index.html", "training/index.html", "estimators/index.html", "any-model/index.html",
                 "reproduce/index.html", "sweeps/index.html", "cli/index.html",
                 "results/index.html", "api/ensemble/index.html", "api/metrics/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "ensemble" / "index.html").read_text()
    assert "monte_carlo" in api and "PredictiveStatistics" in api  # rendered from the docstrings
    # doctests as highlighted console code (pygments marks the prompt), the guides' code highlighted
    assert '<span class="gp">&gt;&gt;&gt; </span>' in (site / "api" / "nn" / "index.html").read_text()
    assert '<span class="kn">import</span>' in (site / "training" / "index.html").read_text()
    home = (site / "index.html").read_text()
    assert 'class="grid cards"' in home and "github.com/droplab/droplab" in home
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


def test_one_version_everywhere():
    """The version in the package, the site's header, the citation and the changelog's newest entry agree."""
    import droplab
    version = droplab.__version__
    assert re.search(rf'^version = "{re.escape(version)}"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert re.search(rf"^site_name: droplab {re.escape(version)}$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert re.search(rf"^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text(), re.M)
    releases = [h for h in re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M) if h != "Unreleased"]
    assert releases[0] == version  # the newest release is this version (changes since it stand under Unreleased)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _sections_missing(module_name, module=None):
    """What the public names of a module lack: an Args (or, for a dataclass, Attributes) section where it takes
    arguments, a Returns section where it returns something, Args names that are in its signature (Google style,
    which mkdocstrings renders as tables)."""
    import importlib
    import inspect
    import types

    module = module or importlib.import_module(module_name)
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType) or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        try:
            sig = inspect.signature(obj)
        except ValueError:  # an exception class: it takes a message
            continue
        params = [p for p in sig.parameters if p != "self"]
        if params and "\nArgs:\n" not in doc and "\nAttributes:\n" not in doc:
            missing.append(f"{module_name}.{name}: no Args/Attributes section")
        if inspect.isfunction(obj) and sig.return_annotation not in (None, "None", inspect.Signature.empty) \
                and "\nReturns:\n" not in doc:
            missing.append(f"{module_name}.{name}: no Returns section")
        documented = set(re.findall(r"^    (\*{0,2}\w+):", doc.split("\nArgs:\n")[1].split("\n\n")[0], re.M)) \
            if "\nArgs:\n" in doc else set()
        unknown = {d.lstrip("*") for d in documented} - set(params)
        if unknown:
            missing.append(f"{module_name}.{name}: Args names {sorted(unknown)}, not in its signature")
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_its_args_and_returns_sections(module_name):
    assert _sections_missing(module_name) == []


def test_the_section_check_finds_what_is_missing():
    import types

    def bare(x: int, y: int) -> int:
        """Adds."""
        return x + y

    def misnamed(x: int) -> int:
        """Doubles.

        Args:
            z: Not its argument.

        Returns:
            int: 2 x.
        """
        return 2 * x

    fake = types.ModuleType("fake")
    fake.__all__ = ["bare", "misnamed"]
    fake.bare, fake.misnamed = bare, misnamed
    assert _sections_missing("fake", fake) == ["fake.bare: no Args/Attributes section", "fake.bare: no Returns section",
                                               "fake.misnamed: Args names ['z'], not in its signature"]
