"""MkDocs hooks: the site's guide pages are the README's sections, split at its ``##`` headings, so that the
README stays the one source of the prose (and of its measured numbers). Every section must land on a page: a new
README section that no page takes fails the build (``mkdocs build --strict``)."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

# page -> README ``##`` sections it holds, in order; the text above the first ``##`` opens the home page
PAGES = {
    "index.md": ["", "Install", "The two commands"],
    "tour.md": ["A short tour"],
    "reproduce.md": ["Reproducing the paper"],
    "sweeps.md": ["Sweeps: many trainings on Ray Tune"],
    "cli.md": ["Command line"],
    "results.md": ["Measured results"],
    "design.md": ["Design notes"],
}
TITLES = {"tour.md": "A short tour", "reproduce.md": "Reproducing the paper", "sweeps.md": "Sweeps on Ray Tune",
          "cli.md": "Command line", "results.md": "Measured results", "design.md": "Design notes"}


def readme_sections(text: str) -> dict[str, str]:
    """The README's ``##`` sections by heading ("" for the text above the first), fenced code left whole."""
    sections: dict[str, list[str]] = {"": []}
    current, fenced = "", False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
            continue
        sections[current].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def _demote(text: str) -> str:
    """One heading level up (``###`` -> ``##``), outside fenced code; links into docs/ made site-relative."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{3,6} ", line):
            line = line[1:]
        out.append(line)
    return re.sub(r"\]\(docs/", "](", "\n".join(out))


def page_texts(readme: str) -> dict[str, str]:
    sections = readme_sections(readme)
    unplaced = [name for name in sections if not any(name in held for held in PAGES.values())]
    if unplaced:
        raise ValueError(f"README sections {unplaced} are on no page of the site; add them to PAGES in "
                         f"{Path(__file__).name}")
    pages = {}
    for page, names in PAGES.items():
        parts = []
        for name in names:
            body = _demote(sections[name])
            if page == "index.md" or name != names[0]:
                parts.append(body if not name else f"## {name}\n\n{body}")
            else:
                parts.append(f"# {TITLES[page]}\n\n{body}")
        pages[page] = "\n\n".join(parts) + "\n"
    return pages


def on_files(files: Files, config) -> Files:
    for page, text in page_texts((ROOT / "README.md").read_text(encoding="utf-8")).items():
        files.append(File.generated(config, page, content=text))
    return files
