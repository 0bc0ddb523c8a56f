"""analyze / report / study CLI end to end: a toy model with branch_scores, trained by the
host's grid search on tiny generated synthetic data."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmrec_plugin.data.synthetic as synthetic
import mmrec_plugin.host.abstract_recommender as abstract
from mmrec_plugin.runs import quick_start
from mmrec_plugin.analysis import cli
from mmrec_plugin.analysis import rerun
from mmrec_plugin.analysis.rerun import record_analysis
from mmrec_plugin.analysis.subsets import CLASSES  # noqa: E402
from mmrec_plugin.errors import UserError  # noqa: E402
from mmrec_plugin.registry import register_model  # noqa: E402


class ToyBranch(abstract.GeneralRecommender):
    """Three independent MF branches (t, v, f) trained with BPR; fused scores rank."""

    def __init__(self, config, dataloader):
        super().__init__(config, dataloader)
        self.u = nn.ModuleDict({m: nn.Embedding(self.n_users, 8) for m in "tvf"})
        self.i = nn.ModuleDict({m: nn.Embedding(self.n_items, 8) for m in "tvf"})
        self.to(self.device)

    def _s(self, m, users, items=None):
        if items is None:
            return self.u[m](users) @ self.i[m].weight.T
        return (self.u[m](users) * self.i[m](items)).sum(-1)

    def calculate_loss(self, interaction):
        u, p, n = interaction
        return sum(-F.logsigmoid(self._s(m, u, p) - self._s(m, u, n)).mean() for m in "tvf")

    def full_sort_predict(self, interaction):
        return self._s("f", interaction[0])

    def branch_scores(self, users):
        return {m: self._s(m, users) for m in "tvf"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    synthetic.generate(str(data), "toysyn", n_users=40, n_items=30, n_interactions=400, k=4,
                       min_per_user=5, max_per_user=15, seed=3)
    register_model("ToyBranch", ToyBranch)
    results = root / "results"
    summary = quick_start(
        "ToyBranch", "toysyn",
        config_dict={"data_path": str(data), "results_dir": str(results), "epochs": 2,
                     "learning_rate": [0.01, 0.05], "topk": [5, 10, 20]},
        analyze=record_analysis,
    )
    return root, summary


def _args(**kw):
    import argparse

    p = argparse.ArgumentParser()
    cli.add_analyze_arguments(p)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def test_analyze_matches_the_host_record_and_types(trained, capsys):
    root, summary = trained
    path = summary["path"]
    best = summary["best"]
    out = root / "a.json"
    assert cli.run_analyze(_args(results=path, out=out)) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["combination"] == best["id"] and res["k"] == 20
    if best.get("analysis"):
        # the host analysed the same model on the same test pairs
        assert res["partition"] == best["analysis"]["partition"]
        assert res["seed_subsets"] == best["analysis"]["seed_subsets"]
    assert sum(res["partition"][c]["count"] for c in CLASSES) == res["n_pairs"]
    # per-type recall: pair counts per type equal a plain lookup in the .types file
    data = root / "data" / "toysyn"
    table = synthetic.read_types(str(data), "toysyn")
    lookup = {(int(u), int(i)): t for u, i, t in zip(table["users"], table["items"], table["types"])}
    lines = (data / "toysyn.inter").read_text().splitlines()
    head = lines[0].split("\t")
    test_pairs = [tuple(int(x) for x in (f[head.index("userID")], f[head.index("itemID")]))
                  for f in (ln.split("\t") for ln in lines[1:]) if f[head.index("x_label")] == "2"]
    counts = {}
    for p in test_pairs:
        counts[lookup[p]] = counts.get(lookup[p], 0) + 1
    assert {t: e["n_pairs"] for t, e in res["per_type_recall"].items() if e["n_pairs"]} == counts
    assert "synergy" in printed and "U_tv" in printed and "redundant" in printed


def test_analyze_other_combination_valid_split_and_bad_id(trained):
    root, summary = trained
    other = [c for c in summary["combinations"] if c["id"] != summary["best"]["id"]][0]
    res = cli.analyze_results(summary["path"], combination=other["id"][:6], k=5, split="valid")
    assert res["combination"] == other["id"] and res["split"] == "valid" and res["k"] == 5
    with pytest.raises(UserError, match="available: best"):
        cli.analyze_results(summary["path"], combination="zzzz")


def test_report_cli_on_real_results(trained, capsys):
    root, summary = trained
    import argparse

    p = argparse.ArgumentParser()
    cli.add_report_arguments(p)
    out = root / "rep"
    assert cli.run_report(p.parse_args([summary["path"], "--out", str(out)])) == 0
    md = (out / "report.md").read_text()
    for c in summary["combinations"]:
        assert f"| {c['id']}" in md
    assert "Subset analysis" in md
    assert f"written: {out / 'report.md'}" in capsys.readouterr().out


def test_pair_types_for_vectorised_join(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.types").write_text("userID\titemID\ttype\n0\t1\ttext\n0\t2\tsynergy\n3\t0\tvisual\n")
    got = rerun.pair_types_for(str(folder), "d", np.array([3, 0, 0, 5]), np.array([0, 2, 1, 5]))
    assert list(got) == ["visual", "synergy", "text", "unknown"]
    assert rerun.pair_types_for(str(folder), "nope", np.array([0]), np.array([0])) is None


class _Payload:
    """Unpickled in full, this creates the file ``MARKER`` (a stand-in for any code)."""

    MARKER = ""

    def __reduce__(self):
        return (open, (_Payload.MARKER, "w"))


@pytest.mark.parametrize("loader", ["torch", "type_error", "no_weights_only"])
def test_analyze_never_unpickles_in_full(trained, tmp_path, monkeypatch, capsys, loader):
    """A crafted .pt whose unpickling would run code is refused: by torch's weights_only
    loader; when that loader fails with a TypeError (as it can on a crafted file) while
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 asks for full unpickling (the old code then loaded the
    file again without weights_only); and on a torch without weights_only (< 1.13)."""
    root, summary = trained
    marker = tmp_path / "code_ran"
    _Payload.MARKER = str(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": _Payload()}, "config": {}}, evil)
    results = json.loads(open(summary["path"]).read())
    results["best"]["model_path"] = str(evil)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    real_load = torch.load
    needle = "not unpickled in full"
    if loader == "type_error":
        def load(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
            if weights_only:
                raise TypeError("crafted argument")
            return real_load(f, map_location=map_location, weights_only=False, **kwargs)

        monkeypatch.setattr(torch, "load", load)
    elif loader == "no_weights_only":
        def load(f, map_location=None, **kwargs):  # torch < 1.13: always unpickles in full
            return real_load(f, map_location=map_location, weights_only=False, **kwargs)

        monkeypatch.setattr(torch, "load", load)
        needle = "has no weights_only loading"
    from mmrec_plugin.cli import main

    code = main(["analyze", "--results", str(path)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert str(evil) in lines[0] and needle in lines[0], lines[0]
    assert not marker.exists()
    # the same file, unpickled in full, does run code: the test's payload is real
    real_load(evil, weights_only=False)
    assert marker.exists()
