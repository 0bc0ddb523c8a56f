"""Shared helpers for the host core tests: tiny datasets written to tmp_path, dict configs."""
import os

import numpy as np
import pytest
import torch

OVERALL = {
    "USER_ID_FIELD": "userID",
    "ITEM_ID_FIELD": "itemID",
    "field_separator": "\t",
    "vision_feature_file": "image_feat.npy",
    "text_feature_file": "text_feat.npy",
    "is_multimodal_model": True,
    "end2end": False,
    "device": torch.device("cpu"),
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "epochs": 1000,
    "stopping_step": 20,
    "eval_step": 1,
    "learner": "adam",
    "learning_rate": 0.001,
    "learning_rate_scheduler": [1.0, 50],
    "weight_decay": 0.0,
    "metrics": ["Recall", "NDCG", "Precision", "MAP"],
    "topk": [5, 10, 20, 50],
    "valid_metric": "Recall@20",
    "seed": 999,
    "embedding_size": 64,
}


def write_inter(root, name, rows, header=("userID", "itemID", "x_label"), sep="\t"):
    """Write ``<root>/<name>/<name>.inter`` and return the folder."""
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w") as fh:
        fh.write(sep.join(header) + "\n")
        for r in rows:
            fh.write(sep.join(str(x) for x in r) + "\n")
    return folder


def make_config(root, name, **overrides):
    cfg = dict(OVERALL)
    cfg.update({"data_path": str(root), "dataset": name})
    cfg.update(overrides)
    return cfg


def random_rows(n_users=30, n_items=40, per_user=(4, 9), seed=0):
    """Rows (user, item, x_label): each user >= 3 distinct items, one valid, one test, rest train."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = int(rng.integers(per_user[0], per_user[1] + 1))
        items = rng.choice(n_items, size=k, replace=False)
        labels = [1, 2] + [0] * (k - 2)
        rows += [(u, int(i), lab) for i, lab in zip(items, labels)]
    return rows


@pytest.fixture
def tiny(tmp_path):
    """A random tiny dataset 'tiny' and its config."""
    write_inter(tmp_path, "tiny", random_rows())
    return make_config(tmp_path, "tiny")


@pytest.fixture
def h():
    """The helper functions above (tests cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(write_inter=write_inter, make_config=make_config, random_rows=random_rows)
