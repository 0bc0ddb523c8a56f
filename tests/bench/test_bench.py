"""Tests for mmrec_plugin.bench: the table and ratios on hand-made records, and one tiny
end-to-end ``measure`` per model on a generated dataset (keys and sane values; no timings)."""
import math

import pytest

from mmrec_plugin import bench
from mmrec_plugin.data.synthetic import generate


def _rec(model, **kw):
    r = {"model": model, "build_cpu_s": 1.0, "epoch_cpu_s": 2.0, "epoch_s": 4.0,
         "eval_cpu_s": 3.0, "floor_cpu_s": 1.5, "eval_over_floor_cpu": 2.0, "peak_rss_mb": 500.0}
    r.update(kw)
    return r


def test_format_table_rows_and_ratio_row():
    base = _rec("LightGCN")
    other = _rec("BRMRS", build_cpu_s=40.0, epoch_cpu_s=5.0, epoch_s=12.0, pool_select_cpu_frac=0.125,
                 eval_cpu_s=1.5, floor_cpu_s=1.0, eval_over_floor_cpu=1.5, peak_rss_mb=1500.0)
    lines = bench.format_table([base, other]).splitlines()
    assert len(lines) == 5  # header, rule, two models, one ratio row
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["model"] + [label for _, label in bench.COLUMNS]
    assert lines[1] == "|" + "---|" * (len(bench.COLUMNS) + 1)
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    keys = [k for k, _ in bench.COLUMNS]
    row_base, row_other, row_ratio = cells(lines[2]), cells(lines[3]), cells(lines[4])
    assert row_base[0] == "LightGCN" and row_other[0] == "BRMRS"
    # the baseline has no pools: "-"; small floats with 3 decimals, >= 100 without
    assert row_base[1 + keys.index("pool_select_cpu_frac")] == "-"
    assert row_other[1 + keys.index("pool_select_cpu_frac")] == "0.125"
    assert row_other[1 + keys.index("epoch_cpu_s")] == "5.000"
    assert row_other[1 + keys.index("peak_rss_mb")] == "1500"
    assert row_ratio[0] == "BRMRS / LightGCN"
    assert row_ratio[1 + keys.index("epoch_cpu_s")] == "2.50x"
    assert row_ratio[1 + keys.index("build_cpu_s")] == "40.00x"
    assert row_ratio[1 + keys.index("peak_rss_mb")] == "3.00x"
    assert row_ratio[1 + keys.index("eval_cpu_s")] == "0.50x"
    assert row_ratio[1 + keys.index("pool_select_cpu_frac")] == "-"  # no baseline value


def test_format_table_single_record_has_no_ratio_row():
    lines = bench.format_table([_rec("LightGCN")]).splitlines()
    assert len(lines) == 3


def test_ratios_against_first_record():
    base = _rec("LightGCN", epoch_cpu_s=4.0)
    a = _rec("BRMRS", epoch_cpu_s=10.0, peak_rss_mb=1000.0, pool_select_cpu_frac=0.1)
    b = _rec("BPR", epoch_cpu_s=1.0, build_cpu_s=None)
    out = bench.ratios([base, a, b])
    assert set(out) == {"BRMRS", "BPR"}
    assert out["BRMRS"]["epoch_cpu_s"] == pytest.approx(2.5)
    assert out["BRMRS"]["peak_rss_mb"] == pytest.approx(2.0)
    assert "pool_select_cpu_frac" not in out["BRMRS"]  # baseline has none
    assert out["BPR"]["epoch_cpu_s"] == pytest.approx(0.25)
    assert "build_cpu_s" not in out["BPR"]
    assert bench.ratios([base]) == {}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchdata")
    generate(root, "tinybench", n_users=80, n_items=50, n_interactions=800, k=4,
             image_dim=12, text_dim=6, seed=3)
    return str(root)


@pytest.mark.parametrize("model", ["LightGCN", "BRMRS"])
def test_measure_end_to_end_on_tiny_data(tiny, model):
    rec = bench.measure(model, "tinybench", {"data_path": tiny, "train_batch_size": 256,
                                             "eval_batch_size": 32})
    # the sizes, read from the interaction file by hand
    import csv

    with open(f"{tiny}/tinybench/tinybench.inter") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    n_train = sum(r["x_label"] == "0" for r in rows)
    test_users = {r["userID"] for r in rows if r["x_label"] == "2"}
    assert rec["model"] == model and rec["dataset"] == "tinybench"
    assert (rec["n_users"], rec["n_items"]) == (80, 50)
    assert rec["n_train"] == n_train and rec["n_eval_users"] == len(test_users)
    assert rec["batches"] == math.ceil(n_train / 256)
    for key in ("build_cpu_s", "first_epoch_cpu_s", "epoch_cpu_s", "eval_cpu_s", "floor_cpu_s"):
        assert isinstance(rec[key], float) and math.isfinite(rec[key]) and rec[key] > 0, key
    # the ratios are the ratios of the recorded times
    assert rec["eval_over_floor"] == pytest.approx(rec["eval_s"] / rec["floor_s"])
    assert rec["eval_over_floor_cpu"] == pytest.approx(rec["eval_cpu_s"] / rec["floor_cpu_s"])
    assert rec["peak_rss_mb"] > 10
    assert 0.0 <= rec["test_recall@20_untrained"] <= 1.0
    # the floor's width is the model's scoring width: BRMRS's default concat fusion scores
    # with [p_t; p_v], twice embedding_size
    assert rec["floor_dim"] == (128 if model == "BRMRS" else 64)
    if model == "BRMRS":
        assert 0.0 < rec["pool_select_cpu_s"] <= rec["epoch_cpu_s"]
        assert rec["pool_select_cpu_frac"] == pytest.approx(rec["pool_select_cpu_s"] / rec["epoch_cpu_s"])
        assert rec["pool_select_frac"] == pytest.approx(rec["pool_select_s"] / rec["epoch_s"])
    else:
        assert "pool_select_frac" not in rec and "pool_select_cpu_frac" not in rec
    table = bench.format_table([rec])
    assert f"| {model} |" in table


def test_bench_user_error_in_worker_is_one_error_line(tmp_path, capsys):
    # an unknown model fails inside the worker process; the user sees one `error:` line, exit 2,
    # not the worker's traceback
    from mmrec_plugin import cli

    code = cli.main(["bench", "-d", "demo", "--data-path", str(tmp_path), "--models", "NOPE"])
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert code == 2
    assert err[-1].startswith("error: ") and "NOPE" in err[-1]
    assert not any("Traceback" in l or l.startswith("  File ") for l in err), err
