"""A run on a cold-item split of the demo data records valid/test metrics on cold items
(ranked among the cold items) and on warm items; BRMRS ranks cold items from their content,
well above LightGCN, whose cold items are untrained (about chance)."""
import pytest

from mmrec_plugin.data.cold import cold_resplit_dataset
from mmrec_plugin.data.synthetic import ensure_demo
from mmrec_plugin.runs import quick_start


@pytest.fixture(scope="module")
def cold_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    ensure_demo(str(root / "demo"))
    cold_resplit_dataset(root / "demo", root / "data", "democold", 0.2, seed=0)
    return root


def test_cold_metrics_are_recorded_and_brmrs_ranks_cold_items_from_content(cold_demo):
    cfg = {"data_path": str(cold_demo / "data"), "epochs": 10, "stopping_step": 3}
    recall = {}
    for model, extra in (("BRMRS", {"chns_weight": [1.0], "reg_weight": [1e-4]}), ("LightGCN", {})):
        summary = quick_start(model, "democold", config_dict=dict(cfg, **extra),
                              results_dir=str(cold_demo / model), workers=1)
        best = summary.best
        for key in ("valid_cold", "test_cold", "valid_warm", "test_warm"):
            assert 0.0 <= best[key]["recall@20"] <= 1.0, key
        recall[model] = best["test_cold"]["recall@20"]
    n_cold = sum(1 for _ in open(cold_demo / "data" / "democold" / "democold.cold")) - 1
    assert abs(recall["LightGCN"] - 20 / n_cold) < 0.1  # untrained cold items: about chance
    assert recall["BRMRS"] >= 1.5 * recall["LightGCN"]
