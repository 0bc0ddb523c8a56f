"""report: markdown tables from a hand-written results file, PNGs when matplotlib exists."""
import json
import os

import pytest

from mmrec_plugin.analysis import report as report_mod
from mmrec_plugin.analysis.report import compare, report
from mmrec_plugin.errors import DataError


def _analysis(ratios, per_type=None):
    names = ["redundant", "fusion_degraded", "visual_unique", "text_unique", "synergy", "all_fail"]
    a = {
        "n_pairs": 10,
        "k": 20,
        "partition": {n: {"count": int(r * 10), "ratio": r} for n, r in zip(names, ratios)},
        "seed_subsets": {
            "U_t": {"count": 1, "ratio": 0.1},
            "U_v": {"count": 0, "ratio": 0.0},
            "U_tv": {"count": int(ratios[4] * 10), "ratio": ratios[4]},
            "U_r": {"count": int(ratios[1] * 10), "ratio": ratios[1]},
        },
    }
    if per_type:
        a["per_type_recall"] = per_type
    return a


def _results(tmp_path):
    ptr = {
        "text": {"recall": 0.5, "hits": 1, "n_pairs": 2},
        "visual": {"recall": None, "hits": 0, "n_pairs": 0},
        "synergy": {"recall": 0.25, "hits": 1, "n_pairs": 4},
        "redundant": {"recall": 0.75, "hits": 3, "n_pairs": 4},
    }
    combos = [
        {"id": "c0", "params": {"seed": 999, "orth_weight": 0.0}, "best_epoch": 3, "status": "ok",
         "valid": {"recall@20": 0.1, "ndcg@20": 0.05}, "test": {"recall@20": 0.09, "ndcg@20": 0.04},
         "analysis": _analysis([0.2, 0.1, 0.1, 0.2, 0.1, 0.3], ptr)},
        {"id": "c1", "params": {"seed": 999, "orth_weight": 0.5}, "best_epoch": 7, "status": "ok",
         "valid": {"recall@20": 0.12345, "ndcg@20": 0.06}, "test": {"recall@20": 0.11, "ndcg@20": 0.05},
         "analysis": _analysis([0.3, 0.0, 0.1, 0.1, 0.2, 0.3], ptr)},
        {"id": "c2", "params": {"seed": 999, "orth_weight": 1.0}, "best_epoch": None, "status": "nan_loss",
         "valid": {}, "test": {}},
    ]
    data = {"model": "BRMRS", "dataset": "toy", "hyper_parameters": ["seed", "orth_weight"],
            "combinations": combos, "best": combos[1], "selected_by": "recall@20"}
    path = tmp_path / "BRMRS-toy.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_report_markdown_rows(tmp_path):
    path = _results(tmp_path)
    out = tmp_path / "rep"
    written = report(path, str(out))
    md = (out / "report.md").read_text()
    assert written[0] == str(out / "report.md")
    lines = md.splitlines()
    assert "| id | seed | orth_weight | epoch | status | valid recall@20 | valid ndcg@20 | test recall@20 | test ndcg@20 |" in lines
    assert "| c0 | 999 | 0.0000 | 3 | ok | 0.1000 | 0.0500 | 0.0900 | 0.0400 |" in lines
    assert "| c1 * | 999 | 0.5000 | 7 | ok | 0.1235 | 0.0600 | 0.1100 | 0.0500 |" in lines
    assert "| c2 | 999 | 1.0000 | - | nan_loss | - | - | - | - |" in lines
    # subset table: pairs, six classes, four seed subsets
    assert ("| c0 | 999 | 0.0000 | 10 | 0.2000 | 0.1000 | 0.1000 | 0.2000 | 0.1000 | 0.3000 "
            "| 0.1000 | 0.0000 | 0.1000 | 0.1000 |") in lines
    assert "| id | seed | orth_weight | text (n) | visual (n) | synergy (n) | redundant (n) |" in lines
    assert "| c1 * | 999 | 0.5000 | 0.5000 (2) | - | 0.2500 (4) | 0.7500 (4) |" in lines
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_report_pngs_when_matplotlib_present(tmp_path):
    pytest.importorskip("matplotlib")
    path = _results(tmp_path)
    written = report(path, str(tmp_path / "rep"))
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["per_type_recall.png", "report.md", "sweep_orth_weight.png"]
    for p in written:
        if p.endswith(".png"):
            with open(p, "rb") as fh:
                assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_without_matplotlib_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(report_mod, "_matplotlib", lambda: None)
    notes = []
    written = report(_results(tmp_path), str(tmp_path / "rep"), notes=notes)
    assert [os.path.basename(p) for p in written] == ["report.md"]
    assert notes and "pip install matplotlib" in notes[0]


def test_compare_and_gamma_sweep(tmp_path):
    path = _results(tmp_path)
    written = compare([path, path], str(tmp_path / "cmp"), labels=["brmrs", "fused_bpr"])
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| brmrs | c1 | 0.1100 | 0.0500 | 0.1000 | 0.0000 | 0.2000 | 0.0000 | 0.5000 (2) | - | 0.2500 (4) | 0.7500 (4) |" in md
    assert written[0].endswith("comparison.md")
    summary = {"k": 20, "gammas": [0.0, 2.0], "rows": [
        {"gamma_s": g, "dataset": f"d{g}", "variant": v, "valid": {"recall@20": 0.1}, "test": {"recall@20": 0.2},
         "per_type_recall": {"synergy": {"recall": 0.1 * (g + 1), "hits": 1, "n_pairs": 3}}}
        for g in (0.0, 2.0) for v in ("brmrs", "fused_bpr")]}
    sp = tmp_path / "gamma_sweep.json"
    sp.write_text(json.dumps(summary))
    written = report(str(sp), str(tmp_path / "g"))
    md = (tmp_path / "g" / "gamma_sweep.md").read_text()
    assert "| 2.0000 | d2.0 | fused_bpr | 0.1000 | 0.2000 | - | - | 0.3000 (3) | - |" in md


def test_report_bad_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        report(str(tmp_path / "nope.json"), str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{\n oops")
    with pytest.raises(DataError, match="line 2"):
        report(str(bad), str(tmp_path))


def test_sweep_plot_stacks_the_six_way_partition(tmp_path, monkeypatch):
    """The third panel of sweep_<key>.png: one stacked bar per swept value, the class ratios
    of that combination in CLASSES order (heights = the recorded ratios)."""
    pytest.importorskip("matplotlib")
    figs = []
    real_save = report_mod._save_figure_atomic

    def keep(fig, path):
        if os.path.basename(path).startswith("sweep_"):
            ax = fig.axes[2]
            figs.append([(round(p.get_x() + p.get_width() / 2, 6), p.get_y(), p.get_height())
                         for p in ax.patches])
        return real_save(fig, path)

    monkeypatch.setattr(report_mod, "_save_figure_atomic", keep)
    report(_results(tmp_path), str(tmp_path / "rep"))
    assert len(figs) == 1
    bars = figs[0]
    c0 = [0.2, 0.1, 0.1, 0.2, 0.1, 0.3]
    c1 = [0.3, 0.0, 0.1, 0.1, 0.2, 0.3]
    # bars are drawn class by class (all_fail, the rest, left out), each class over the two
    # analysed values 0.0 and 0.5 at evenly spaced slots 0 and 1
    assert len(bars) == 10
    for j in range(5):
        for (x, y, h), ratios, slot in ((bars[2 * j], c0, 0), (bars[2 * j + 1], c1, 1)):
            assert x == pytest.approx(slot)
            assert h == pytest.approx(ratios[j])
            assert y == pytest.approx(sum(ratios[:j]))
