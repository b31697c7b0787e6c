"""The code's shape: no circle in droplab's imports (counting the imports inside functions), so every module can be
read, tested and changed from the ones below it. A circle is found by Tarjan's strongly connected components of the
graph of ``from . import``/``import droplab...`` statements, read with ``ast``."""

from __future__ import annotations

import ast
import pathlib

import torch

import droplab

SRC = pathlib.Path(droplab.__file__).parent


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["droplab", *path.relative_to(SRC).with_suffix("").parts]
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the droplab modules it imports anywhere in its file. ``from .x import name`` points at the
    submodule ``x.name`` where there is one, else at ``x`` (a name its ``__init__`` defines)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, package) in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").split(".")[0] == "droplab":
                    module = node.module
                else:
                    continue
                subs = [f"{module}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in mods]
                if len(targets) < len(subs):
                    targets.append(module)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "droplab"]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_circle_finder_finds_a_circle_and_passes_a_line():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert "droplab.statistics" in graph["droplab.metrics"] and "droplab.metrics" in graph["droplab.ensemble._stats"]
    assert circles(graph) == []


def test_the_statistics_types_sit_below_both_the_ensemble_and_the_metrics():
    graph = import_graph()
    assert not {m for m in graph["droplab.statistics"]}, "droplab.statistics imports nothing of droplab's"
    assert not any(t.startswith("droplab.ensemble") for t in graph["droplab.metrics"] | graph["droplab._scores"])
    from droplab import ensemble, metrics, statistics
    assert ensemble.EnsembleStatistics is statistics.EnsembleStatistics
    assert ensemble.PredictiveStatistics is statistics.PredictiveStatistics
    assert ensemble.mutual_information is metrics.mutual_information  # one function, two import paths


def test_what_a_torch_function_mode_sees_of_dropout():
    # docs/design.md explains why droplab reaches torch's dropout by replacing functions rather than through a
    # TorchFunctionMode, from these facts of torch 2.13; if torch changes them, the choice should be made again
    import torch.nn.functional as F
    from torch import nn
    from torch.overrides import TorchFunctionMode

    seen: list[str] = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    def names(fn):
        seen.clear()
        with torch.no_grad(), Spy():
            fn()
        return set(seen)

    x = torch.randn(4, 5, 8)
    for fn in (lambda: nn.Dropout(0.5).train()(x), lambda: F.dropout(x, 0.5, True),
               lambda: torch.dropout(x, 0.5, True), lambda: torch._VF.dropout(x, 0.5, True)):
        assert "dropout" in names(fn)
    attention = names(lambda: nn.MultiheadAttention(8, 2, dropout=0.5).train()(x, x, x))
    assert "multi_head_attention_forward" in attention and "dropout" not in attention  # the inner dropout is unseen
    lstm = names(lambda: nn.LSTM(8, 8, 2, dropout=0.5).train()(x))
    assert "lstm" in lstm and "dropout" not in lstm  # the dropout between layers is inside the kernel
