"""`make bench` section ``focal``: which model finds a focal planted effect on the real 3 mm grid.

The grid is the group level's own: :func:`workflows.grid.make_grid` at 3 mm from a fMRIPrep
``res-2`` MNI152NLin2009cAsym reference (97x115x97) and the MNI brain mask, which gives 49x61x53 and
the HCPEx parcels on it (:func:`workflows.explain.atlas_on_grid`, parcels of at least 3 voxels: 415).
Each cohort has ``n`` subjects of smooth Gaussian noise (white noise smoothed to ``fwhm_mm``,
rescaled to unit SD per voxel, 0 outside the brain mask); a random half (severe) carries a ball of
``radius`` voxels at +``effect`` SD, centred in the left putamen (a subcortical stroke's territory).

Every parcel model of the registry (:mod:`workflows.models`: the primary dense L2, the sparse L1, the
elastic net) and the voxel PCA baseline run on the same subject-level stratified folds as the group
level's (:func:`workflows.cross_validation.subject_folds`), with the blob-mean oracle (the mean of the
planted ball, logistic regression: what the maps carry). ``--cnn`` adds the CNN (slow on CPU).

The main cohort is the issue's: an 81-voxel ball (radius 2.5 voxels, 2.2 ml) at +2 SD in 48 subjects,
with its null. ``--table`` adds the detectable-effect table: extent (ball radius) x amplitude.

Run alone: ``python benchmarks/focal_effect.py [--table] [--cnn] [--quick]``, which writes
``benchmarks/results/focal-effect-<date>.md`` and ``.json``; ``benchmarks/run.py --only focal`` runs
the main cohort and its null inside ``make bench``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workflows import models
from workflows.cross_validation import cross_validate, subject_folds
from workflows.stats import classification_metrics

FULL = {"n": 48, "folds": 5, "repeats": 1, "resolution_mm": 3.0}
QUICK = {"n": 24, "folds": 3, "repeats": 1, "resolution_mm": 4.0}
#: Smoothness (FWHM, mm) of the noise of the table; 0 is i.i.d. voxel noise (the review's cohort).
FWHM_MM = 6.0
#: The issue's cohort: an 81-voxel ball (radius 2.5 voxels) at +2 SD in i.i.d. and in smooth noise,
#: and the null ((radius, effect, FWHM)).
MAIN = ((2.5, 2.0, 0.0), (2.5, 2.0, FWHM_MM), (2.5, 0.0, FWHM_MM))
#: The detectable-effect table (smooth noise): ball radii (voxels) x amplitudes (SD of the noise).
RADII = (1.5, 2.5, 3.5, 5.1)
EFFECTS = (0.5, 1.0, 2.0)
#: Left putamen (MNI mm): the ball's centre.
CENTRE_MM = (-25.0, 3.0, 2.0)
#: The models compared (registry name -> fit_predict given the parcel operator); the oracle is added.
PARCEL_MODELS = {
    "parcel": lambda op: partial(models.parcel_fit_predict, operator=op),
    "parcel_l1": lambda op: partial(models.sparse_fit_predict, operator=op),
    "parcel_enet": lambda op: partial(models.enet_fit_predict, operator=op),
    "baseline": lambda op: models.baseline_fit_predict,
}
ORACLE, PARCEL_ORACLE = "oracle", "parcel_oracle"


def real_grid(resolution_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brain mask, HCPEx parcel volume, voxel -> world affine) of the group level's grid."""
    import nibabel as nb

    from workflows.explain import atlas_on_grid
    from workflows.grid import grid_mask, make_grid, template_mask
    from workflows.seeds import atlas_image

    affine = np.array([[2, 0, 0, -96], [0, 2, 0, -132], [0, 0, 2, -78], [0, 0, 0, 1.0]])
    ref = nb.Nifti1Image(np.zeros((97, 115, 97), np.uint8), affine)
    grid = make_grid(ref, template_mask(ref), resolution_mm)
    mask = grid_mask(grid)
    parcels = (atlas_on_grid(atlas_image(models.PARCEL_ATLAS), grid) * mask).astype(np.int32)
    return mask, parcels, np.asarray(grid["affine"])


def smooth_noise(gen: np.random.Generator, n: int, mask: np.ndarray, sigma: float) -> np.ndarray:
    """``n`` maps of Gaussian noise smoothed by ``sigma`` voxels, unit SD per voxel, 0 outside ``mask``."""
    from scipy.ndimage import gaussian_filter

    if sigma == 0:
        return (gen.normal(size=(n, *mask.shape)) * mask).astype(np.float32)

    delta = np.zeros((9, 9, 9))
    delta[4, 4, 4] = 1.0
    gain = float(np.sqrt((gaussian_filter(delta, sigma) ** 2).sum()))  # SD of smoothed unit white noise
    out = np.empty((n, *mask.shape), np.float32)
    for i in range(n):
        out[i] = gaussian_filter(gen.normal(size=mask.shape), sigma) / gain * mask
    return out


def ball(shape: tuple[int, ...], affine: np.ndarray, radius: float) -> np.ndarray:
    """The ball of ``radius`` voxels around :data:`CENTRE_MM` on the grid."""
    centre = np.linalg.solve(affine, [*CENTRE_MM, 1.0])[:3]
    ijk = np.indices(shape)
    return ((ijk - centre.round()[:, None, None, None]) ** 2).sum(0) <= radius**2


def cohort(
    effect: float, radius: float, fwhm_mm: float, p: dict, grid: tuple, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps, labels (1 = severe, a random half), subjects and the planted ball (in the brain mask)."""
    mask, _, affine = grid
    gen = np.random.default_rng(seed)
    sigma = fwhm_mm / np.sqrt(8 * np.log(2)) / p["resolution_mm"]
    x = smooth_noise(gen, p["n"], mask, sigma)
    y = (np.arange(p["n"]) % 2).astype(int)
    gen.shuffle(y)
    blob = ball(mask.shape, affine, radius) & mask
    x[y == 1] += np.float32(effect) * blob
    return x, y, np.arange(p["n"]).astype(str), blob


def oracle_fit_predict(blob: np.ndarray):
    """The blob-mean oracle: the mean of the planted voxels (known), then logistic regression. With
    ``blob`` the parcel holding most of the ball, the parcel oracle: what the parcel features carry."""
    from sklearn.linear_model import LogisticRegression

    def fit(x_train, y_train, groups_train, x_test, *, seed=0):
        del groups_train, seed
        lr = LogisticRegression(class_weight="balanced").fit(x_train[:, blob].mean(1, keepdims=True), y_train)
        return lr.predict_proba(x_test[:, blob].mean(1, keepdims=True))[:, 1], []

    return fit


def run_cohort(
    effect: float, radius: float, fwhm_mm: float, p: dict, grid: tuple, with_cnn: bool = False
) -> dict:
    """Balanced accuracy (mean over folds, and of the pooled out-of-fold predictions) of every model."""
    parcels = grid[1]
    x, y, groups, blob = cohort(effect, radius, fwhm_mm, p, grid)
    operator, _ = models.parcel_matrix(parcels)
    fits = {name: build(operator) for name, build in PARCEL_MODELS.items()}
    fits[ORACLE] = oracle_fit_predict(blob)
    in_parcels = parcels[blob & (parcels > 0)]
    top = int(np.bincount(in_parcels).argmax()) if in_parcels.size else 0
    fits[PARCEL_ORACLE] = oracle_fit_predict(parcels == top)
    if with_cnn:
        fits["cnn"] = _cnn_fit_predict()
    folds = subject_folds(y, groups, p["folds"], p["repeats"], seed=0)
    out = {
        "effect_sd": effect,
        "fwhm_mm": fwhm_mm,
        "radius_vox": radius,
        "blob_voxels": int(blob.sum()),
        "blob_voxels_in_parcels": int(in_parcels.size),
        "parcel_oracle": {"voxels": int((parcels == top).sum()), "planted": int((in_parcels == top).sum())},
        "blob_ml": round(float(blob.sum()) * p["resolution_mm"] ** 3 / 1000, 2),
        "models": {},
    }
    for name, fit in fits.items():
        t = time.process_time()
        predictions, metrics, _ = cross_validate(x, y, groups, folds, {name: fit})
        y_true = np.array([r["y_true"] for r in predictions])
        prob = np.array([r["prob_severe"] for r in predictions])
        out["models"][name] = {
            "balanced_accuracy": float(np.mean([m["balanced_accuracy"] for m in metrics])),
            "pooled_balanced_accuracy": float(classification_metrics(y_true, prob)["balanced_accuracy"]),
            "cpu_s": round(time.process_time() - t, 1),
        }
        print(
            f"  {effect:+.1f} SD r={radius} fwhm={fwhm_mm:g} ({out['blob_voxels']} vox) {name}: "
            f"BA {out['models'][name]['balanced_accuracy']:.2f} ({out['models'][name]['cpu_s']:.0f} s CPU)",
            flush=True,
        )
    return out


def _cnn_fit_predict():
    from workflows import cnn

    settings = cnn.TrainSettings(device="cpu")

    def fit(x_train, y_train, g_train, x_test, *, seed=0):
        from dataclasses import replace

        model, curve = cnn.train_model(x_train, y_train, g_train, replace(settings, seed=seed))
        return cnn.predict_proba(model, x_test), curve

    return fit


def bench_focal(quick: bool = False, table: bool = False, with_cnn: bool = False) -> dict:
    """The main cohort and its null; with ``table`` every extent x amplitude of the table."""
    p = QUICK if quick else FULL
    grid = real_grid(p["resolution_mm"])
    cells = list(MAIN)
    if table:
        cells += [(r, e, FWHM_MM) for r in RADII for e in EFFECTS if (r, e, FWHM_MM) not in cells]
    return {
        "grid": "x".join(map(str, grid[0].shape)),
        "n_parcels": int(models.parcel_matrix(grid[1])[1].size),
        **{k: p[k] for k in ("n", "folds", "repeats", "resolution_mm")},
        "cohorts": [run_cohort(e, r, fwhm, p, grid, with_cnn) for r, e, fwhm in cells],
    }


def rows(c: dict) -> list[tuple[str, str, str, str]]:
    """Summary-table rows of ``make bench``: every model's BA on the main cohort and its null."""
    out = []
    for k in c["cohorts"][: len(MAIN)]:
        ba = {name: m["balanced_accuracy"] for name, m in k["models"].items()}
        noise = f"FWHM {k['fwhm_mm']:g} mm" if k["fwhm_mm"] else "i.i.d."
        name = (
            f"focal {k['blob_voxels']}-vox ball {k['effect_sd']:+g} SD, {noise} ({c['n']} subj, {c['grid']})"
        )
        measured = ", ".join(f"{m} {v:.2f}" for m, v in ba.items())
        if k["effect_sd"] > 0:
            out.append((name, measured, "elastic net >= 0.9", _ok(ba["parcel_enet"] >= 0.9)))
        else:
            out.append((name, measured, "elastic net <= 0.7", _ok(ba["parcel_enet"] <= 0.7)))
    return out


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def table_markdown(c: dict) -> str:
    """Detectable-effect table: one row per noise x extent x amplitude, one column per model
    (fold-mean balanced accuracy)."""
    names = list(c["cohorts"][0]["models"])
    head = "| noise FWHM | ball (voxels, ml) | effect | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for k in sorted(c["cohorts"], key=lambda k: (k["fwhm_mm"], k["blob_voxels"], k["effect_sd"])):
        cells = " | ".join(f"{k['models'][n]['balanced_accuracy']:.2f}" for n in names)
        noise = f"{k['fwhm_mm']:g} mm" if k["fwhm_mm"] else "i.i.d."
        lines.append(
            f"| {noise} | {k['blob_voxels']} ({k['blob_ml']} ml) | {k['effect_sd']:+g} SD | {cells} |"
        )
    return "\n".join(lines)


def _cpu_model() -> str:
    """The CPU's model name (lscpu), else the platform's machine type."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")]
    return names[0] if names else platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 subjects on a 4 mm grid (a smoke check)")
    parser.add_argument("--table", action="store_true", help="also the extent x amplitude table")
    parser.add_argument("--cnn", action="store_true", help="also the CNN (slow on CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only; no results file")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    t = time.perf_counter()
    result = bench_focal(args.quick, args.table, args.cnn)
    result["wall_s"] = round(time.perf_counter() - t, 1)
    result["load_avg_start"], result["load_avg_end"] = load, os.getloadavg()
    result["machine"] = f"{_cpu_model()}, {os.cpu_count()} cores"
    result["commit"] = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    text = table_markdown(result)
    print(text)
    if not args.no_write:
        today = dt.date.today().isoformat()
        stem = Path(__file__).parent / "results" / f"focal-effect-{today}{'-quick' if args.quick else ''}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
        stem.with_suffix(".md").write_text(
            f"# Focal planted effect on the real grid, {today}\n\n"
            f"`{' '.join(['benchmarks/focal_effect.py', *sys.argv[1:]])}`; {result['machine']}, load average "
            f"at start {', '.join(f'{v:.2f}' for v in load)}; wall {result['wall_s'] / 60:.1f} min; commit "
            f"{result['commit']}.\n\n"
            f"Grid {result['grid']} ({result['resolution_mm']:g} mm), {result['n_parcels']} HCPEx parcels, "
            f"{result['n']} subjects (half severe), Gaussian noise (i.i.d. or smoothed), "
            f"subject-level {result['folds']}-fold CV x {result['repeats']}; balanced accuracy, mean over "
            "folds.\n\n" + text + "\n"
        )
        print(f"wrote {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
