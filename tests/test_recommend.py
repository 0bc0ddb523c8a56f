"""Recommendations: `load_model(...).recommend` against a naive per-user reference (dense scores
on a tiny dataset, the excluded items masked by hand), the `recommend` command's files
against the API and against the run's own test recall, `score` and `embeddings` against the
model's scores, and bad input as one `error:` line."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from mmrec_plugin import load_model
from mmrec_plugin.cli import main
from mmrec_plugin.data.synthetic import generate
from mmrec_plugin.runs import quick_start


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LightGCN and BRMRS, 3 epochs each, on a tiny synthetic dataset."""
    root = tmp_path_factory.mktemp("rec")
    generate(str(root / "data"), "tinyrec", n_users=60, n_items=40, n_interactions=700, k=4,
             image_dim=8, text_dim=6, seed=5)
    out = {}
    for model in ("LightGCN", "BRMRS"):
        cfg = {"data_path": str(root / "data"), "epochs": 3, "topk": [5, 10],
               "valid_metric": "Recall@10", "eval_batch_size": 7}
        if model == "BRMRS":
            cfg.update(chns_weight=[1.0], reg_weight=[1e-4], modality_weights={"text": 0.5, "visual": 0.5})
        out[model] = quick_start(model, "tinyrec", config_dict=cfg,
                                 results_dir=str(root / model), workers=1)
    return root, out


def _splits(root):
    labels = {0: "train", 1: "valid", 2: "test"}
    sets = {name: {} for name in labels.values()}
    with open(root / "data" / "tinyrec" / "tinyrec.inter") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            sets[labels[int(r["x_label"])]].setdefault(int(r["userID"]), set()).add(int(r["itemID"]))
    return sets


def _naive(m, users, k, masked):
    """Per user: every item's score from the model, masked items dropped, sorted."""
    out = []
    with torch.no_grad():
        for u in users:
            s = m.model.full_sort_predict([torch.tensor([u])])[0].numpy().astype(np.float64)
            order = [i for i in np.argsort(-s, kind="stable") if i not in masked.get(u, set())]
            out.append((order[:k], s[order[:k]]))
    return out


@pytest.mark.parametrize("model", ["LightGCN", "BRMRS"])
@pytest.mark.parametrize("exclude", ["train", "train+valid", "none"])
def test_recommend_equals_a_naive_reference(trained, model, exclude):
    root, results = trained
    m = load_model(results[model].path)
    sets = _splits(root)
    masked = {"train": sets["train"], "none": {},
              "train+valid": {u: sets["train"].get(u, set()) | sets["valid"].get(u, set())
                              for u in range(m.n_users)}}[exclude]
    users = [0, 3, 17, 59, 3]
    items, scores = m.recommend(users, k=6, exclude=exclude, batch_size=2)
    assert items.shape == scores.shape == (5, 6)
    for row, (want_items, want_scores) in enumerate(_naive(m, users, 6, masked)):
        assert items[row].tolist() == [int(i) for i in want_items]  # (no tied scores here)
        np.testing.assert_allclose(scores[row], want_scores, rtol=1e-5, atol=1e-6)
        assert not set(items[row]) & masked.get(users[row], set())


def test_command_writes_k_rows_per_user_and_its_recall_is_the_runs(trained, capsys):
    root, results = trained
    summary = results["BRMRS"]
    best = summary.best
    out = root / "rec.csv"
    assert main(["recommend", summary.path, "--k", "10", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    by_user = {}
    for r in rows:
        by_user.setdefault(int(r["user_id"]), []).append((int(r["rank"]), int(r["item_id"]), float(r["score"])))
    sets = _splits(root)
    assert sorted(by_user) == list(range(60))
    for u, recs in by_user.items():
        assert [r for r, _, _ in recs] == list(range(1, 11))
        assert not {i for _, i, _ in recs} & sets["train"].get(u, set())
        assert [s for _, _, s in recs] == sorted((s for _, _, s in recs), reverse=True)
    recall = np.mean([len({i for _, i, _ in by_user[u]} & t) / len(t) for u, t in sets["test"].items()])
    assert recall == pytest.approx(best["test"]["recall@10"], abs=1e-12)
    # the API gives the same lists
    m = load_model(summary.path)
    items, _ = m.recommend(list(range(60)), k=10)
    assert [[i for _, i, _ in by_user[u]] for u in range(60)] == items.tolist()
    # JSON lines: one object per user
    jl = root / "rec.jsonl"
    assert main(["recommend", summary.path, "--k", "3", "--out", str(jl), "--users", str(_users(root, [5, 2]))]) == 0
    lines = [json.loads(x) for x in open(jl)]
    assert [x["user_id"] for x in lines] == [5, 2] and all(len(x["items"]) == 3 for x in lines)
    assert lines[0]["items"] == items[5, :3].tolist()


def _users(root, ids):
    path = root / "users.txt"
    path.write_text("\n".join(map(str, ids)) + "\n")
    return path


def test_score_and_embeddings_match_the_ranking_scores(trained):
    root, results = trained
    for model in ("LightGCN", "BRMRS"):
        m = load_model(results[model].path)
        with torch.no_grad():
            full = m.model.full_sort_predict([torch.tensor([1, 4])]).numpy()
        np.testing.assert_allclose(m.score([1, 4], [7, 9]), [full[0, 7], full[1, 9]], rtol=1e-6)
        np.testing.assert_allclose(m.score([1, 4], [[0, 2], [3, 5]]),
                                   [[full[0, 0], full[0, 2]], [full[1, 3], full[1, 5]]], rtol=1e-6)
        emb = m.embeddings()
        users, items = emb["fused"]
        assert users.shape[0] == m.n_users and items.shape[0] == m.n_items
        np.testing.assert_allclose(users[[1, 4]] @ items.T, full, rtol=1e-4, atol=1e-5)
    emb = load_model(results["BRMRS"].path).embeddings()
    assert set(emb) == {"text", "visual", "fused"}


@pytest.mark.parametrize("argv, needle", [
    (["--k", "41"], "--k must be between 1 and the 40 items"),
    (["--k", "0"], "--k: expected a positive integer"),
    (["--combination", "zzz"], "combination 'zzz' not found"),
    (["--out", "x.txt"], "must be .csv or .jsonl"),
    (["--exclude", "test"], "invalid choice: 'test'"),
])
def test_bad_input_is_one_error_line(trained, capsys, tmp_path, argv, needle):
    root, results = trained
    code = main(["recommend", results["LightGCN"].path, "--out", str(tmp_path / "r.csv")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert needle in [ln for ln in err.splitlines() if ln.startswith("error:")][-1]


def test_unknown_users_missing_model_and_other_versions(trained, capsys, tmp_path):
    root, results = trained
    path = results["LightGCN"].path
    m = load_model(path)
    with pytest.raises(Exception, match="unknown user id 60"):
        m.recommend([1, 60])
    bad = tmp_path / "u.txt"
    bad.write_text("1\nx2\n")
    assert main(["recommend", path, "--users", str(bad), "--out", str(tmp_path / "r.csv")]) == 2
    assert "line 2" in capsys.readouterr().err
    # a model file of another version: refused with one error line
    summary = json.load(open(path))
    model_file = summary["best"]["model_path"]
    state = torch.load(model_file, weights_only=True)
    moved = tmp_path / "other"
    os.makedirs(moved / "models")
    torch.save({k: v for k, v in state.items() if k != "format"}, moved / "models" / os.path.basename(model_file))
    json.dump(summary, open(moved / "LightGCN-tinyrec.json", "w"))
    assert main(["recommend", str(moved / "LightGCN-tinyrec.json")]) == 2
    assert "another version" in capsys.readouterr().err
    os.unlink(moved / "models" / os.path.basename(model_file))
    summary["best"]["model_path"] = str(moved / "models" / "gone.pt")
    json.dump(summary, open(moved / "LightGCN-tinyrec.json", "w"))
    assert main(["recommend", str(moved / "LightGCN-tinyrec.json")]) == 2
    assert "not found" in capsys.readouterr().err
