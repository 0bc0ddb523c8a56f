import os

import numpy as np
import pytest

from mmrec_plugin.errors import DataError
from mmrec_plugin.host.dataset import RecDataset, load_modalities

ROWS = [(0, 0, 0), (0, 3, 0), (0, 1, 1), (0, 2, 2), (2, 1, 0), (2, 0, 1), (2, 4, 2)]


def test_reads_counts_and_splits(tmp_path, h):
    h.write_inter(tmp_path, "d", ROWS)
    ds = RecDataset(h.make_config(tmp_path, "d"))
    assert (ds.get_user_num(), ds.get_item_num(), len(ds)) == (3, 5, 7)
    train, valid, test = ds.split()
    assert train.users.tolist() == [0, 0, 2] and train.items.tolist() == [0, 3, 1]
    assert valid.items.tolist() == [1, 0] and test.items.tolist() == [2, 4]
    for part in (train, valid, test):
        assert (part.n_users, part.n_items) == (3, 5)
    m = train.inter_matrix(form="csr")
    assert m.shape == (3, 5)
    assert m.toarray().tolist() == [[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]]
    coo = train.inter_matrix(form="coo")
    assert coo.format == "coo" and (coo.toarray() == m.toarray()).all()


def test_five_columns_found_by_name(tmp_path, h):
    header = ("rating", "itemID", "timestamp", "x_label", "userID")
    rows = [(5, i, 123, lab, u) for u, i, lab in ROWS]
    h.write_inter(tmp_path, "d", rows, header=header)
    ds = RecDataset(h.make_config(tmp_path, "d"))
    assert ds.users.tolist() == [r[0] for r in ROWS]
    assert ds.items.tolist() == [r[1] for r in ROWS]


def test_custom_file_name_and_separator(tmp_path, h):
    folder = os.path.join(tmp_path, "d")
    os.makedirs(folder)
    with open(os.path.join(folder, "other.csv"), "w") as fh:
        fh.write("userID,itemID,x_label\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n\n")
    ds = RecDataset(h.make_config(tmp_path, "d", inter_file_name="other.csv", field_separator=","))
    assert len(ds) == 7


def test_missing_folder_explains_layout(tmp_path, h):
    with pytest.raises(DataError) as e:
        RecDataset(h.make_config(tmp_path, "baby"))
    msg = str(e.value)
    assert "baby.inter" in msg and "image_feat.npy" in msg and "text_feat.npy" in msg
    assert "Google Drive" in msg and "enoche/MMRec" in msg


def test_missing_file(tmp_path, h):
    os.makedirs(os.path.join(tmp_path, "d"))
    with pytest.raises(DataError, match=r"d\.inter not found"):
        RecDataset(h.make_config(tmp_path, "d"))


def test_missing_column(tmp_path, h):
    h.write_inter(tmp_path, "d", [(0, 0)], header=("userID", "itemID"))
    with pytest.raises(DataError, match="column 'x_label' not found"):
        RecDataset(h.make_config(tmp_path, "d"))


def test_non_integer_id_names_line(tmp_path, h):
    rows = list(ROWS)
    rows[3] = (0, "abc", 2)
    h.write_inter(tmp_path, "d", rows)
    with pytest.raises(DataError, match=r"line 5: column 'itemID' must hold integer ids, got 'abc'"):
        RecDataset(h.make_config(tmp_path, "d"))


def test_negative_id_names_line(tmp_path, h):
    rows = list(ROWS)
    rows[1] = (-1, 3, 0)
    h.write_inter(tmp_path, "d", rows)
    with pytest.raises(DataError, match=r"line 3: column 'userID' must be a non-negative id"):
        RecDataset(h.make_config(tmp_path, "d"))


def test_unknown_label_names_line(tmp_path, h):
    rows = list(ROWS)
    rows[6] = (2, 4, 3)
    h.write_inter(tmp_path, "d", rows)
    with pytest.raises(DataError, match=r"line 8: unknown x_label 3"):
        RecDataset(h.make_config(tmp_path, "d"))


def test_empty_split(tmp_path, h):
    h.write_inter(tmp_path, "d", [r for r in ROWS if r[2] != 1])
    ds = RecDataset(h.make_config(tmp_path, "d"))
    with pytest.raises(DataError, match="valid split is empty"):
        ds.split()


def test_features_loaded_absent_and_mismatch(tmp_path, h):
    folder = h.write_inter(tmp_path, "d", ROWS)
    cfg = h.make_config(tmp_path, "d")
    assert load_modalities(cfg, 5) == {"visual": None, "text": None}
    np.save(os.path.join(folder, "text_feat.npy"), np.arange(15, dtype=np.float64).reshape(5, 3))
    feats = load_modalities(cfg, 5)
    v, t = feats["visual"], feats["text"]
    assert v is None and t.dtype == np.float32 and t.shape == (5, 3) and t[4, 2] == 14
    np.save(os.path.join(folder, "image_feat.npy"), np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(DataError, match=r"image_feat\.npy: feature array has shape \(4, 2\), expected \(5, d\)"):
        load_modalities(cfg, 5)


def test_feature_files_declare_any_number_of_modalities(tmp_path, h):
    folder = h.write_inter(tmp_path, "d", ROWS)
    for name, width in (("a.npy", 2), ("b.npy", 3), ("c.npy", 4)):
        np.save(os.path.join(folder, name), np.ones((5, width), dtype=np.float32) * width)
    cfg = h.make_config(tmp_path, "d")
    cfg["feature_files"] = {"visual": "a.npy", "text": "b.npy", "audio": "c.npy"}
    feats = load_modalities(cfg, 5)
    assert {m: f.shape for m, f in feats.items()} == {"visual": (5, 2), "text": (5, 3), "audio": (5, 4)}
    cfg["feature_files"] = ["a.npy"]
    with pytest.raises(DataError, match="feature_files: expected a mapping"):
        load_modalities(cfg, 5)


def test_general_recommender_features(tmp_path, h):
    import torch

    from mmrec_plugin.host.abstract_recommender import GeneralRecommender
    from mmrec_plugin.host.dataloader import TrainDataLoader

    folder = h.write_inter(tmp_path, "d", ROWS)
    cfg = h.make_config(tmp_path, "d")
    np.save(os.path.join(folder, "image_feat.npy"), np.ones((5, 2)))
    train = RecDataset(cfg).split()[0]
    model = GeneralRecommender(cfg, TrainDataLoader(cfg, train, 4))
    assert (model.n_users, model.n_items) == (3, 5)
    assert model.NEG_ITEM_ID == "neg_itemID"
    assert model.t_feat is None and model.v_feat.dtype == torch.float32 and model.v_feat.shape == (5, 2)
    no_mm = GeneralRecommender(dict(cfg, is_multimodal_model=False), TrainDataLoader(cfg, train, 4))
    assert no_mm.v_feat is None
    np.save(os.path.join(folder, "text_feat.npy"), np.ones((6, 2)))
    with pytest.raises(DataError, match="text_feat.npy"):
        GeneralRecommender(cfg, TrainDataLoader(cfg, train, 4))


def test_well_formed_file_is_read_without_the_per_row_loop(tmp_path, h, monkeypatch):
    # the per-line parser is only the error path (it names the bad line); a well-formed file,
    # with extra non-integer columns and a blank line, is parsed in one vectorised call
    from mmrec_plugin.host import files as files_mod

    def per_line(*a, **k):
        raise AssertionError("per-line parser used for a well-formed file")

    header = ("userID", "review", "itemID", "x_label")
    rows = [(u, "good", i, lab) for u, i, lab in ROWS]
    h.write_inter(tmp_path, "d", rows[:3], header=header)
    with open(os.path.join(str(tmp_path), "d", "d.inter"), "a") as fh:
        fh.write("\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows[3:]))
    monkeypatch.setattr(files_mod, "_parse_rows", per_line)
    ds = RecDataset(h.make_config(tmp_path, "d"))
    assert ds.users.tolist() == [u for u, _, _ in ROWS]
    assert ds.items.tolist() == [i for _, i, _ in ROWS]
    train, valid, test = ds.split()
    assert (len(train), len(valid), len(test)) == (3, 2, 2)
