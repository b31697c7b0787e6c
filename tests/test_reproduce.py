"""droplab reproduce: a tiny preset end to end, cached stages, and the report rendered in a real browser."""

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from html import escape as html_escape

import pytest

from droplab.cli import main
from droplab.experiments import EXPERIMENTS
from droplab.report import compare_runs, reproduce

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    t0 = time.perf_counter()
    summary = reproduce(out, preset="tiny", progress=False)
    return out, summary, time.perf_counter() - t0


def test_every_section_has_its_figure_numbers_and_verdicts(tiny_report):
    out, summary, _ = tiny_report
    assert [r["name"] for r in summary["sections"]] == [e.name for e in EXPERIMENTS]
    html = (out / "report.html").read_text()
    for row in summary["sections"]:
        png = out / row["figure"]
        assert png.read_bytes()[:8] == PNG_MAGIC, row["name"]
        assert row["numbers"], row["name"]
        assert row["verdicts"] and all(isinstance(v["holds"], bool) for v in row["verdicts"])
        # the figure is embedded, so report.html is one file that can be sent
        assert f"src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'" in html
        assert html_escape(row["claim"])[:40] in html
        for v in row["verdicts"]:
            assert v["group"] in ("paper", "other", "lecture", "regime") and v["source"] and v["basis"] is not None
            assert not (v["holds"] and v["not_measured"])  # "not measured" never holds
    saved = json.loads((out / "results.json").read_text())
    assert saved["claims"] == sum(len(r["verdicts"]) for r in saved["sections"])
    assert 0 < saved["claims_held"] <= saved["claims"]
    assert sum(g["claims"] for g in saved["groups"].values()) == saved["claims"]
    assert saved["groups"]["paper"]["claims"] > saved["groups"]["other"]["claims"] > 0
    # issue 23: the study network's curve and every compared arm, in results.json
    assert [row["epoch"] for row in saved["training"]] == [1, 2]  # the tiny preset's 2 epochs
    assert all(set(row) == {"epoch", "train_loss", "val_error", "test_error"} for row in saved["training"])
    assert saved["training"][-1]["test_error"] is not None
    assert set(saved["arms"]) == {"no regularization", "L2", "dropout", "Gaussian dropout", "connection dropout",
                                  "dropin"}
    for arm in saved["arms"].values():
        assert set(arm) >= {"test_error", "trained", "lr"} and isinstance(arm["trained"], bool)
    assert [r["name"] for r in saved["sections"]].index("training") < [r["name"] for r in saved["sections"]].index(
        "approximations")  # the curve opens the study's sections
    assert "Substitute setting" in html  # the tiny preset says what it is at the top
    for name in ("report.html", "results.json", "bounds.png"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name


def test_the_same_seed_gives_the_same_report(tiny_report, tmp_path):
    out, first, _ = tiny_report
    again = reproduce(tmp_path / "again", preset="tiny", progress=False)

    def claims(summary):
        return [(r["name"], r["numbers"], [(v["text"], v["holds"]) for v in r["verdicts"]])
                for r in summary["sections"]]

    assert claims(again) == claims(first)


def test_a_folder_of_another_preset_is_refused(tiny_report, tmp_path):
    out, _, _ = tiny_report
    with pytest.raises(ValueError, match="holds the results of the 'tiny' preset"):
        reproduce(out, preset="quick", progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        reproduce(tmp_path / "afile", preset="tiny", progress=False)


def test_exact_claims_hold_even_on_the_tiny_preset(tiny_report):
    # closed-form results do not depend on how well the tiny network trained
    _, summary, _ = tiny_report
    by_name = {r["name"]: r for r in summary["sections"]}
    for name in ("bounds", "gradients"):
        assert all(v["holds"] for v in by_name[name]["verdicts"]), by_name[name]["verdicts"]
    worked = [v for v in by_name["lecture"]["verdicts"] if v["text"].startswith("the worked example")]
    assert [(v["text"], v["holds"]) for v in worked] == [("the worked example gives [60.0, 132.0]", True)]
    penalty = [v for v in by_name["lecture"]["verdicts"] if "p(1-p)" in v["text"]]
    assert penalty and penalty[0]["holds"]


def test_a_second_run_reuses_every_stage(tiny_report):
    out, first, _ = tiny_report
    again = reproduce(out, preset="tiny", progress=False)
    assert all(r["reused"] for r in again["sections"])  # nothing recomputed (its time is no test: shared machines)
    assert again["claims_held"] == first["claims_held"]
    # issue 19: a fully cached rerun still reports the study's test error and curve, read from the study file
    assert again["study_test_error"] == first["study_test_error"] is not None
    assert again["training"] == first["training"] and again["arms"] == first["arms"]


def test_only_recomputes_one_stage_and_keeps_the_others(tiny_report, tmp_path):
    out, _, _ = tiny_report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "stages" / "bounds.json").write_text("{ damaged")
    summary = reproduce(copy, preset="tiny", progress=False, only=["bounds"])
    reused = {r["name"]: r["reused"] for r in summary["sections"]}
    assert reused["bounds"] is False and all(v for k, v in reused.items() if k != "bounds")
    # damaged stages (not JSON, null, not UTF-8) are recomputed
    (copy / "stages" / "sampling.json").write_text("null")
    (copy / "stages" / "lecture.json").write_bytes(b"\xff\xfe not utf-8")
    reused = {r["name"]: r["reused"] for r in reproduce(copy, preset="tiny", progress=False)["sections"]}
    assert reused["sampling"] is False and reused["lecture"] is False and reused["bounds"] is True
    assert len(reused) == len(EXPERIMENTS)
    # a section named in --only is recomputed even when its cached stage is valid
    again = reproduce(copy, preset="tiny", progress=False, only=["means"])
    assert {r["name"]: r["reused"] for r in again["sections"]}["means"] is False


def test_a_hand_edited_stage_and_a_junk_figure_are_not_used(tiny_report, tmp_path):
    """Issue 19: the cache key covered the settings, not the content: an edited number was reused as measured."""
    out, first, _ = tiny_report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    stage = copy / "stages" / "bounds.json"
    saved = json.loads(stage.read_text())
    saved["result"]["numbers"][0]["value"] = 0.40
    stage.write_text(json.dumps(saved))
    (copy / "sampling.png").write_bytes(b"junk, not a PNG")
    figure = (out / "sampling.png").read_bytes()
    for name, forged in (("means", False), ("exact", True)):  # "result": {}, its checksum left or forged to match
        stage = copy / "stages" / f"{name}.json"
        saved = json.loads(stage.read_text())
        saved["result"] = {}
        if forged:
            saved["sha256"] = hashlib.sha256(json.dumps({}, sort_keys=True).encode()).hexdigest()
        stage.write_text(json.dumps(saved))
    summary = reproduce(copy, preset="tiny", progress=False)
    reused = {r["name"]: r["reused"] for r in summary["sections"]}
    assert reused["bounds"] is False and reused["sampling"] is True  # the edited stage recomputed
    assert reused["means"] is False and reused["exact"] is False
    assert summary["claims_held"] == first["claims_held"]
    assert (copy / "sampling.png").read_bytes() == figure  # the junk figure redrawn from the stage's numbers


def test_another_seed_or_precision_does_not_replace_a_report(tiny_report):
    out, _, _ = tiny_report
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match=r"seed 0 \(now 1\).*own --out"):
        reproduce(out, preset="tiny", seed=1, progress=False)
    # the tiny preset's products are too small for a low precision to pay: "auto" ran it in float32
    with pytest.raises(ValueError, match=r"precision 'float32' \(now 'bfloat16'\)"):
        reproduce(out, preset="tiny", precision="bfloat16", progress=False)
    assert (out / "results.json").read_bytes() == before


def test_compare_refuses_runs_that_are_not_comparable(tiny_report, tmp_path):
    out, _, _ = tiny_report
    with pytest.raises(ValueError, match="given twice"):
        compare_runs([out, out])
    other = tmp_path / "other"
    shutil.copytree(out, other)
    saved = json.loads((other / "results.json").read_text())
    saved["preset"], saved["settings"]["precision"] = "quick", "bfloat16"
    (other / "results.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="not comparable.*precision 'float32' against 'bfloat16'.*preset"):
        compare_runs([out, other])
    (other / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="not a droplab results file"):
        compare_runs([out, other])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown preset"):
        reproduce("/tmp/never", preset="huge")
    with pytest.raises(ValueError, match="unknown section"):
        reproduce("/tmp/never", preset="tiny", only=["fig99"])
    with pytest.raises(ValueError, match="classification dataset"):
        reproduce("/tmp/never", preset="tiny", dataset="synthetic-linear")


def test_command_line_summary(tiny_report, capsys):
    out, _, _ = tiny_report
    assert main(["reproduce", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "claims hold" in line and "reused" in line and str(out / "report.html") in line


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here; .ci/run installs Debian's chromium")
def test_report_renders_in_a_real_browser_with_every_figure(tiny_report, tmp_path):
    out, summary, _ = tiny_report
    probe = out / "browser-check.html"
    script = ("<script>window.addEventListener('load', () => { const i = [...document.images]; "
              "document.body.setAttribute('data-loaded', i.filter(x => x.complete && x.naturalWidth > 0).length "
              "+ '/' + i.length); });</script></body>")
    probe.write_text((out / "report.html").read_text().replace("</body>", script))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files", "--virtual-time-budget=10000",
           "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    n = len(summary["sections"])
    assert f'data-loaded="{n}/{n}"' in dom, dom[:500]


def test_a_deleted_figure_is_redrawn_without_recomputing(tiny_report, tmp_path):
    out, _, _ = tiny_report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "lecture.png").unlink()
    summary = reproduce(copy, preset="tiny", progress=False)
    assert all(r["reused"] for r in summary["sections"])
    assert (copy / "lecture.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_runs_reports_spread_and_flips(tiny_report, tmp_path, capsys):
    out, _, _ = tiny_report
    other = tmp_path / "other"
    shutil.copytree(out, other)
    saved = json.loads((other / "results.json").read_text())
    verdict = saved["sections"][0]["verdicts"][0]
    verdict["holds"], verdict["measured"] = not verdict["holds"], 123.0
    (other / "results.json").write_text(json.dumps(saved))
    assert main(["compare", str(out), str(other)]) == 0
    table = capsys.readouterr().out
    row = [line for line in table.splitlines() if line.startswith(f"| {verdict['group']} |")][0]
    assert "1 of 2 (flips: at its noise)" in row and "123" in row
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_a_damaged_study_file_is_trained_again(tiny_report, tmp_path):
    out, first, _ = tiny_report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "stages" / "study.safetensors").write_bytes(b"truncated")
    for stage in (copy / "stages").glob("*.json"):
        stage.unlink()
    again = reproduce(copy, preset="tiny", progress=False)
    assert again["claims_held"] == first["claims_held"]  # same seed: the same network again


def test_a_sweep_next_to_the_report_is_shown(tiny_report, tmp_path):
    from droplab import sweep

    out, _, _ = tiny_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    spec = sweep.load_sweep("smoke")
    rows = [{"trial": f"t{i}", "model.keep_input": pi, "model.keep_hidden": ph, "best_val_error": 3.0 + i,
             "test_error": 4.0 + i, "epochs": 5, "seconds": 1.0, "status": "done", "error": "", "checkpoint": ""}
            for i, (pi, ph) in enumerate([(0.8, 0.5), (0.8, 1.0), (1.0, 0.5), (1.0, 1.0)])]
    folder = copy / "sweeps" / "smoke"
    folder.mkdir(parents=True)
    sweep.write_outputs(spec, rows, folder)  # the files a sweep leaves (results.csv, keep-grid.png)
    reproduce(copy, preset="tiny", progress=False)
    page = (copy / "report.html").read_text()
    assert "Sweep: smoke" in page and "4 trials" in page and "sweep smoke: keep-grid" in page


def test_reproduce_in_bfloat16x3_is_its_own_stage_and_says_so(tiny_report, tmp_path):
    out, _, _ = tiny_report
    copy = tmp_path / "report"
    (copy / "stages").mkdir(parents=True)
    for stage in ("approximations.json", "study.safetensors"):  # the default (int8c) run's stages, in a bfloat16x3 one
        shutil.copy(out / "stages" / stage, copy / "stages" / stage)
    summary = reproduce(copy, preset="tiny", progress=False, only=["approximations"], precision="bfloat16x3")
    network = next(r for r in summary["sections"] if r["name"] == "approximations")
    assert not network["reused"]  # an int8c stage is not taken for a bfloat16x3 one
    assert "Monte Carlo products in bfloat16x3" in (copy / "report.html").read_text()
    with pytest.raises(ValueError, match="precision must be"):
        reproduce(copy, preset="tiny", progress=False, precision="half")


@pytest.mark.parametrize("study_preset", ["tiny", "quick", "standard", "paper"])
def test_each_reproduction_preset_studies_a_training_preset(study_preset):
    # one source: the study's network and schedule are the training preset's typed configs, not a copy of them
    import dataclasses

    from droplab.experiments import PRESETS, STUDY_PRESETS
    from droplab.presets import preset

    sp = STUDY_PRESETS[study_preset]
    p, s = preset(sp.training), sp.settings()
    assert s.model is p.model and s.train == dataclasses.replace(p.train, precision="float32")
    assert (s.data.dataset, s.data.validation, s.data.normalize) == (p.dataset, p.validation, p.normalize)
    # the record results.json keeps: droplab 0.6's flat keys, read from the typed configs
    r = PRESETS[study_preset]
    assert (r["dataset"], tuple(r["hidden"]), r["init_gain"]) == (p.dataset, p.model.sizes[1:-1], p.model.init_gain)
    assert [r["keep_input"]] + [r["keep_hidden"]] * len(r["hidden"]) == list(p.model.keeps)
    for field in ("epochs", "batch_size", "lr", "lr_decay", "lr_schedule", "momentum_start", "momentum_end",
                  "momentum_epochs", "max_norm", "optimizer"):
        assert r[field] == getattr(p.train, field), field
    assert not any("." in k for k in r), r  # every preset is what droplab 0.6 fixed in code: its caches stay valid


# a value other than every study preset's for each field of the typed configs (a field added to a config fails
# the test below until it is listed here, with whether the record must follow it)
OTHER_VALUES = {
    "model": {"sizes": (64, 7, 7, 10), "transfer": "tanh", "output": "linear", "c": 2.0, "lam": 2.0, "keep": 0.9,
              "gate": "gaussian", "connection_keep": 0.5, "connection_kind": "gaussian", "mask_sharing": "batch",
              "scaling": "inverted", "backward": 0.5, "init": "default", "init_gain": 3.0},
    "train": {"epochs": 7, "batch_size": 7, "lr": 0.7, "lr_decay": 0.7, "lr_schedule": "cosine", "momentum_start": 0.7,
              "momentum_end": 0.7, "momentum_epochs": 7, "max_norm": 7.0, "l2": 0.7, "patience": 7, "loss": "squared",
              "optimizer": "adam", "seed": 7, "precision": "bfloat16"},
    "data": {"dataset": "mnist-10k", "validation": 0.3, "limit": 700, "normalize": "standard", "data_dir": "/x",
             "download": False},
}
# the run's, not what is studied: the seed is the run's, the study trains in float32, the files' place
NOT_RECORDED = {("train", "seed"), ("train", "precision"), ("data", "data_dir"), ("data", "download")}


def test_every_typed_setting_a_reproduction_studies_is_in_its_record():
    """The stage caches are keyed on the record, so a setting outside it would let a changed preset reuse stale
    stages: changing any field of the study's configs changes the record (the run's own fields excepted)."""
    import dataclasses

    from droplab.experiments import STUDY_PRESETS

    base = STUDY_PRESETS["tiny"].settings()
    for table, others in OTHER_VALUES.items():
        config = getattr(base, table)
        assert set(others) == {f.name for f in dataclasses.fields(config)}, table
        for name, value in others.items():
            assert getattr(config, name) != value, (table, name)
            changed = dataclasses.replace(base, **{table: dataclasses.replace(config, **{name: value})})
            assert (changed.record() == base.record()) == ((table, name) in NOT_RECORDED), (table, name)
    assert dataclasses.replace(base, precision="int8c").record() != base.record()


def test_droplab_train_with_the_study_preset_gives_the_study_network(tmp_path, monkeypatch):
    # `droplab train --preset tiny --seed 3` trains, weight for weight, the network `reproduce --preset tiny --seed 3`
    # studies, at the same thread count (the command line's adaptation off: another job may hold a core)
    monkeypatch.setenv("DROPLAB_ADAPT_THREADS", "0")
    from droplab.experiments import STUDY_PRESETS
    from droplab.experiments.study import Study
    from droplab.train import load_model

    assert main(["train", "--preset", "tiny", "--seed", "3", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    trained, _ = load_model(tmp_path / "run" / "last.safetensors")
    study = Study(tmp_path / "report", STUDY_PRESETS["tiny"].settings(), seed=3, device="cpu")
    study.ensure()
    studied = study.model("last").state_dict()
    assert {k: v.tolist() for k, v in trained.state_dict().items()} == {k: v.tolist() for k, v in studied.items()}


def test_the_study_trains_with_its_training_presets_schedule(tmp_path):
    """Every field of the training preset's schedule reaches the study (the cosine schedule once did not, when the
    study rebuilt it from flat settings, and the study trained at a constant rate)."""
    import dataclasses

    from droplab.experiments import STUDY_PRESETS
    from droplab.experiments.study import Study
    from droplab.presets import preset

    for name, study_preset in STUDY_PRESETS.items():
        study = Study(tmp_path / name, study_preset.settings(), seed=3, device="cpu")
        # the study network trains in float32 whatever the host: the report's claims are about it (only the
        # comparison arms take "auto", whose bfloat16 gives float32's verdicts)
        want = dataclasses.replace(preset(study_preset.training).train, seed=3, precision="float32")
        assert study.train_config() == want, name
    with pytest.raises(TypeError, match="StudySettings"):
        Study(tmp_path / "flat", {"epochs": 2}, seed=3, device="cpu")


def test_the_report_names_the_host_and_the_precisions_auto_chose(tiny_report):
    from droplab import host

    out, summary, _ = tiny_report
    saved = json.loads((out / "results.json").read_text())
    assert saved["host"]["cpu"] == host.cpu_model() and saved["host"]["capability"] == host.capability()
    # the tiny network's products are far under host.MIN_WORK: float32 whatever the host
    assert saved["precisions"] == {"monte_carlo": "float32", "training_study": "float32", "training_arms": "float32",
                                   "chosen_by": "auto"}
    html = (out / "report.html").read_text()
    assert f"Host: {host.cpu_model()}" in html and "chosen for this host by <code>--precision auto</code>" in html


def test_compare_across_precisions_names_each_run_and_lists_the_verdicts_that_differ(tiny_report, tmp_path):
    out, _, _ = tiny_report
    other = tmp_path / "int8c"
    shutil.copytree(out, other)
    saved = json.loads((other / "results.json").read_text())
    saved["settings"]["precision"] = "int8c"
    saved["precisions"]["monte_carlo"] = "int8c"
    flipped = saved["sections"][0]["verdicts"][0]
    flipped["holds"] = not flipped["holds"]
    (other / "results.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="precision 'float32' against 'int8c'.*--across"):
        compare_runs([out, other])
    table = compare_runs([out, other], across=("precision",))
    assert "Runs: (1) tiny seed 0, Monte Carlo float32" in table and "(2) tiny seed 0, Monte Carlo int8c" in table
    assert "Claims whose verdict differs between the runs: 1" in table
    assert table.count("does not hold") == 1
    with pytest.raises(ValueError, match="across takes"):
        compare_runs([out, other], across=("seedz",))


def test_the_arms_on_a_ray_cluster_equal_the_local_run(tmp_path, monkeypatch):
    """Issue 34: `droplab reproduce --ray ADDRESS` trains the comparison arms as Ray tasks (one CPU each) on a cluster
    this test starts (`ray start --head`, two CPUs) and stops; the dropin and generalization sections' numbers, every
    arm's test error and validation curve, equal the local run's exactly (same seed, same precision)."""
    pytest.importorskip("ray", reason="the sweep extra (Ray) is not installed")
    import signal
    import socket
    import sys
    import tempfile

    with socket.socket() as s:  # a free port: never a cluster the user runs
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    # a throwaway cluster on this machine: without Ray's token authentication (a driver given an explicit address
    # is refused by a head that generated its own token, Ray 2.60)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # --block keeps the head in the foreground: stopping its process group stops this cluster and no other (`ray stop`
    # would stop every Ray process of the user)
    head = subprocess.Popen([*ray_cli, "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def run(folder, *extra):  # the command line, as a user runs it (it makes the products thread-invariant first)
        done = subprocess.run([sys.executable, "-m", "droplab.cli", "reproduce", "--preset", "tiny", "--only",
                               "dropin", "generalization", "--precision", "float32", "--no-progress", "--out",
                               str(tmp_path / folder), *extra], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((tmp_path / folder / "results.json").read_text())

    try:
        local = run("local")
        deadline = time.monotonic() + 120
        with socket.socket() as probe:  # the head's port answers once the cluster is up
            while probe.connect_ex(("127.0.0.1", port)) != 0:
                assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(0.5)
        remote = run("ray", "--ray", f"127.0.0.1:{port}")
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)

    def arms(folder):  # the dropin section's numbers, then the generalization section's
        saved = [json.loads((folder / "stages" / f"{name}.json").read_text())["result"]
                 for name in ("dropin", "generalization")]
        return saved[0]["numbers"] + saved[1]["numbers"], saved[1]["errors"], saved[1]["curves"]

    ray_numbers, ray_errors, ray_curves = arms(tmp_path / "ray")
    numbers, errors, curves = arms(tmp_path / "local")
    assert (ray_errors, ray_curves) == (errors, curves)  # every arm's test error and validation curve, exactly
    assert [(r["key"], r["where"]) for r in ray_numbers] == [(r["key"], r["where"]) for r in numbers]
    # the weights' statistics to float32 rounding: a worker of one CPU sums some elementwise reductions in another
    # order than the local run on two cores when the test suite loads the machine (equal to the bit when quiet)
    for r, q in zip(ray_numbers, numbers, strict=True):
        assert r["value"] == pytest.approx(q["value"], rel=1e-6, abs=1e-9), (r, q)
    assert [s["verdicts"] for s in remote["sections"]] == [s["verdicts"] for s in local["sections"]]


def test_compare_across_presets_matches_claims_by_what_they_claim(tiny_report, tmp_path):
    """Issue 34: the paper preset makes claims the others do not (Srivastava et al.'s published numbers on MNIST's
    own split); compare --across preset lists them as made by one run only and still matches every other claim, by
    its section, source and words rather than its position; a flipped claim after the extra one is found."""
    out, _, _ = tiny_report
    other = tmp_path / "paper"
    shutil.copytree(out, other)
    saved = json.loads((other / "results.json").read_text())
    saved["preset"] = "paper"
    section = next(s for s in saved["sections"] if s["name"] == "generalization")
    extra = {**section["verdicts"][0], "text": "a claim only this preset makes", "source": "Table 2", "words": "1.35"}
    section["verdicts"].insert(0, extra)  # every later claim moves by one position
    section["verdicts"][-1]["holds"] = not section["verdicts"][-1]["holds"]
    saved["groups"]["other"]["claims"] += 1
    (other / "results.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError):
        compare_runs([out, other])
    table = compare_runs([out, other], across=("preset",))
    assert "Claims only some runs make: 1" in table and "a claim only this preset makes (only in run 2)" in table
    assert "Claims whose verdict differs between the runs: 1" in table
