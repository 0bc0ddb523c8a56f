"""A combination killed with SIGKILL in the middle of its training resumes from its last
epoch checkpoint (not from epoch 0) and ends with exactly the result, history and weights
of an uninterrupted run; the checkpoint is gone once the combination is committed."""
import json
import os
import subprocess
import sys

import torch

HANG_GUARD_S = 1800  # a guard against a hung child, not a speed assertion


def _run(toy_grid, folder, data, **env):
    return subprocess.run(
        [sys.executable, toy_grid.PATH, str(data), "0.01", "--epochs", "6", "--stopping_step", "10"],
        cwd=folder, env=dict(os.environ, OMP_NUM_THREADS="1", TOY_MODEL="EpochToy",
                             TOY_DIR=str(folder), **env),
        capture_output=True, text=True, timeout=HANG_GUARD_S)


def _comparable(obj):
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items()
                if k not in ("seconds", "eval_seconds", "path", "model_path", "results_dir", "provenance")}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def test_kill_9_mid_combination_resumes_to_the_same_result(tmp_path, toy_grid):
    toy_grid.write_tiny(tmp_path / "data")
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    plain.mkdir(), killed.mkdir()

    ref = _run(toy_grid, plain, tmp_path / "data")
    assert ref.returncode == 0, ref.stderr

    first = _run(toy_grid, killed, tmp_path / "data", KILL_EPOCH="4")  # dies as epoch 4 starts
    assert first.returncode == -9, first.stderr
    ckpts = os.listdir(killed / "res" / "checkpoints")
    assert len(ckpts) == 1
    saved = torch.load(killed / "res" / "checkpoints" / ckpts[0], weights_only=True)
    assert saved["trainer"]["epoch"] == 3  # epochs 0, 1, 2 finished

    second = _run(toy_grid, killed, tmp_path / "data", KILL_EPOCH="4")
    assert second.returncode == 0, second.stderr
    assert "resuming at epoch 3 from its checkpoint" in second.stderr
    assert "epoch 0:" not in second.stderr and "epoch 3:" in second.stderr
    assert os.listdir(killed / "res" / "checkpoints") == []

    a = json.loads((plain / "res" / "EpochToy-tiny.json").read_text())
    b = json.loads((killed / "res" / "EpochToy-tiny.json").read_text())
    assert len(a["combinations"][0]["history"]) == 6
    assert _comparable(a) == _comparable(b)
    wa = torch.load(plain / a["best"]["model_path"], weights_only=True)["state_dict"]
    wb = torch.load(killed / b["best"]["model_path"], weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
