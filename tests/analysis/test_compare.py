"""mmrec-plugin compare: the statistics against hand-worked cases and naive references, the
per-user metrics against the grid's records, and the command end to end on the demo data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmrec_plugin.analysis import compare, stats, variants
from mmrec_plugin.errors import UserError


# ------------------------------------------------------------------------------ statistics
def test_mean_sd_hand_worked():
    assert stats.mean_sd([1.0, 2.0, 3.0]) == {"mean": 2.0, "sd": 1.0, "n": 3}  # sample sd
    assert stats.mean_sd([0.5]) == {"mean": 0.5, "sd": None, "n": 1}
    assert stats.mean_sd([None, 4.0, 6.0]) == {"mean": 5.0, "sd": pytest.approx(2 ** 0.5), "n": 2}


def test_paired_test_hand_worked_with_given_resamples():
    v = np.array([1.0, 0.0, 1.0])
    b = np.array([0.0, 0.0, 1.0])
    index = np.array([[0, 1, 2], [0, 0, 0], [1, 1, 2]])
    # resample means: v 2/3, 1, 1/3; b 1/3, 0, 1/3 -> deltas 1/3, 1, 0
    r = stats.paired_test(v, b, index=index)
    assert r["delta"] == pytest.approx(1 / 3)
    assert r["rel_pct"] == pytest.approx(100.0)  # (2/3 - 1/3) / (1/3)
    # linear quantiles of the sorted deltas [0, 1/3, 1]: positions 0.05 and 1.95
    assert r["delta_ci"] == pytest.approx([0.05 * (1 / 3), 1 / 3 + 0.95 * (2 / 3)])
    assert r["p_boot"] == pytest.approx(2 / 3)  # 2 * min(P(<= 0) = 1/3, P(>= 0) = 1)
    # relative: 100 * delta / b-mean = 100, inf (b-mean 0: dropped), 0 -> [0, 100]
    assert r["rel_pct_ci"] == pytest.approx([2.5, 97.5])
    assert r["n_users"] == 3 and r["n_boot"] == 3


def test_bootstrap_equals_naive_loop():
    rng = np.random.default_rng(5)
    v, b = rng.random(7), rng.random(7)
    index = rng.integers(0, 7, size=(50, 7))
    mv, mb = stats.bootstrap_sums(v, b, 50, index=index)
    naive_v = [sum(v[i] for i in row) / 7 for row in index]
    naive_b = [sum(b[i] for i in row) / 7 for row in index]
    assert np.allclose(mv, naive_v) and np.allclose(mb, naive_b)


def test_bootstrap_blocks_draw_the_same_resamples(monkeypatch):
    rng = np.random.default_rng(1)
    v, b = rng.random(9), rng.random(9)
    ref = np.random.default_rng(3).integers(0, 9, size=(40, 9))
    want = stats.bootstrap_sums(v, b, 40, index=ref)
    monkeypatch.setattr(stats, "_BOOT_BLOCK", 9 * 7)  # blocks of 7 resamples
    got = stats.bootstrap_sums(v, b, 40, seed=3)
    assert np.allclose(got[0], want[0]) and np.allclose(got[1], want[1])


def test_bootstrap_distribution_of_two_users():
    # users with differences 0 and 1: a resample mean is 0, 0.5 or 1 with p 1/4, 1/2, 1/4
    mv, mb = stats.bootstrap_sums(np.array([0.0, 1.0]), np.zeros(2), 20000, seed=0)
    d = mv - mb
    assert set(np.round(d, 6)) == {0.0, 0.5, 1.0}
    assert np.mean(d == 0) == pytest.approx(0.25, abs=0.015)
    assert np.mean(d == 0.5) == pytest.approx(0.5, abs=0.015)


def test_wilcoxon_hand_worked():
    # all 5 differences positive: W- = 0; exact two-sided p = 2 * 1 / 2^5
    r = stats.wilcoxon_test(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert r["statistic"] == 0 and r["p_value"] == pytest.approx(2 / 32)
    # ranks 1..5, the -2 gives W- = 2; subsets of {1..5} with sum <= 2: {}, {1}, {2}
    # -> p = 2 * 3 / 32; a zero difference is dropped
    r = stats.wilcoxon_test(np.array([0.0, 1.0, -2.0, 3.0, 4.0, 5.0]))
    assert r["statistic"] == 2 and r["p_value"] == pytest.approx(6 / 32)
    assert r["n_nonzero"] == 5
    assert stats.wilcoxon_test(np.zeros(4)) == {"statistic": None, "p_value": None, "n_nonzero": 0}


def test_analyse_pairs_by_seed_and_user():
    users = np.arange(4)

    def run(rec, nd, test_rec):
        return {"per_user": {"users": users, "recall@20": np.array(rec), "ndcg@20": np.array(nd)},
                "test": {"recall@20": test_rec}, "valid": {"recall@20": 0.1}, "best_epoch": 3}

    runs = {
        "base": {1: run([0, 1, 0, 0.5], [0, 1, 0, 0.5], 0.375), 2: run([0, 0, 1, 0.5], [0, 0, 1, 0.5], 0.375)},
        "var": {1: run([1, 1, 0, 0.5], [1, 1, 0, 0.5], 0.625), 2: run([0, 1, 1, 0.5], [0, 1, 1, 0.5], 0.625)},
    }
    out = stats.analyse(runs, "base", ["recall@20"], "recall@20", ["recall@20", "ndcg@20"], 500, 0)
    assert out["summary"]["var"]["test recall@20"] == {"mean": 0.625, "sd": 0.0, "n": 2}
    r = out["paired"]["var"]["recall@20"]
    # per user, averaged over seeds: var [0.5, 1, 0.5, 0.5], base [0, 0.5, 0.5, 0.5]
    assert r["variant"] == pytest.approx(0.625) and r["baseline"] == pytest.approx(0.375)
    assert r["delta"] == pytest.approx(0.25) and r["rel_pct"] == pytest.approx(100 * 0.25 / 0.375)
    assert r["per_seed_delta"] == {"1": 0.25, "2": 0.25} and r["seeds_won"] == 2
    assert r["wilcoxon"]["n_nonzero"] == 2
    assert out["paired"]["var"]["seeds"] == [1, 2]


# ------------------------------------------------------------------------------ parsing
def test_variant_options_and_spec(tmp_path):
    got = variants.parse_variant_options([["default"], ["nochns", "chns_weight=0", "reg_weight=[1e-4, 1e-3]"]])
    assert got == {"default": {}, "nochns": {"chns_weight": 0, "reg_weight": [1e-4, 1e-3]}}
    with pytest.raises(UserError, match="KEY=VALUE"):
        variants.parse_variant_options([["x", "chns_weight"]])
    with pytest.raises(UserError, match="twice"):
        variants.parse_variant_options([["x"], ["x"]])
    with pytest.raises(UserError, match="variant name"):
        variants.parse_variant_options([["a/b"]])
    path = tmp_path / "v.yaml"
    path.write_text("baseline: lgcn\nseeds: [1, 2]\nvariants:\n  default:\n  lgcn: {model: LightGCN}\n")
    spec = variants.load_spec(str(path))
    assert spec["variants"] == {"default": {}, "lgcn": {"model": "LightGCN"}}
    assert spec["baseline"] == "lgcn" and spec["seeds"] == [1, 2]
    path.write_text("variants: {a: {}}\nbaseline: a\nsedes: [1]\n")
    with pytest.raises(UserError, match="sedes"):
        variants.load_spec(str(path))


# ------------------------------------------------------------------------------ end to end
def _main(argv):
    from mmrec_plugin.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def demo_compare(tmp_path_factory):
    from mmrec_plugin.data.synthetic import ensure_demo

    root = tmp_path_factory.mktemp("compare")
    ensure_demo(str(root / "data" / "demo"))
    argv = ["compare", "-d", "demo", "--data-path", str(root / "data"), "--results-dir",
            str(root / "res"), "--seeds", "999", "1", "--variant", "default",
            "--variant", "lgcn", "model=LightGCN", "--set", "epochs=2", "--set", "stopping_step=0",
            "--pin-grid", "--bootstrap", "500"]
    return root, argv


def test_compare_end_to_end(demo_compare, capsys):
    root, argv = demo_compare
    assert _main(argv) == 0
    printed = capsys.readouterr().out
    res = root / "res"
    assert "| default (baseline) | BRMRS | 2/2 |" in printed
    assert (res / "compare.md").read_text().strip() in printed
    try:
        import matplotlib  # noqa: F401
        assert (res / "compare_metrics.png").is_file() and (res / "compare_paired.png").is_file()
    except ImportError:
        assert "note: PNG plots need matplotlib" in printed
    result = json.loads((res / "compare.json").read_text())
    assert result["missing"] == [] and result["baseline"] == "default"
    for name, model in (("default", "BRMRS"), ("lgcn", "LightGCN")):
        runs = result["variants"][name]["runs"]
        assert sorted(runs) == ["1", "999"]
        for seed, run in runs.items():
            with open(res / name / f"seed{seed}" / f"{model}-demo.json") as fh:
                summary = json.load(fh)
            best = summary["best"]
            assert run["combination"] == best["id"] and summary["n_combinations"] == 1
            # the per-user values of the reloaded best-valid model average to the grid's record
            with np.load(res / name / f"seed{seed}" / f"peruser-{best['id']}-test.npz") as z:
                for m in ("recall@20", "ndcg@20"):
                    assert z[m].mean() == pytest.approx(best["test"][m], abs=1e-9)
                assert len(z["users"]) == len(z["recall@20"])
        vals = [runs[s]["test"]["recall@20"] for s in ("999", "1")]
        assert result["summary"][name]["test recall@20"]["mean"] == pytest.approx(np.mean(vals))
        assert result["summary"][name]["test recall@20"]["sd"] == pytest.approx(np.std(vals, ddof=1))
    # the paired difference is the difference of the recorded means (same test users)
    base = result["variants"]["default"]["runs"]
    lg = result["variants"]["lgcn"]["runs"]
    r = result["paired"]["lgcn"]["ndcg@20"]
    want = np.mean([lg[s]["test"]["ndcg@20"] - base[s]["test"]["ndcg@20"] for s in ("999", "1")])
    assert r["delta"] == pytest.approx(want, abs=1e-9)
    assert r["delta_ci"][0] <= r["delta"] <= r["delta_ci"][1]
    assert 0 <= r["wilcoxon"]["p_value"] <= 1


def test_compare_resumes_and_reports_missing(demo_compare, capsys, caplog):
    root, argv = demo_compare
    res = root / "res"
    if not (res / "compare.json").exists():
        assert _main(argv) == 0
    models = sorted((res / "default" / "seed1" / "models").iterdir())
    stamp = [m.stat().st_mtime_ns for m in models]
    capsys.readouterr()
    assert _main(argv) == 0  # everything finished: nothing retrained
    assert [m.stat().st_mtime_ns for m in sorted((res / "default" / "seed1" / "models").iterdir())] == stamp
    # a third seed with --report-only: reported as missing, nothing trained
    assert _main(argv[:8] + ["999", "1", "7"] + argv[10:] + ["--report-only"]) == 0
    out = capsys.readouterr().out
    assert "default/seed7" in out and not (res / "default" / "seed7").exists()
    assert json.loads((res / "compare.json").read_text())["missing"] == ["default/seed7", "lgcn/seed7"]


def test_compare_user_errors(demo_compare, capsys):
    root, argv = demo_compare
    base = argv[:7]
    assert _main(base + ["--variant", "a", "seed=3"]) == 2
    assert "'seed' is set by the protocol" in capsys.readouterr().err
    assert _main(base + ["--variant", "a", "chns_wieght=0"]) == 2
    assert "did you mean 'chns_weight'" in capsys.readouterr().err
    assert _main(base + ["--variant", "a", "--baseline", "b"]) == 2
    assert "--baseline 'b' is not a variant" in capsys.readouterr().err
    assert _main(base) == 2
    assert "no variants" in capsys.readouterr().err


def test_per_user_metrics_of_bpr_equal_the_record(tmp_path):
    from mmrec_plugin.data.synthetic import ensure_demo
    from mmrec_plugin.runs import quick_start

    ensure_demo(str(tmp_path / "data" / "demo"))
    summary = quick_start("BPR", "demo", config_dict={
        "data_path": str(tmp_path / "data"), "results_dir": str(tmp_path / "r"), "epochs": 2,
        "topk": [5, 10, 20]})
    best = summary["best"]
    got = compare.per_user_test(summary["path"], best)
    for key, value in best["test"].items():
        assert got[key].mean() == pytest.approx(value, abs=1e-9)
    assert os.path.isfile(tmp_path / "r" / f"peruser-{best['id']}-test.npz")
