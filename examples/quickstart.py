"""Train, reload and recommend from Python (what a notebook does), on the demo data.

    python examples/quickstart.py [--data-path DIR] [--results-dir DIR]

Trains one BRMRS combination on the synthetic demo data (generated on first use), prints
its validation and test Recall@20, reloads the trained model from the results file, and
prints the top-5 items of three users with their scores.
"""
import argparse

from mmrec_plugin import load_model, run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-path", default="data/")
    parser.add_argument("--results-dir", default="results/quickstart")
    args = parser.parse_args()

    # one combination of the grid (lists are grids, as on the command line), a short budget
    result = run("BRMRS", "demo", config={"chns_weight": [1.0], "reg_weight": [0.001], "epochs": 20},
                 data_path=args.data_path, results_dir=args.results_dir, workers=1)
    print(result)
    print("valid recall@20 %.4f, test recall@20 %.4f"
          % (result.best["valid"]["recall@20"], result.best["test"]["recall@20"]))

    model = load_model(result.path)           # later, or in another process
    items, scores = model.recommend([0, 1, 2], k=5)
    for user, row, vals in zip([0, 1, 2], items, scores):
        print(f"user {user}: " + ", ".join(f"{i} ({s:.3f})" for i, s in zip(row, vals)))
    users, item_vectors = model.embeddings()["fused"]
    print("fused vectors:", users.shape, item_vectors.shape)


if __name__ == "__main__":
    main()
