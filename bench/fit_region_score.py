"""Fit the region score's weights on synthetic sets, then measure it on others.

    python bench/fit_region_score.py            # fit, print the weights and the tables
    python bench/fit_region_score.py --quick    # small sets: a smoke run

Training sets and evaluation sets are different synth seeds (and so different scenes,
models and errors). Every set is scanned with the synth world's background classes
(`--background`). A region of a training scan is a real annotation error when it
matches an injected error as `segaudit eval` counts matches (pixel IoU >= 0.3 with one
error of the image's error map), else it is the model's own mistake. A logistic
regression (Newton's method, a small L2 penalty) of that label on the region's
features gives the weights of :mod:`segaudit.engine.region_scores`:

    score = 1 / (1 + exp(b + w_gap·(p̄ − s̄) + w_size·log10(pixels)
                         + w_edge·edge_fraction + w_pair·pair_share))

Then, on the evaluation sets: region AP of the score against size alone (bigger =
more suspicious) and against p̄ − s̄ alone, and image AP of softmin, issue fraction
(num_pixel_issues) and the image's worst region score, as `segaudit eval` computes
them. Writes bench/results/region_score.md (and .json).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "region-score"
RESULTS = ROOT / "bench" / "results"
EXE = [sys.executable, "-m", "segaudit"]
FEATURES = ("gap", "size", "edge_fraction", "pair_share")

# (name, seed, difficulty, corrupt fraction): training sets, then evaluation sets.
TRAIN = [("train-standard", 101, "standard", 0.3), ("train-hard", 102, "hard", 0.3),
         ("train-dense", 103, "standard", 0.6)]  # fmt: skip
EVAL = [("standard", 201, "standard", 0.3), ("dense", 203, "standard", 0.6),
        ("hard", 202, "hard", 0.3)]  # fmt: skip


def synth(name: str, seed: int, difficulty: str, corrupt: float, quick: bool) -> Path:
    """The synth set (made once; reused while its parameters match)."""
    images, height, width = (12, 128, 256) if quick else (40, 256, 512)
    out = DATA / f"{name}-{images}x{height}x{width}"
    if not (out / "synth.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([*EXE, "synth", str(out), "--images", str(images), "--height",
                        str(height), "--width", str(width), "--classes", "19", "--seed",
                        str(seed), "--corrupt-fraction", str(corrupt), "--difficulty",
                        difficulty, "--dtype", "float16", "-q"], check=True)  # fmt: skip
    return out


def background(dataset: Path) -> list[str]:
    """The synth world's background-like classes: road, sidewalk, sky and its stuff."""
    from segaudit.synth.world import World

    parameters = json.loads((dataset / "synth.json").read_text())["parameters"]
    world = World.build(parameters["seed"], parameters["class_names"])
    ids = {world.road, world.sky, *world.stuff} | ({world.sidewalk} - {None})
    return [str(k) for k in sorted(ids)]


def scan(dataset: Path) -> Path:
    run = DATA / "runs" / dataset.name
    args = [*EXE, "scan", str(dataset), "-o", str(run), "-q"]
    for k in background(dataset):
        args += ["--background", k]
    subprocess.run(args, check=True)
    return run


def labelled_regions(run: Path, dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features (R, 4), is_error (R,)) of every region of ``run``."""
    from segaudit.report.region_match import match_image
    from segaudit.runs.run import open_run

    opened = open_run(run)
    errors = np.load(dataset / "errors.npy", mmap_mode="r")
    matched: set[tuple[int, int]] = set()
    for image in range(opened.num_images):
        pairs, _ = match_image(opened.read("regions", image), np.asarray(errors[image]))
        matched |= {(image, region) for region, _ in pairs}
    with open(run / "regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    features = np.array([
        [float(r["mean_predicted_probability"]) - float(r["mean_self_confidence"]),
         np.log10(float(r["pixels"])), float(r["edge_fraction"]), float(r["pair_share"])]
        for r in rows
    ]).reshape(-1, len(FEATURES))  # fmt: skip
    is_error = np.array([(int(r["image"]), int(r["region"])) in matched for r in rows])
    return features, is_error


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float = 1e-2) -> np.ndarray:
    """Weights (intercept first) of P(error) = σ(b + w·x), by Newton's method with an L2
    penalty on w (not on b)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    weights = np.zeros(design.shape[1])
    ridge = penalty * np.eye(design.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (y - p) - ridge @ weights
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hessian, gradient)
        weights += step
        if np.abs(step).max() < 1e-10:
            break
    return weights


def rescored_region_ap(run: Path, dataset: Path, column: str) -> float | None:
    """Region AP of ``run`` when its regions are ranked by ``column`` alone (higher =
    more suspicious), as `segaudit eval` computes AP."""
    from segaudit.report.evaluate import evaluate_run

    copy = run.with_name(run.name + f"-by-{column}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    with open(run / "regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        value = (float(row["mean_predicted_probability"]) - float(row["mean_self_confidence"])
                 if column == "gap" else float(row[column]))  # fmt: skip
        row["score"] = repr(-value)
    with open(copy / "regions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return evaluate_run(copy, dataset)["region"]["average_precision"]


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets (a smoke run)")
    args = parser.parse_args(argv)
    from segaudit.engine import region_scores
    from segaudit.report.evaluate import evaluate_run

    xs, ys = [], []
    for name, seed, difficulty, corrupt in TRAIN:
        dataset = synth(name, seed, difficulty, corrupt, args.quick)
        features, is_error = labelled_regions(scan(dataset), dataset)
        xs.append(features)
        ys.append(is_error)
        print(f"{name}: {len(is_error)} regions, {int(is_error.sum())} real errors")
    x, y = np.vstack(xs), np.concatenate(ys).astype(np.float64)
    logit = fit_logistic(x, y)
    # score = 1 / (1 + exp(z)) with z the logit of P(error): the weights as the engine uses them
    fitted = dict(zip(("INTERCEPT", "WEIGHT_GAP", "WEIGHT_SIZE", "WEIGHT_EDGE", "WEIGHT_PAIR"),
                      (round(float(v), 3) for v in logit), strict=True))  # fmt: skip
    print("fitted:", fitted)
    in_use = {name: getattr(region_scores, name) for name in fitted}
    print("in segaudit/engine/region_scores.py:", in_use)

    table = []
    for name, seed, difficulty, corrupt in EVAL:
        dataset = synth(f"eval-{name}", seed, difficulty, corrupt, args.quick)
        run = scan(dataset)
        metrics = evaluate_run(run, dataset)
        by_column = metrics["image_by_column"]
        accuracy = model_accuracy(dataset)
        table.append({
            "set": name, "difficulty": difficulty, "corrupt_fraction": corrupt,
            "model_accuracy": accuracy,
            "region_ap_score": metrics["region"]["average_precision"],
            "region_ap_size": rescored_region_ap(run, dataset, "pixels"),
            "region_ap_gap": rescored_region_ap(run, dataset, "gap"),
            "region_precision": metrics["region"]["precision"],
            "region_recall": metrics["region"]["recall"],
            "image_ap_softmin": by_column["softmin_score"]["average_precision"],
            "image_ap_issue_fraction": by_column["issue_fraction"]["average_precision"],
            "image_ap_region_score": by_column["region_score"]["average_precision"],
            "per_kind": metrics["region"]["per_kind"],
        })  # fmt: skip
    write_report(fitted, in_use, table)
    return 0


def model_accuracy(dataset: Path) -> float:
    probs = np.load(dataset / "pred_probs.npy", mmap_mode="r")
    truth = np.load(dataset / "true_labels.npy", mmap_mode="r")
    right = [np.mean(np.asarray(probs[i]).argmax(0) == truth[i]) for i in range(len(truth))]
    return float(np.mean(right))


def write_report(fitted: dict, in_use: dict, table: list[dict]) -> None:
    lines = ["# Region score: fitted weights and average precision", "",
             f"fitted on {', '.join(t[0] for t in TRAIN)}: {fitted}",
             f"in use: {in_use}", "",
             "| set | model accuracy | region AP: score | size alone | p̄ − s̄ alone | "
             "region P / R | image AP: softmin | issue fraction | region score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in table:
        lines.append(
            f"| {row['set']} ({row['difficulty']}, {row['corrupt_fraction']:.0%} corrupted) | "
            f"{row['model_accuracy']:.3f} | {fmt(row['region_ap_score'])} | "
            f"{fmt(row['region_ap_size'])} | {fmt(row['region_ap_gap'])} | "
            f"{fmt(row['region_precision'])} / {fmt(row['region_recall'])} | "
            f"{fmt(row['image_ap_softmin'])} | {fmt(row['image_ap_issue_fraction'])} | "
            f"{fmt(row['image_ap_region_score'])} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "region_score.md").write_text(text)
    (RESULTS / "region_score.json").write_text(json.dumps(
        {"fitted": fitted, "in_use": in_use, "table": table}, indent=2))  # fmt: skip
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
