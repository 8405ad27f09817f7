"""How hard are the phantoms? Logistic regression on 32x32 raw pixels, subject-level split.

Goal (issue): well above chance on large findings (cardiomegaly, effusion) and sex; far from
perfect on thin/small findings (chest tube, small pneumothorax, nodule) and age/BMI/weight bins.
A frozen backbone should beat these numbers; if raw pixels already solve a task it is too easy.

Usage: python benchmarks/phantom_calibration.py [--n 2000] [--out runs/benchmarks/...json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, average_precision_score  # noqa: E402
from sklearn.model_selection import GroupShuffleSplit  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from raddino.data.dataset_folder import dequantize_image, quantize_image  # noqa: E402
from raddino.data.metadata_bins import bin_labels, bin_metadata, encode_sex  # noqa: E402
from raddino.data.phantom import FINDINGS, PhantomConfig, render_phantom  # noqa: E402
from raddino.utils import versions, write_json_atomic  # noqa: E402


def render_features(n: int, seed: int, config: PhantomConfig, grid: int) -> dict:
    """Render n phantoms; return (n, grid*grid) block-mean pixels, labels and metadata."""
    if config.size % grid:
        raise ValueError(f"--size {config.size} must be a multiple of the {grid}x{grid} grid")
    block = config.size // grid
    pixels, labels, meta, pneumothorax_size = [], [], [], []
    for index in tqdm(range(n), desc="render", unit="img"):
        sample = render_phantom(index, seed=seed, config=config)
        image_hw = dequantize_image(quantize_image(sample.image, 16), 16)
        small = image_hw.reshape(grid, block, grid, block).mean(axis=(1, 3))
        pixels.append(small.ravel())
        labels.append([sample.labels[name] for name in FINDINGS])
        meta.append(sample.metadata)
        pneumothorax_size.append(sample.findings.get("pneumothorax", {}).get("size", ""))
    return {
        "x": np.asarray(pixels, dtype=np.float64),
        "y": np.asarray(labels, dtype=np.int64),
        "subjects": np.array([m["subject_id"] for m in meta]),
        "sex": encode_sex([m["sex"] for m in meta]),
        "age": bin_metadata("age", [m["age"] for m in meta]),
        "weight_kg": bin_metadata("weight_kg", [m["weight_kg"] for m in meta]),
        "bmi": bin_metadata("bmi", [m["bmi"] for m in meta]),
        "view": np.array([m["view"] for m in meta]),
        "pneumothorax_size": np.array(pneumothorax_size),
    }


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--views", default="PA,AP")
    parser.add_argument("--out", default="runs/benchmarks/phantom_calibration.json")
    args = parser.parse_args()
    views = tuple(v.strip().upper() for v in args.views.split(","))
    config = PhantomConfig(size=args.size, views=views, with_masks=False)
    t0 = time.perf_counter()
    data = render_features(args.n, args.seed, config, args.grid)
    render_s = time.perf_counter() - t0

    split = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=args.seed)
    train, test = next(split.split(data["x"], groups=data["subjects"]))
    assert not set(data["subjects"][train]) & set(data["subjects"][test])
    x_train, x_test = data["x"][train], data["x"][test]

    findings = {}
    for k, name in enumerate(tqdm(FINDINGS, desc="findings")):
        y_train, y_test = data["y"][train, k], data["y"][test, k]
        if y_train.min() == y_train.max() or y_test.sum() == 0:
            findings[name] = {"note": "one class only in train or test"}
            continue
        scores = _model().fit(x_train, y_train).predict_proba(x_test)[:, 1]
        findings[name] = {
            "auprc": round(float(average_precision_score(y_test, scores)), 3),
            "chance_prevalence": round(float(y_test.mean()), 3),
            "test_positives": int(y_test.sum()),
        }
        if name == "pneumothorax":
            # Small pneumothoraces only: drop the moderate/large positives from the test set.
            sizes = data["pneumothorax_size"][test]
            keep = (y_test == 0) | (sizes == "small")
            if y_test[keep].sum() > 0:
                findings["pneumothorax_small"] = {
                    "auprc": round(float(average_precision_score(y_test[keep], scores[keep])), 3),
                    "chance_prevalence": round(float(y_test[keep].mean()), 3),
                    "test_positives": int(y_test[keep].sum()),
                }

    metadata = {}
    for name in ("sex", "age", "weight_kg", "bmi"):
        codes = data[name]
        ok_train, ok_test = train[codes[train] >= 0], test[codes[test] >= 0]
        model = _model().fit(data["x"][ok_train], codes[ok_train])
        predicted = model.predict(data["x"][ok_test])
        majority = np.bincount(codes[ok_train]).argmax()
        classes = ("F", "M") if name == "sex" else bin_labels(name)
        metadata[name] = {
            "accuracy": round(float(accuracy_score(codes[ok_test], predicted)), 3),
            "chance_majority": round(float(np.mean(codes[ok_test] == majority)), 3),
            "test_class_counts": {
                classes[c]: int(np.sum(codes[ok_test] == c)) for c in range(len(classes))
            },
        }

    report = {
        "benchmark": "phantom_calibration",
        "n": args.n,
        "size": args.size,
        "grid": args.grid,
        "seed": args.seed,
        "views": list(views),
        "train_images": int(len(train)),
        "test_images": int(len(test)),
        "render_s": round(render_s, 1),
        "model": "StandardScaler + LogisticRegression(C=0.1) on block-mean pixels",
        "findings": findings,
        "metadata": metadata,
        "versions": versions(),
    }
    write_json_atomic(args.out, report)
    for name, row in {**findings, **metadata}.items():
        print(f"{name:22s} {row}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
