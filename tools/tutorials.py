"""Execute the tutorials (docs/tutorials/*.py) and write them as pages with what they print and draw.

    python tools/tutorials.py              # run the tutorials whose source changed since their page was written
    python tools/tutorials.py --force      # run every one
    python tools/tutorials.py --no-execute # pages with the code only, where no executed page exists yet

A tutorial is a Python script in cells: a line ``# %%`` starts a code cell, ``# %% [markdown]`` a text cell whose
lines are comments (``# `` stripped). The script runs in a fresh process, cell after cell in one namespace, in the
tutorial's own output folder (``docs/tutorials/<name>/``, so the figures it saves land beside its page); each code
cell is followed on the page by what it printed and by the PNG files it wrote. The page records the source's
SHA-256, the host and the seconds it ran: ``make docs`` reruns only what changed. Pages and figures are generated
(ignored by git); the scripts are the source.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
MARK = "<!-- tutorial source sha256: {} -->"


def cells(source: str) -> list[tuple[str, str]]:
    """(kind, text) per cell: ``"markdown"`` with the comment marks stripped, or ``"code"``."""
    out: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            out.append(("markdown" if "[markdown]" in line else "code", []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"a tutorial starts with a '# %%' line, not {line!r}")
    result = []
    for kind, lines in out:
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines)
        else:
            text = "\n".join(lines)
        if text.strip():
            result.append((kind, text.strip("\n")))
    return result


def run_cells(script: Path, folder: Path) -> list[dict]:
    """Run the code cells in this process (called in a fresh one): what each printed and the PNGs it wrote."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    namespace: dict = {"__name__": "__main__", "__file__": str(script)}
    results = []
    for kind, text in cells(script.read_text()):
        if kind != "code":
            continue
        before = {p: p.stat().st_mtime_ns for p in folder.glob("*.png")}
        buffer = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            exec(compile(text, f"{script.name}", "exec"), namespace)  # noqa: S102 (the project's own tutorials)
        figures = sorted(p.name for p in folder.glob("*.png") if before.get(p) != p.stat().st_mtime_ns)
        results.append({"printed": buffer.getvalue(), "figures": figures, "seconds": time.perf_counter() - t0})
    return results


def _host() -> str:
    from droplab import host

    return host.host_line()


def page(script: Path, results: list[dict] | None, seconds: float | None) -> str:
    """The Markdown page of a tutorial: its text, code, what the code printed and drew."""
    source = script.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()
    parts = [MARK.format(digest if results is not None else "not-executed")]
    run = iter(results or [])
    if results is None:
        parts.append('!!! note "Not executed in this build"\n    `make docs` (or `python tools/tutorials.py`) runs '
                     "this tutorial and shows what it prints and draws here.")
    for index, (kind, text) in enumerate(cells(source)):
        if kind == "markdown":
            parts.append(text)
            if index == 0:
                ran = (f"Executed when the site was built: {seconds:.0f} s on {_host()}. " if results is not None
                       else "")
                parts.append(f"*{ran}The script: [{script.name}]({script.name}) (`python {script.name}` runs it; "
                             f"`docs/tutorials/{script.name}` in the repository).*")
            continue
        parts.append(f"```python\n{text}\n```")
        if results is None:
            continue
        cell = next(run)
        if cell["printed"].strip():
            parts.append(f"```text\n{cell['printed'].rstrip()}\n```")
        parts += [f"![{name}]({script.stem}/{name})" for name in cell["figures"]]
    return "\n\n".join(parts) + "\n"


def _executed(md: Path, script: Path) -> bool:
    if not md.is_file():
        return False
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    return md.read_text().startswith(MARK.format(digest))


@contextlib.contextmanager
def _data_env():
    """The tutorial's environment. A tutorial runs in its output folder, where droplab's search for a checkout's
    ``../shared/data`` would not find the repository's: where that folder exists and ``DROPLAB_DATA`` is not set,
    ``DROPLAB_DATA`` points at a temporary folder of links to its datasets (read through the links; anything
    downloaded lands in the temporary folder, never in the shared one)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    shared = ROOT.parent / "shared" / "data"
    if env.get("DROPLAB_DATA") or not shared.is_dir():
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="droplab-tutorial-data-") as tmp:
        for entry in shared.iterdir():
            if entry.is_dir():
                (Path(tmp) / entry.name).symlink_to(entry)
        yield {**env, "DROPLAB_DATA": tmp}


def build(force: bool = False, execute: bool = True, only: list[str] | None = None,
          folder: Path = TUTORIALS) -> list[str]:
    """Write the page of every tutorial in ``folder``; returns the names run now."""
    ran = []
    for script in sorted(folder.glob("*.py")):
        if only and script.stem not in only:
            continue
        md = folder / f"{script.stem}.md"
        if not force and _executed(md, script):
            continue
        if not execute:
            if not md.is_file():
                md.write_text(page(script, None, None))
            continue
        t0 = time.perf_counter()
        with _data_env() as env:
            proc = subprocess.run([sys.executable, __file__, "--cells", str(script)], capture_output=True, text=True,
                                  cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"tutorial {script.name} failed:\n{proc.stderr[-4000:]}")
        results = json.loads(proc.stdout.splitlines()[-1])
        tmp = md.with_suffix(".md.part")
        tmp.write_text(page(script, results, time.perf_counter() - t0))
        os.replace(tmp, md)  # a page is whole or absent
        ran.append(script.stem)
        print(f"tutorial {script.stem}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="run every tutorial, changed or not")
    parser.add_argument("--no-execute", action="store_true", help="write code-only pages where none exists")
    parser.add_argument("--only", nargs="+", help="the tutorials (file stems) to run")
    parser.add_argument("--cells", type=Path, help=argparse.SUPPRESS)  # the child process: run one script's cells
    args = parser.parse_args()
    if args.cells is not None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        results = run_cells(args.cells.resolve(), args.cells.resolve().parent / args.cells.stem)
        sys.stdout.write("\n" + json.dumps(results) + "\n")
        return
    build(force=args.force, execute=not args.no_execute, only=args.only)


if __name__ == "__main__":
    main()
