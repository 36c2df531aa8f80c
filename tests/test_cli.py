"""The command line end to end on tiny settings: every command, its debug preset, and its errors."""

from __future__ import annotations

import json
import zipfile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wmlab.cli import main
from wmlab.data import EpisodeStore, make_flags
from wmlab.eval.stats import permutation_p_value, probability_of_improvement

# The quick video-pretraining pipeline takes about a minute alone on 2 cores, and past 600 s when the cores carry
# several other training runs: this limit only guards against a hang.
PIPELINE_TIMEOUT = 1800


def moving_square_store(root: Path, episodes: int = 8, length: int = 24, size: int = 16) -> Path:
    """A tiny store whose frames follow the actions: a bright square pushed around a dark frame."""
    store = EpisodeStore(root, mode="a")
    rng = np.random.default_rng(0)
    for e in range(episodes):
        image = np.zeros((length, size, size, 3), np.uint8)
        action = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
        action[-1] = 0
        pos = np.array([size / 2, size / 2])
        for t in range(length):
            y, x = pos.astype(int)
            image[t, max(0, y - 2):y + 2, max(0, x - 2):x + 2] = 255
            pos = np.clip(pos + 2 * action[t], 2, size - 2)
        episode = {"image": image, "action": action, "reward": rng.normal(size=length).astype(np.float32),
                   **make_flags(length)}
        store.add(episode, {"split": "test" if e >= episodes - 2 else "train"})
    return root


def run_cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def test_help_and_unknown_command(capsys, monkeypatch):
    assert run_cli("--help", capsys=capsys)[0] == 0
    code, _, err = run_cli("fly", capsys=capsys)
    assert code == 2 and "unknown command 'fly'" in err
    code, out, _ = run_cli("train", "world_model", "--help", capsys=capsys)
    assert code == 0 and "model.rssm.deter=" in out and "presets: debug" in out
    code, out, _ = run_cli("train", "--help", capsys=capsys)
    assert code == 0 and "world_model" in out and "dreamer" in out
    # bench --help lists the benchmarks and runs none; with a name it shows that script's own options.
    ran = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: ran.append(cmd) or 0)
    code, out, _ = run_cli("bench", "--help", capsys=capsys)
    assert code == 0 and ran == [] and "dreamer" in out and "world_model" in out and "Dreamer full train step" in out
    code, _, _ = run_cli("bench", "dreamer", "--help", capsys=capsys)
    assert code == 0 and len(ran) == 1 and ran[0][-2].endswith("bench_dreamer.py") and ran[0][-1] == "--help"
    code, _, err = run_cli("bench", "nope", "--help", capsys=capsys)
    assert code == 2 and "unknown benchmark 'nope'" in err


def test_train_eval_resume(tmp_path, capsys):
    data = moving_square_store(tmp_path / "store")
    run = tmp_path / "run"
    code, out, err = run_cli("train", "world_model", "preset=debug", f"data={data}", f"run_dir={run}",
                             "trainer.steps=6", "trainer.ckpt_every=3", "trainer.eval_every=3", capsys=capsys)
    assert code == 0, err
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last").read_text().strip() == "00000006"
    saved = (run / "config.yaml").read_text()
    assert "deter: 32" in saved  # the debug preset was resolved and saved
    # Same run_dir again resumes: more steps continue from the last checkpoint.
    code, _, err = run_cli("train", "world_model", f"run_dir={run}", "trainer.steps=9", capsys=capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "train/total" in r]
    assert steps == sorted(steps) and steps[-1] == 9 and len(set(steps)) == len(steps)
    # The periodic open-loop evaluator logged held-out PSNR beside copy-last, and a video.
    evals = [r for r in records if "eval/open_loop/psnr_1_10" in r or "open_loop/psnr_1_10" in r]
    assert evals, records[-1].keys()
    assert list((run / "videos").glob("open_loop*.mp4"))
    code, out, err = run_cli("eval", f"run_dir={run}", capsys=capsys)  # the run folder as a key works too
    assert code == 0, err
    result = json.loads(out)
    assert result["eval split"] == "test" and result["checkpoint step"] == 9
    code, _, err = run_cli("eval", str(run), f"run_dir={run}", capsys=capsys)
    assert code == 2 and "not both" in err
    assert len(result["per_step"]["psnr"]) == 8 and len(result["per_step"]["baseline_psnr"]) == 8
    html = (run / "report.html").read_text()
    assert html.count("data:image/gif;base64") == 2 and "PSNR copy-last" in html and "Training losses" in html


def test_unsplit_training_data_beside_a_test_split(tmp_path, capsys):
    """The README's flow: collect without a split, then a test split; train uses all but the test episodes."""
    data = moving_square_store(tmp_path / "store", episodes=6)
    store = EpisodeStore(data, mode="a")
    unsplit = moving_square_store(tmp_path / "plain", episodes=3)
    plain = EpisodeStore(unsplit)
    for eid in plain.ids():
        store.add(plain.load(eid), {})  # no split
    store.remove(store.ids(split="train"))
    assert store.splits() == {"test": 2, None: 3}
    run = tmp_path / "run"
    code, _, err = run_cli("train", "world_model", "preset=debug", f"data={data}", f"run_dir={run}",
                           "trainer.steps=2", "trainer.eval_every=0", capsys=capsys)
    assert code == 0, err
    code, out, err = run_cli("eval", str(run), capsys=capsys)
    assert code == 0 and json.loads(out)["eval split"] == "test", err


def test_user_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli("train", "world_model", "preset=debug", "model.rssm.detr=3",
                           f"run_dir={tmp_path / 'r1'}", capsys=capsys)
    assert code == 2 and "model.rssm.detr" in err and "model.rssm.deter" in err and err.count("\n") == 1
    code, _, err = run_cli("train", "world_model", "preset=debug", f"data={tmp_path / 'missing'}",
                           f"run_dir={tmp_path / 'r2'}", capsys=capsys)
    assert code == 2 and str(tmp_path / "missing") in err and err.count("\n") == 1
    code, _, err = run_cli("eval", str(tmp_path / "nothing"), capsys=capsys)
    assert code == 2 and "not a wmlab run folder" in err
    code, _, err = run_cli("train", "nope", capsys=capsys)
    assert code == 2 and "unknown job 'nope'" in err
    data = moving_square_store(tmp_path / "store", episodes=3)
    run = tmp_path / "r3"
    assert run_cli("train", "world_model", "preset=debug", f"data={data}", f"run_dir={run}", "trainer.steps=2",
                   capsys=capsys)[0] == 0
    # A resume without preset= keeps the saved one: the original command (preset=debug) still resumes.
    assert run_cli("train", "world_model", f"run_dir={run}", "trainer.steps=3", capsys=capsys)[0] == 0
    assert json.loads((run / "run.json").read_text())["preset"] == "debug"
    assert run_cli("train", "world_model", "preset=debug", f"data={data}", f"run_dir={run}", "trainer.steps=4",
                   capsys=capsys)[0] == 0
    code, _, err = run_cli("train", "world_model", "preset=small", f"run_dir={run}", capsys=capsys)
    assert code == 2 and "preset cannot change" in err
    # A refused resume (another model) or a failed one (a mistyped data path) leaves the run as it was: the
    # original command and `wmlab eval` still work.
    config = (run / "config.yaml").read_bytes()
    code, _, err = run_cli("train", "world_model", f"run_dir={run}", "trainer.steps=5", "model.rssm.deter=64",
                           capsys=capsys)
    assert code == 2 and "deter" in err and (run / "config.yaml").read_bytes() == config
    code, _, err = run_cli("train", "world_model", f"run_dir={run}", "trainer.steps=5",
                           f"data={tmp_path / 'typo'}", capsys=capsys)
    assert code == 2 and "typo" in err and (run / "config.yaml").read_bytes() == config
    assert run_cli("eval", str(run), capsys=capsys)[0] == 0
    assert run_cli("train", "world_model", f"run_dir={run}", "trainer.steps=5", capsys=capsys)[0] == 0
    # A new run that fails before its first checkpoint leaves no config behind to resume from.
    code, _, _ = run_cli("train", "world_model", "preset=debug", f"data={tmp_path / 'typo'}",
                         f"run_dir={tmp_path / 'r4'}", capsys=capsys)
    assert code == 2 and not (tmp_path / "r4" / "config.yaml").exists()
    # A damaged episode stops training with one line naming its file and the repair, also from a worker.
    broken = moving_square_store(tmp_path / "broken", episodes=3)
    npy = sorted((broken / "episodes").iterdir())[0] / "image.npy"
    npy.write_bytes(npy.read_bytes()[:200])
    for workers in ("0", "2"):
        code, _, err = run_cli("train", "world_model", "preset=debug", f"data={broken}", f"workers={workers}",
                               f"run_dir={tmp_path / f'r5_{workers}'}", "trainer.steps=2", capsys=capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert str(npy) in err and "wmlab data verify" in err
    for args in (("data", "import", str(tmp_path / "nothere"), f"out={tmp_path / 'o'}"),
                 ("data", "verify", str(tmp_path / "nothere"))):
        code, _, err = run_cli(*args, capsys=capsys)
        assert code == 2 and "nothere" in err and "check the path" in err and err.count("\n") == 1, err
    # data export writes Dreamer-style .npz episode folders unless told another format.
    code, out, err = run_cli("data", "export", str(data), f"out={tmp_path / 'npz'}", capsys=capsys)
    assert code == 0, err
    assert len(list((tmp_path / "npz").glob("*.npz"))) == 3


def test_training_jobs_name_an_empty_or_missing_store(tmp_path, capsys):
    """Every job that reads data= says in one line which store is empty (or that none was given) and how to make one."""
    from wmlab.data.store import EpisodeStore

    empty = tmp_path / "empty"
    EpisodeStore(empty, mode="a")
    header = (empty / "store.json").read_bytes()
    jobs = {"world_model": ("preset=debug",), "genie": ("preset=tiny",), "pretrain": ("preset=debug",),
            "dreamer": ("preset=debug", "online=false")}
    for job, args in jobs.items():
        code, _, err = run_cli("train", job, *args, f"data={empty}", f"run_dir={tmp_path / job}", capsys=capsys)
        assert code == 2 and err.count("\n") == 1, (job, err)
        assert f"store {empty} holds no episodes yet (" in err and "`wmlab " in err, (job, err)
        if job != "dreamer":  # dreamer refuses online=false without data= in its config check
            code, _, err = run_cli("train", job, *args, f"run_dir={tmp_path / (job + '_nodata')}", "data=",
                                   capsys=capsys)
            assert code == 2 and "no data given: pass data=" in err and err.count("\n") == 1, (job, err)
    assert (empty / "store.json").read_bytes() == header and not any((empty / "episodes").iterdir())


def test_data_commands(tmp_path, capsys):
    data = moving_square_store(tmp_path / "store", episodes=3)
    code, out, _ = run_cli("data", "info", str(data), capsys=capsys)
    assert code == 0 and json.loads(out)["episodes"] == 3
    assert run_cli("data", "verify", str(data), capsys=capsys)[0] == 0
    code, out, _ = run_cli("data", "export", str(data), f"out={tmp_path / 'npz'}", "format=dreamer", capsys=capsys)
    assert code == 0 and len(list((tmp_path / "npz").glob("*.npz"))) == 3
    code, out, err = run_cli("data", "import", str(tmp_path / "npz"), f"out={tmp_path / 'back'}", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["episodes"] == 3
    # A corrupt episode is reported by file name and verify keeps going.
    victim = sorted((data / "episodes").iterdir())[1] / "image.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    code, out, err = run_cli("data", "verify", str(data), capsys=capsys)
    assert code == 1 and "image.npy" in err and "1 problem" in out


def test_console_script_installed():
    exe = Path(sys.executable).with_name("wmlab")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "wmlab collect" in result.stdout


def test_data_options_from_the_command_line_are_typed(tmp_path, capsys):
    import imageio.v2 as imageio

    data = moving_square_store(tmp_path / "store", episodes=3)
    # compress=false writes stored (uncompressed) npz members; the default compresses.
    for flag, kind in (("compress=false", zipfile.ZIP_STORED), ("compress=true", zipfile.ZIP_DEFLATED)):
        out = tmp_path / flag.replace("=", "_")
        assert run_cli("data", "export", str(data), f"out={out}", flag, capsys=capsys)[0] == 0
        with zipfile.ZipFile(sorted(out.glob("*.npz"))[0]) as z:
            assert {i.compress_type for i in z.infolist()} == {kind}
    npz = tmp_path / "compress_true"
    back = tmp_path / "back"
    assert run_cli("data", "import", str(npz), f"out={back}", capsys=capsys)[0] == 0
    assert run_cli("data", "import", str(npz), f"out={back}", capsys=capsys)[0] == 0  # skipped: already there
    assert len(EpisodeStore(back, "r")) == 3
    assert run_cli("data", "import", str(npz), f"out={back}", "skip_existing=false", capsys=capsys)[0] == 0
    assert len(EpisodeStore(back, "r")) == 6
    assert run_cli("data", "export", str(data), f"out={tmp_path / 'genie'}", "format=genie", "quality=90",
                   capsys=capsys)[0] == 0
    videos = tmp_path / "videos"
    videos.mkdir()
    imageio.mimsave(videos / "clip.gif", list(np.random.default_rng(0).integers(0, 256, (8, 20, 12, 3), np.uint8)))
    code, out, err = run_cli("data", "import", str(videos), f"out={tmp_path / 'v'}", "size=8,8", "stride=2",
                             "crop=false", capsys=capsys)
    assert code == 0, err
    (eid,) = EpisodeStore(tmp_path / "v", "r").ids()
    assert EpisodeStore(tmp_path / "v", "r").load(eid)["image"].shape == (4, 8, 8, 3)


def test_data_and_eval_keys_are_checked_and_listed(tmp_path, capsys):
    data = moving_square_store(tmp_path / "store", episodes=3)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    for args, named in ((("info", str(data), "foo=1"), "'foo'"), (("verify", str(data), "fix=true"), "'fix'"),
                        (("import", str(data)), "out="), (("export", str(data), f"out={tmp_path / 'x'}",
                                                           "one_hot=maybe"), "one_hot"),
                        (("export", str(data), f"out={tmp_path / 'x'}", "stride=2"), "'stride'"),
                        (("import", str(data), f"out={tmp_path / 'y'}", "size=abc"), "size")):
        code, _, err = run_cli("data", *args, capsys=capsys)
        assert code == 2 and named in err and err.count("\n") == 1, (args, err)
    assert before == {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}  # nothing stored was touched
    code, out, _ = run_cli("data", "import", "--help", capsys=capsys)
    assert code == 0 and "format=video" in out and "stride=1" in out
    code, out, _ = run_cli("data", "export", "--help", capsys=capsys)
    assert code == 0 and "format=minari" in out and "compress=True" in out
    code, out, _ = run_cli("eval", "--help", capsys=capsys)
    assert code == 0 and "world_model runs:" in out and "horizon=" in out and "dreamer runs:" in out
    code, out, _ = run_cli("generate", "--help", capsys=capsys)
    assert code == 0 and "temperature=" in out


@pytest.mark.parametrize("workers", [0, 2])
def test_world_model_resume_equals_an_uninterrupted_run(tmp_path, one_thread, workers):
    from safetensors.torch import load_file

    from wmlab import api

    data = moving_square_store(tmp_path / "store", episodes=4)
    settings = {"data": str(data), "trainer.eval_every": 0, "trainer.ckpt_every": 2, "workers": workers}
    api.train("world_model", preset="debug", run_dir=str(tmp_path / "a"), **settings, **{"trainer.steps": 4})
    api.train("world_model", preset="debug", run_dir=str(tmp_path / "b"), **settings, **{"trainer.steps": 2})
    api.train("world_model", run_dir=str(tmp_path / "b"), **{"trainer.steps": 4})  # resumes at step 2
    a, b = (load_file(str(tmp_path / r / "checkpoints" / "00000004" / "model.safetensors")) for r in "ab")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    state = json.loads((tmp_path / "b" / "checkpoints" / "00000004" / "state.json").read_text())
    assert state["data"] == [{"position": 4}]


def test_pretraining_benchmark_runs_quick(tmp_path):
    out = tmp_path / "pretrain.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pretrain.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--methods", "apv,prelar", "--modes", "fp32",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows, meta = result["rows"], result["meta"]
    assert [r["method"] for r in rows] == ["apv", "prelar"] and all(r["frames_per_s"] > 0 for r in rows)
    assert meta["quick"] is True and meta["cpu"] and meta["threads"] >= 1 and meta["preset"]  # comparable across hosts
    assert "QUICK" in out.with_suffix(".md").read_text()


def test_dreamer_benchmark_times_fine_tuning_methods_quick(tmp_path):
    out = tmp_path / "dreamer.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dreamer.py"
    base = [sys.executable, str(script), "--quick", "--presets", "debug", "--modes", "fp32", "--out", str(out)]
    frozen = "prelar+world_model.latent_action.freeze=true"
    done = subprocess.run([*base, "--methods", f"none,{frozen}", "--set", "world_model.rssm.deter=24"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["none", frozen] and all(r["ms_per_step"] > 0 for r in rows)
    assert rows[1]["world_model"] > rows[0]["world_model"]  # the latent action model and action encoder
    assert result["meta"]["settings"] == ["world_model.rssm.deter=24"]
    assert f"| debug | {frozen} |" in out.with_suffix(".md").read_text()
    for entry, message in (("prelar+freeze", "not key=value"), ("nope", "unknown method 'nope'")):
        bad = subprocess.run([*base, "--methods", entry], capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr[-2000:]


def test_store_and_collect_benchmarks_record_the_machine(tmp_path):
    """The two benchmarks that measure in worker processes write the same json + markdown as the others, with the
    CPU model: their figures are compared across hosts."""
    here = Path(__file__).resolve().parents[1] / "benchmarks"
    runs = {"store": ["bench_store.py", "--quick", "--root", str(tmp_path / "store"), "--workers", "0", "--batches", "2"],
            "collect": ["bench_collect.py", "--quick", "--envs", "dmc:cartpole_balance", "--workers", "1"]}
    for name, (script, *args) in runs.items():
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, str(here / script), *args, "--out", str(out)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(out.read_text())
        assert result["meta"]["quick"] is True and result["meta"]["cpu"] and result["meta"]["date"], name
        assert result["rows"] and all(r["steps_per_s" if name == "collect" else "windows_per_s"] > 0
                                      for r in result["rows"]), name
        table = out.with_suffix(".md").read_text().splitlines()
        assert table[0].endswith("QUICK (not a measurement)") and len(table) >= 2 + len(result["rows"]), name


def test_pool_across_tasks_compares_runs_within_their_task(tmp_path):
    """``pool_video_pretraining.py --across``: a table per task and each method's mean over the tasks it ran
    against scratch's over the same tasks, relabelling runs only within their task."""
    from wmlab.eval.stats import stratified_permutation_p_value, stratified_probability_of_improvement

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pool_video_pretraining.py"
    curves = {  # run: (success at steps 10 and 20, return there or None where the run kept none)
        "reach_scratch_s0": ((0.0, 0.2), (100, 120)), "reach_scratch_s1": ((0.0, 0.0), (90, 110)),
        "reach_apv_s0": ((0.2, 0.4), (200, 220)), "reach_apv_s1": ((0.1, 0.3), (150, 170)),
        "drawer-open_scratch_s0": ((0.0, 0.0), (50, 60)), "drawer-open_scratch_s1": ((0.0, 0.1), (40, 90)),
        "drawer-open_apv_s0": ((0.1, 0.1), None), "drawer-open_prelar_s0": ((0.2, 0.2), (70, 90)),
    }
    lines = ["run,method,seed,env_step,success,return,machine"]
    for run, (success, ret) in curves.items():
        _, method, seed = run.rsplit("_", 2)
        lines += [f"{run},{method},{seed[1:]},{step},{success[i]},{'' if ret is None else ret[i]},here"
                  for i, step in enumerate((10, 20))]
    reach, drawer = tmp_path / "reach.csv", tmp_path / "drawer.csv"  # one csv per task, as each task's pooling wrote
    reach.write_text("\n".join(lines[:9]) + "\n")
    drawer.write_text("\n".join(lines[:1] + lines[9:]) + "\n")
    command = [sys.executable, str(script), "--earlier", str(reach), str(drawer), "--out", str(tmp_path / "tasks")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "pool one task at a time, or give --across" in done.stderr
    done = subprocess.run([*command, "--across"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "tasks.md").read_text().splitlines()
    assert table[2] == "| task | scratch | apv | prelar |"
    # Success per task: each run averaged over its evaluations; prelar ran on drawer-open only.
    assert table[4] == ("| `drawer-open` | 0.03 ± 0.03 (2) | 0.10 ± 0.00 (1; 1.00, p 0.33) | "
                        "0.20 ± 0.00 (1; 1.00, p 0.33) |")
    assert table[5] == "| `reach` | 0.05 ± 0.05 (2) | 0.25 ± 0.05 (2; 1.00, p 0.17) | – |"
    # Return: drawer-open's apv run kept none.
    assert "| `drawer-open` | 60 ± 5 (2) | – | 80 ± 0 (1; 1.00, p 0.33) |" in table
    success = [([0.3, 0.2], [0.1, 0.0]), ([0.1], [0.0, 0.05])]  # (apv, scratch) per task: reach, drawer-open
    improvement, p = stratified_probability_of_improvement(success), stratified_permutation_p_value(success)
    assert (improvement, round(p, 4)) == (1.0, round(1 / 18, 4))  # 6 × 3 joint relabellings, only the observed
    apv = next(line for line in table if line.startswith("| apv |"))
    assert apv == (f"| apv | drawer-open, reach | {(0.25 + 0.1) / 2:.2f} / {(0.05 + 0.025) / 2:.2f} | "
                   f"1.00, p {p:.2f} | 185 / 105 (reach) | 1.00, p 0.17 |")
    assert next(line for line in table if line.startswith("| prelar |")).startswith("| prelar | drawer-open | 0.20 / 0.03")


def test_video_pretraining_benchmark_runs_quick(tmp_path):
    """The comparison pipeline end to end: expert videos → APV pretraining → scratch and APV fine-tuning →
    curves and the table, with the pretrained weights loaded into the fine-tuned run."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "video_pretraining.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--seeds", "0", "--sources", "door-open",
                           "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "video_pretraining_quick.json").read_text())
    assert result["settings"]["seeds"] == "0" and str(tmp_path) not in json.dumps(result)  # no local paths
    assert set(result["tables"]["eval/success"]) == {"metaworld:reach · scratch · dreamerv2_metaworld",
                                                    "metaworld:reach · apv · dreamerv2_metaworld"}
    assert result["reused"] == [] and result["timings_s"]["pretrain_apv_s"] > 0
    runs = result["runs"]  # each run's own curve, for pooling seeds across stops
    assert set(runs) == {"reach_scratch_s0", "reach_apv_s0"}
    assert runs["reach_apv_s0"]["eval/success"]["env_steps"][-1] == 60
    assert all(0.0 <= v <= 1.0 for v in runs["reach_apv_s0"]["eval/success"]["values"])
    # Pooling with runs recorded at an earlier stop: one table row per method over all its seeds.
    pool = [sys.executable, str(script.with_name("pool_video_pretraining.py")), str(tmp_path / "results" /
            "video_pretraining_quick.json"), "--out", str(tmp_path / "pooled")]
    earlier = tmp_path / "earlier.csv"
    last = runs["reach_apv_s0"]["eval/success"]["values"][-1]
    earlier.write_text("run,method,seed,env_step,success,return,machine\n"
                       f"reach_apv_s7,apv,7,60,{1.0 - last},,elsewhere\n")
    done = subprocess.run([*pool, "--earlier", str(earlier)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "pooled.md").read_text().splitlines()
    apv = next(line for line in table if line.startswith("| apv | 0,7 |"))
    cell = f"{0.5:.2f} ± {abs(1.0 - 2 * last) / 2:.2f} |"  # the runs share one evaluation: its average is it
    assert apv.count(cell) == 2 and apv.endswith("| 1, 2 |")
    assert "nan" not in apv and " ± 0 (1 of 2 seeds) |" in apv  # the earlier run kept no return
    # In return too, over the evaluation both apv runs made; the run that kept no return is left out.
    ret = {name: dict(zip(c["eval/return_mean"]["env_steps"], c["eval/return_mean"]["values"]))
           for name, c in runs.items()}
    ours, theirs = [ret["reach_apv_s0"][60]], [ret["reach_scratch_s0"][60]]
    assert (f"| {ours[0]:.0f} ± 0 (1 of 2 seeds) | {probability_of_improvement(ours, theirs):.2f}, "
            f"p = {permutation_p_value(ours, theirs):.2f} | 1, 2 |") in apv
    assert table[-1].startswith("Machines: 1: ") and table[-1].endswith("; 2: elsewhere.")  # sorted by name
    assert any(line.startswith("| scratch | 0 |") for line in table)
    assert (tmp_path / "pooled_success.png").stat().st_size > 0
    assert len((tmp_path / "pooled_runs.csv").read_text().splitlines()) == 1 + 1 + sum(
        len(c["eval/success"]["values"]) for c in runs.values())
    earlier.write_text("run,method,seed,env_step,success,return,machine\nreach_apv_s0,apv,0,60,0.5,,elsewhere\n")
    done = subprocess.run([*pool, "--earlier", str(earlier)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "reach_apv_s0 appear in more than one input" in done.stderr
    earlier.write_text("run,method,seed,env_step,success,return,machine\n"
                       "drawer-open_apv_s0,apv,0,60,0.5,,elsewhere\n")  # another task: never pooled with reach
    done = subprocess.run([*pool, "--earlier", str(earlier)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "runs of several tasks (drawer-open: earlier.csv; reach: " in done.stderr
    assert table[0] == "metaworld:reach"
    init = json.loads((tmp_path / "work" / "reach_apv_s0" / "init.json").read_text())
    assert init["loaded"] > 0 and not init["mismatched"]
    assert not (tmp_path / "work" / "reach_scratch_s0" / "init.json").exists()
    for name in ("success.png", "return.png", "success.csv"):
        assert (tmp_path / "results" / f"video_pretraining_quick_{name}").stat().st_size > 0
    assert "| metaworld:reach · apv" in (tmp_path / "results" / "video_pretraining_quick.md").read_text()
    timings = json.loads((tmp_path / "work" / "timings.json").read_text())  # kept across re-runs
    assert set(timings) == {"collect_s", "pretrain_apv_s", "reach_scratch_s0_s", "reach_apv_s0_s"}
    assert timings == result["timings_s"] and all(t > 0 for t in timings.values())
    # Adding to the comparison later: the finished pretraining is reused, not re-timed as a few seconds of work.
    again = subprocess.run([sys.executable, str(script), "--quick", "--seeds", "0", "--sources", "door-open",
                            "--methods", "apv", "--no-scratch", "--name", "again", "--work", str(tmp_path / "work"),
                            "--out", str(tmp_path / "results")],
                           capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    second = json.loads((tmp_path / "results" / "again.json").read_text())
    assert second["reused"] == ["pretrain_apv"]
    assert second["timings_s"]["pretrain_apv_s"] == timings["pretrain_apv_s"]

    # A method added later to the same work folder: collection and the finished runs are not redone, the
    # scratch runs are skipped, and the new steps' timings join the old ones.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "reach_scratch_s0").rglob("*") if p.is_file()}
    prelar = [sys.executable, str(script), "--quick", "--seeds", "0", "--sources", "door-open", "--methods", "prelar",
              "--no-scratch", "--name", "added", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results")]
    # --pretrain-only stops after pretraining (seeds then fine-tune in parallel); it times the pretraining.
    done = subprocess.run([*prelar, "--pretrain-only"], capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "work" / "pretrain_prelar" / "checkpoints").is_dir()
    assert not (tmp_path / "work" / "reach_prelar_s0").exists() and not (tmp_path / "results" / "added.json").exists()
    assert set(json.loads((tmp_path / "work" / "timings.json").read_text())) == set(timings) | {"pretrain_prelar_s"}
    done = subprocess.run(prelar, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    added = json.loads((tmp_path / "results" / "added.json").read_text())
    assert added["reused"] == ["pretrain_prelar"]
    assert set(added["tables"]["eval/success"]) == {"metaworld:reach · prelar · dreamerv2_metaworld"}
    assert set(added["timings_s"]) == set(timings) | {"pretrain_prelar_s", "reach_prelar_s0_s"}
    assert all(added["timings_s"][k] >= v for k, v in timings.items())
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "reach_scratch_s0").rglob("*")
                      if p.is_file()}
    assert json.loads((tmp_path / "work" / "reach_prelar_s0" / "init.json").read_text())["loaded"] > 0
    # A variant of a method (--set … --tag …) runs beside it under its own name, reusing videos and pretraining.
    base = [sys.executable, str(script), "--quick", "--seeds", "0", "--sources", "door-open", "--methods", "apv",
            "--no-scratch", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results")]
    done = subprocess.run([*base, "--set", "agent.intrinsic=none"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "give --tag too" in done.stderr
    done = subprocess.run([sys.executable, str(script), "--methods", "", "--pretrain-only", "--work",
                           str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "nothing to pretrain" in done.stderr and not (tmp_path / "none").exists()
    done = subprocess.run([*base, "--set", "agent.intrinsic=none", "--tag", "nobonus", "--name", "variant"],
                          capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert set(json.loads((tmp_path / "results" / "variant.json").read_text())["runs"]) == {"reach_apv-nobonus_s0"}
    variant = (tmp_path / "work" / "reach_apv-nobonus_s0" / "config.yaml").read_text()
    assert "intrinsic: none" in variant and "intrinsic: video" in (tmp_path / "work" / "reach_apv_s0" /
                                                                   "config.yaml").read_text()
    assert json.loads((tmp_path / "work" / "reach_apv-nobonus_s0" / "init.json").read_text())["loaded"] > 0
    assert set(json.loads((tmp_path / "work" / "timings.json").read_text())) == set(added["timings_s"]) | {
        "reach_apv-nobonus_s0_s"}
