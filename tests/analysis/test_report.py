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


# --------------------------------------------------------- malformed results files, via the CLI
def _good():
    c = {"id": "0123456789ab", "params": {"seed": 1}, "valid": {"recall@20": 0.1},
         "test": {"recall@20": 0.1}, "best_epoch": 1, "status": "ok"}
    return {"model": "BPR", "dataset": "toy", "combinations": [c], "best": dict(c),
            "hyper_parameters": ["seed"], "selected_by": "valid recall@20"}


def _with(path, value):
    """The good results with the field at ``path`` (a tuple of keys/indexes) set to value."""
    data = _good()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if path[:2] == ("combinations", 0) and isinstance(data["combinations"][0], dict):
        data["best"] = dict(data["combinations"][0])
    return json.dumps(data).encode()


MALFORMED = [
    ("empty", b"", "is not valid JSON (line 1)"),
    ("truncated", json.dumps(_good()).encode()[:-20], "is not valid JSON"),
    ("not UTF-8", b'{"combinations": ["\xff"]}', "line 1: not a UTF-8 text file"),
    ("a list", b"[1, 2]", "the top level must be an object, not a list"),
    ("a number", b"3", "the top level must be an object, not a int"),
    ("no combinations", b'{"model": "BPR"}', "has neither 'combinations'"),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ("huge integer", b'{"combinations": [], "k": 1' + b"0" * 5000 + b"}", "cannot be read as JSON"),
    ("combination not an object", _with(("combinations", 0), 5), "combinations[0] must be an object"),
    ("hostile id", _with(("combinations", 0, "id"), "/../../name"),
     "combinations[0].id '/../../name': it contains a path separator"),
    ("id with NUL", _with(("combinations", 0, "id"), "ab\x00cd"), "it contains a NUL byte"),
    ("id a number", _with(("combinations", 0, "id"), 12), "combinations[0].id must be a text"),
    ("best id", _with(("best", "id"), "../x"), "best.id '../x'"),
    ("hostile dataset", _with(("dataset",), "../../etc"), "dataset '../../etc'"),
    ("params a list", _with(("combinations", 0, "params"), [1]), "params must be an object"),
    ("params nan", _with(("combinations", 0, "params", "seed"), float("nan")),
     "params.seed must be a finite number"),
    ("valid a list", _with(("combinations", 0, "valid"), [0.1]), "valid must be an object"),
    ("metric a text", _with(("combinations", 0, "test", "recall@20"), "high"),
     "test.recall@20 must be a number"),
    ("metric a bool", _with(("combinations", 0, "test", "recall@20"), True),
     "test.recall@20 must be a number"),
    ("analysis k a text", _with(("combinations", 0, "analysis"), {"k": "20"}),
     "analysis.k must be an integer"),
    ("partition ratio a text", _with(("combinations", 0, "analysis"),
                                     {"partition": {"synergy": {"ratio": "x"}}}),
     "analysis.partition.synergy.ratio must be a number"),
    ("hyper_parameters a text", _with(("hyper_parameters",), "seed"),
     "hyper_parameters must be a list of key names"),
    ("sweep row without gamma", json.dumps({"rows": [{"variant": "a"}]}).encode(),
     "rows[0].gamma_s must be a number"),
]


@pytest.mark.parametrize("case, payload, needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_results_are_one_error_line(tmp_path, capsys, case, payload, needle):
    # `analyze` and `compare --report-only` on the same files: tests/host_run/test_hostile_inputs.py
    from mmrec_plugin.cli import main

    path = tmp_path / "BPR-toy.json"
    path.write_bytes(payload)
    code = main(["report", str(path)])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, err
    assert str(path) in lines[0] and needle in lines[0], lines[0]
    assert len(lines[0]) < 1000  # never the whole file
    assert sorted(os.listdir(tmp_path)) == ["BPR-toy.json"]  # nothing written


def test_results_file_kinds_and_size(tmp_path, capsys, monkeypatch):
    from mmrec_plugin import limits
    from mmrec_plugin.analysis.report import load_results

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # must not block
    with pytest.raises(DataError, match="is not a regular file"):
        load_results(str(fifo))
    with pytest.raises(DataError, match="is a folder"):
        load_results(str(tmp_path))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_good()))
    assert load_results(str(path))["best"]["id"] == "0123456789ab"
    monkeypatch.setattr(limits, "MAX_RESULTS_BYTES", 100)
    with pytest.raises(DataError, match="at most 100 are read"):
        load_results(str(path))


def test_report_out_must_be_a_folder(tmp_path, capsys):
    from mmrec_plugin.cli import main

    path = tmp_path / "r.json"
    path.write_text(json.dumps(_good()))
    a_file = tmp_path / "FILE"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        code = main(["report", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "--out" in lines[0], err
    assert sorted(os.listdir(tmp_path)) == ["FILE", "r.json"]


def test_written_report_files_refuse_a_folder_in_the_way_and_a_full_disk(tmp_path, monkeypatch):
    import errno

    from mmrec_plugin.errors import UserError

    (tmp_path / "rep" / "report.md").mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(UserError, match="report.md: is a folder"):
        report(_results(tmp_path), str(tmp_path / "rep"))

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_mod, "atomic_write_text", full_disk)
    with pytest.raises(UserError, match="x.md could not be written \\(No space left on device\\)"):
        report_mod.write_text_atomic(str(tmp_path / "x.md"), "x")
    assert not (tmp_path / "x.md").exists()
