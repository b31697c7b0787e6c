"""Files as untrusted input (issue 35's harness): the files droplab reads, mutated (emptied, truncated, NaN, text
for numbers, out-of-range and fractional indices, overlapping splits, a file missing), are refused with a
ValueError that names the file or its folder, or read correctly; never another exception, never a silent load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from droplab import data
from test_uci import _fake_set

# file -> mutations of its text; each must be refused
UCI_MUTATIONS = {
    "data.txt": {"empty": "", "nan": "nan 1 2 3\n" * 10, "text": "a b c d\n", "ragged": "1 2 3 4\n1 2\n"},
    "index_features.txt": {"negative": "-1\n1\n2\n", "fraction": "0\n1.5\n2\n", "beyond": "0\n1\n9\n",
                           "twice": "0\n0\n1\n", "empty": ""},
    "index_target.txt": {"a feature": "1\n", "beyond": "4\n", "text": "target\n"},
    "n_splits.txt": {"zero": "0\n", "fraction": "1.5\n", "text": "two\n", "empty": ""},
    "n_hidden.txt": {"negative": "-50\n"},
    "n_epochs.txt": {"nan": "nan\n"},
    "dropout_rates.txt": {"one": "1.0\n", "negative": "-0.1\n"},
    "tau_values.txt": {"zero": "0\n", "inf": "inf\n"},
    "index_train_1.txt": {"negative": "-1\n2\n3\n", "fraction": "3.7\n2\n", "beyond": "1\n10\n",
                          "the test rows": "8\n9\n", "twice": "1\n1\n2\n", "empty": ""},
    "index_test_1.txt": {"overlap": "7\n8\n9\n", "nan": "nan\n"},
}
CASES = [(f, name, text) for f, mutations in UCI_MUTATIONS.items() for name, text in mutations.items()]


@pytest.mark.parametrize("file, mutation, text", CASES, ids=[f"{f}-{m}" for f, m, _ in CASES])
def test_a_damaged_uci_file_is_refused_by_name(tmp_path, file, mutation, text):
    folder = tmp_path / "yacht"
    _fake_set(folder)
    data.uci("yacht", split=1, root=tmp_path, download=False)  # the intact set loads
    (folder / file).write_text(text)
    with pytest.raises(ValueError) as info:
        data.uci("yacht", split=1, root=tmp_path, download=False)
    message = str(info.value)
    assert file in message or str(folder) in message, message


@pytest.mark.parametrize("file", ["index_test_1.txt", "tau_values.txt"])
def test_a_missing_file_of_a_set_is_named(tmp_path, file):
    folder = tmp_path / "yacht"
    _fake_set(folder)
    (folder / file).unlink()
    with pytest.raises(ValueError, match=rf"incomplete: {file} is missing"):
        data.uci("yacht", split=1, root=tmp_path, download=False)
    shutil.rmtree(folder)
    with pytest.raises(ValueError, match="no files for UCI set yacht"):
        data.uci("yacht", split=1, root=tmp_path, download=False)


def test_the_fake_set_reads_as_written(tmp_path):
    _fake_set(tmp_path / "yacht")
    s = data.uci("yacht", split=1, root=tmp_path, download=False)
    table = np.loadtxt(tmp_path / "yacht" / "data.txt")
    assert s.x_train.shape == (7, 3) and s.x_test.shape == (2, 3)
    assert np.array_equal(s.y_test.numpy(), table[[8, 9], 3])


# ---- IDX files (MNIST and its kin) --------------------------------------------------------------------------------

def _idx_mutations():
    import struct

    def header(code, dims):
        return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)

    return {
        "empty file": lambda raw: b"",
        "zero images": lambda raw: header(8, (0, 28, 28)),
        "truncated data": lambda raw: raw[:-7],
        "truncated header": lambda raw: raw[:6],
        "bad magic": lambda raw: b"\x01\x02" + raw[2:],
        "unknown type": lambda raw: raw[:2] + b"\x07" + raw[3:],
        "huge shape": lambda raw: header(8, (2**32 - 1, 2**32 - 1, 2**32 - 1)) + raw[16:],
        "float values": lambda raw: header(0x0D, (20, 28, 28)) + b"\0" * (20 * 28 * 28 * 4),
        "labels shape": lambda raw: header(8, (20,)) + bytes(20),
        "one image fewer": lambda raw: header(8, (19, 28, 28)) + raw[16:16 + 19 * 784],
        "extra bytes": lambda raw: raw + b"\0\0",
        "not gzip": lambda raw: b"plain text",
    }


@pytest.mark.parametrize("mutation", list(_idx_mutations()))
@pytest.mark.parametrize("gz", [True, False])
def test_a_damaged_idx_file_is_refused_by_name(tmp_path, mutation, gz):
    import gzip

    from test_data import _write_fake_mnist

    _write_fake_mnist(tmp_path / "mnist", gz=gz)
    data.load("mnist", root=tmp_path, download=False)  # the intact set loads
    path = tmp_path / "mnist" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    changed = _idx_mutations()[mutation](raw)
    path.write_bytes(gzip.compress(changed) if gz and mutation != "not gzip" else changed)
    with pytest.raises(ValueError) as info:
        data.load("mnist", root=tmp_path, download=False)
    assert "t10k-images-idx3-ubyte" in str(info.value), str(info.value)


# ---- checkpoints ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from droplab.cli import main

    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["train", "--preset", "quick", "--epochs", "1", "--sizes", "64,16,10", "--out", str(out),
                 "--no-progress"]) == 0
    return out / "last.safetensors"


def _ckpt_mutations():
    import torch

    def tensors(f):
        return lambda t, m: t.update({k: f(v) for k, v in t.items() if k.startswith("model.")})

    return {
        "huge sizes": lambda t, m: m["model"].update(sizes=[64, 10**9, 10]),
        "sizes as text": lambda t, m: m["model"].update(sizes="64,16,10"),
        "negative size": lambda t, m: m["model"].update(sizes=[64, -16, 10]),
        "keep above 1": lambda t, m: m["model"].update(keep=[2.0, 0.5]),
        "keep NaN": lambda t, m: m["model"].update(keep=[float("nan"), 0.5]),
        "unknown transfer": lambda t, m: m["model"].update(transfer="nope"),
        "model a list": lambda t, m: m.update(model=[1, 2]),
        "data a string": lambda t, m: m.update(data="x"),
        "no model": lambda t, m: m.pop("model"),
        "NaN weights": tensors(lambda v: torch.full_like(v, float("nan"))),
        "int weights": tensors(lambda v: v.long()),
        "transposed weights": tensors(lambda v: v.t().contiguous() if v.dim() == 2 else v),
        "a tensor missing": lambda t, m: t.pop("model.linears.0.bias"),
        "a tensor more": lambda t, m: t.update({"model.extra": torch.ones(3)}),
    }


@pytest.mark.parametrize("mutation", list(_ckpt_mutations()))
def test_a_damaged_checkpoint_is_refused_by_name(checkpoint, tmp_path, mutation):
    from droplab.checkpoint import load_checkpoint_file, save_checkpoint_file
    from droplab.train import load_model

    tensors, meta = load_checkpoint_file(checkpoint)
    _ckpt_mutations()[mutation](tensors, meta)
    path = tmp_path / "damaged.safetensors"
    save_checkpoint_file(path, tensors, meta)
    with pytest.raises(ValueError) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [0, 8, 100, -50])
def test_a_truncated_checkpoint_is_refused_by_name(checkpoint, tmp_path, cut):
    from droplab.train import load_model

    raw = checkpoint.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match=str(path)):
        load_model(path)


def test_a_resumed_run_refuses_a_precision_it_does_not_know(checkpoint, tmp_path):
    import shutil as sh

    from droplab import train
    from droplab.checkpoint import load_checkpoint_file, save_checkpoint_file

    run = tmp_path / "run"
    sh.copytree(checkpoint.parent, run)
    tensors, meta = load_checkpoint_file(run / "last.safetensors")
    meta["train"]["precision"] = 5
    save_checkpoint_file(run / "last.safetensors", tensors, meta)
    model, _ = train.load_model(run / "last.safetensors")
    with pytest.raises(ValueError, match=r"records the precision 5"):
        train.resolve_precision(train.TrainConfig(), model, resuming=run)


# ---- results.json (droplab compare) --------------------------------------------------------------------------------

def _results():
    verdict = {"group": "dropout", "text": "a claim", "paper": "Fig. 1", "measured": 0.5, "threshold": 0.4,
               "holds": True}
    from droplab.experiments._base import GROUPS

    return {"seed": 0, "preset": "tiny", "settings": {"precision": "float32"},
            "groups": {g: {"held": 1, "claims": 2} for g in GROUPS},
            "sections": [{"name": "pairs", "section": "9.1", "verdicts": [dict(verdict), dict(verdict)]}]}


RESULTS_MUTATIONS = {
    "sections not a list": lambda r: r.update(sections={"a": 1}),
    "a section a number": lambda r: r["sections"].append(3),
    "verdicts missing": lambda r: r["sections"][0].pop("verdicts"),
    "a verdict a string": lambda r: r["sections"][0]["verdicts"].append("yes"),
    "holds missing": lambda r: r["sections"][0]["verdicts"][0].pop("holds"),
    "holds a string": lambda r: r["sections"][0]["verdicts"][0].update(holds="yes"),
    "threshold text": lambda r: r["sections"][0]["verdicts"][0].update(threshold="0.4"),
    "text a number": lambda r: r["sections"][0]["verdicts"][0].update(text=5),
    "measured missing": lambda r: r["sections"][0]["verdicts"][0].pop("measured"),
    "settings a list": lambda r: r.update(settings=[1]),
    "seed text": lambda r: r.update(seed="zero"),
    "host a number": lambda r: r.update(host=3),
    "groups missing": lambda r: r.pop("groups"),
    "a group's counts text": lambda r: r["groups"]["paper"].update(held="1"),
    "paper a number": lambda r: r["sections"][0]["verdicts"][0].update(paper=3),
    "not an object": lambda r: r.clear() or r.update(x=1),
}


@pytest.mark.parametrize("mutation", list(RESULTS_MUTATIONS))
def test_a_damaged_results_file_is_refused_by_name(tmp_path, mutation):
    import json

    from droplab.report import compare_runs

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({**_results(), "seed": ord(name)}))
    assert "a claim" in compare_runs([tmp_path / "a", tmp_path / "b"])  # intact: compared
    damaged = {**_results(), "seed": 98}
    RESULTS_MUTATIONS[mutation](damaged)
    (tmp_path / "b" / "results.json").write_text(json.dumps(damaged))
    with pytest.raises(ValueError, match=str(tmp_path / "b" / "results.json")):
        compare_runs([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "\xff\xfe"])
def test_a_results_file_that_is_not_json_is_refused_by_name(tmp_path, text):
    from droplab.report import compare_runs

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="results.json"):
        compare_runs([tmp_path / "a"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100))
def test_random_bytes_flipped_in_a_checkpoint_load_or_are_refused(checkpoint, tmp_path, seed):
    import random

    from droplab.train import load_model

    raw = bytearray(checkpoint.read_bytes())
    rng = random.Random(seed)
    for _ in range(rng.choice([1, 4, 32])):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(raw))
    try:
        model, _ = load_model(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        return
    assert all(bool(p.isfinite().all()) for p in model.parameters())  # loaded: finite weights only
