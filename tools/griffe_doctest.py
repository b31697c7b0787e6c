"""A griffe extension for the documentation site: the doctest examples in droplab's docstrings (``>>>`` lines and
the output under them, up to a blank line) are shown as Python code blocks, not read as Markdown quotes."""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    out: list[str] = []
    block: list[str] = []
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not block and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = [line]
        elif block and stripped:
            block.append(line)
        else:
            if block:
                out += [f"{indent}```pycon", *block, f"{indent}```"]
                block = []
            out.append(line)
    if block:
        out += [f"{indent}```pycon", *block, f"{indent}```"]
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
