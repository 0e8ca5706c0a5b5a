"""Site confound: subject-level CV against leave-one-site-out, without and with in-fold ComBat.

Generated parcel maps (no participant level: the maps are drawn directly on a small grid, so that it runs
in a minute on 2 cores) of 3 sites. Each site adds its own offset pattern over the parcels and scales
the noise (a scanner), and recruits unevenly: the first site mostly mild, the last mostly severe
(``--site-severity``). Severe patients carry a true effect in a few parcels. The primary parcel model
(:func:`workflows.models.fold_models`, the group level's own fits) is validated four ways, each over
``--draws`` cohorts: subject-level repeated 5-fold and leave-one-site-out, each without and with
``--harmonize combat``. A model that reads site looks good in the subject folds, which train on every
site, and loses it on a site it has not seen. A fifth way is the mistake the in-fold version avoids:
ComBat fitted once on every subject's maps with the outcome protected (as a harmonisation step run
before the analysis would), then subject-level CV: the labels of the test subjects reach the features.

Usage: ``python benchmarks/sites.py [--draws 5] [--n 90] [--effect 0.5] [--no-write]``; writes
``benchmarks/results/sites-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workflows import cross_validation as xv  # noqa: E402
from workflows import sites  # noqa: E402
from workflows.harmonize import ComBat  # noqa: E402
from workflows.models import PRIMARY_MODEL, fold_models  # noqa: E402
from workflows.params import CVParams, GroupParams  # noqa: E402
from workflows.stats import classification_scores  # noqa: E402

SHAPE = (10, 10, 8)  # 800 voxels in 40 parcels of 20 (or --parcel-voxels)


def cohort(
    seed: int, n: int, effect: float, site_effect: float, site_severity: float, parcel_voxels: int = 20
) -> dict:
    """Group inputs (the npz arrays the fold models read) of one generated 3-site cohort."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    tilt = np.array([-1.0, 0.0, 1.0])
    site = np.array(
        [rng.choice(3, p=(1 + site_severity * tilt * (1 if c else -1)) / 3.0) for c in y]
    )  # first site mostly mild, last mostly severe
    n_parcels = int(np.prod(SHAPE)) // parcel_voxels
    parcels = (np.arange(np.prod(SHAPE)) // parcel_voxels + 1).reshape(SHAPE).astype(np.int32)
    parcels[parcels > n_parcels] = 0  # a remainder too small for a parcel: background
    offsets = rng.normal(0, site_effect, size=(3, n_parcels))  # each site's scanner pattern over the parcels
    noise_scale = np.array([1.0, 1.4, 0.8])
    true = np.zeros(n_parcels)
    true[:4] = effect  # the severe patients' effect: 4 parcels
    per_parcel = offsets[site] + noise_scale[site, None] * rng.normal(size=(n, n_parcels)) + np.outer(y, true)
    maps = np.concatenate([per_parcel, np.zeros((n, 1))], axis=1)[:, parcels.reshape(-1) - 1].reshape(
        n, *SHAPE
    )
    maps = maps + 0.5 * rng.normal(size=maps.shape)  # voxel noise within parcels
    labels = np.array([f"{i:03d}" for i in range(n)])
    return {
        "x": maps.astype(np.float32),
        "y": y,
        "groups": labels,
        "subjects": labels,
        "parcels": parcels,
        "confounds": np.full((n, 6), np.nan),
        "sites": np.array(["site1", "site2", "site3"])[site],
    }


def harmonized_on_all(data: dict) -> dict:
    """The cohort's maps ComBat-harmonised on every subject at once, the outcome protected (the leak)."""
    x = data["x"].reshape(len(data["y"]), -1).astype(float)
    fixed = ComBat().fit_transform(x, sites=data["sites"], covariates=data["y"].astype(float))
    return {**data, "x": fixed.reshape(data["x"].shape).astype(np.float32)}


def score(data: dict, harmonize: str, scheme: str, seed: int) -> float:
    """Pooled out-of-fold balanced accuracy of the primary model (subject folds: mean over repeats)."""
    params = GroupParams(harmonize=harmonize, cv=CVParams(scheme=scheme), random_seed=seed)
    model = {PRIMARY_MODEL: fold_models(data, params)[PRIMARY_MODEL]}
    y, labels = data["y"], data["groups"]
    if scheme == "site":
        folds = [dict(f) for f in sites.site_folds(y, labels, data["sites"])]
    else:
        folds = xv.subject_folds(y, labels, n_folds=5, n_repeats=2, seed=seed)
    predictions, _, _ = xv.cross_validate(np.arange(len(y)), y, labels, folds, model)
    values = []
    for repeat in sorted({p["repeat"] for p in predictions}):
        rows = [p for p in predictions if p["repeat"] == repeat]
        values.append(
            classification_scores(
                np.array([r["y_true"] for r in rows]), np.array([r["prob_severe"] for r in rows])
            )["balanced_accuracy"]
        )
    return float(np.mean(values))


def record(lines: list[str], stem: str, no_write: bool) -> int:
    """Print the record and, unless ``no_write``, write it to ``results/<stem>-<date>.md``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if not no_write:
        out = Path(__file__).parent / "results" / f"{stem}-{dt.date.today()}.md"
        out.write_text(text)
        print(f"written: {out}")
    return 0


def leak(args: argparse.Namespace) -> int:
    """Null cohorts (site offsets, tilted recruitment, no effect): does ComBat fitted on all subjects leak?"""
    ways = {"none": [], "in-fold combat": [], "combat on all subjects, outcome protected": []}
    started = time.time()
    for draw in range(args.draws):
        data = cohort(draw, args.n, 0.0, args.site_effect, args.site_severity, args.parcel_voxels)
        ways["none"].append(score(data, "none", "subject", draw))
        ways["in-fold combat"].append(score(data, "combat", "subject", draw))
        ways["combat on all subjects, outcome protected"].append(
            score(harmonized_on_all(data), "none", "subject", draw)
        )
    n_parcels = 800 // args.parcel_voxels
    lines = [
        f"# Sites: ComBat fitted on all subjects against in-fold ComBat, null cohorts ({dt.date.today()})",
        "",
        f"`python benchmarks/sites.py --leak --draws {args.draws} --n {args.n} --parcel-voxels "
        f"{args.parcel_voxels} --site-effect {args.site_effect} --site-severity {args.site_severity}` "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {time.time() - started:.0f} s). "
        f"{args.n} subjects, {n_parcels} parcels, 3 sites, no class effect; the primary parcel model, "
        "subject-level 5-fold x 2. Balanced accuracy, mean and range over draws; chance is 0.5.",
        "",
        "| Harmonisation | Balanced accuracy | Range |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {np.mean(v):.2f} | {min(v):.2f}-{max(v):.2f} |" for k, v in ways.items()]
    return record(lines, "sites-leak", args.no_write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--n", type=int, default=90)
    parser.add_argument(
        "--effect", type=float, default=0.5, help="severe effect in 4 of 40 parcels (SD units)"
    )
    parser.add_argument("--site-effect", type=float, default=1.0, help="SD of each site's parcel offsets")
    parser.add_argument("--site-severity", type=float, default=0.8)
    parser.add_argument("--parcel-voxels", type=int, default=20, help="voxels per parcel (800 in all)")
    parser.add_argument(
        "--leak",
        action="store_true",
        help="null cohorts only: subject-level CV without ComBat, with in-fold ComBat and with ComBat "
        "fitted on all subjects (writes sites-leak-<date>.md)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.leak:
        return leak(args)
    conditions = [(s, h) for s in ("subject", "site") for h in ("none", "combat", "combat-nolabel")]
    results: dict[tuple[str, str], list[float]] = {c: [] for c in conditions}
    controls: dict[tuple[str, str], list[float]] = {c: [] for c in conditions}
    reference: list[float] = []  # the same effect without site offsets or tilted recruitment
    on_all: dict[str, list[float]] = {"effect": [], "null": []}  # ComBat fitted on all subjects
    started = time.time()
    for draw in range(args.draws):
        plain = cohort(draw, args.n, args.effect, 0.0, 0.0)
        reference.append(score(plain, "none", "subject", draw))
        for effect, store in ((args.effect, results), (0.0, controls)):  # the null: site only, no effect
            data = cohort(draw, args.n, effect, args.site_effect, args.site_severity, args.parcel_voxels)
            for scheme, harmonize in conditions:
                store[(scheme, harmonize)].append(score(data, harmonize, scheme, draw))
            on_all["effect" if effect else "null"].append(
                score(harmonized_on_all(data), "none", "subject", draw)
            )
    wall = time.time() - started

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.2f}"

    lines = [
        f"# Sites: subject-level CV vs leave-one-site-out, with and without in-fold ComBat "
        f"({dt.date.today()})",
        "",
        f"`python benchmarks/sites.py --draws {args.draws} --n {args.n} --effect {args.effect} "
        f"--site-effect {args.site_effect} --site-severity {args.site_severity}` "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {wall:.0f} s).",
        "",
        "Generated parcel maps of 3 sites (each with its own parcel offsets and noise level; the first "
        "site recruits mostly mild, the last mostly severe patients), the primary parcel model of the "
        "group level. Balanced accuracy of the pooled out-of-fold predictions, mean ± SD over draws.",
        "",
        "| Validation | Harmonisation | Effect in 4 parcels | No effect (site only) |",
        "|---|---|---|---|",
    ]
    for scheme, harmonize in conditions:
        name = "subject-level 5-fold x 2" if scheme == "subject" else "leave-one-site-out"
        lines.append(
            f"| {name} | {harmonize} | {cell(results[(scheme, harmonize)])} | "
            f"{cell(controls[(scheme, harmonize)])} |"
        )
    lines.append(
        f"| subject-level 5-fold x 2 | combat on all subjects, outcome protected | "
        f"{cell(on_all['effect'])} | {cell(on_all['null'])} |"
    )
    lines += [
        "",
        f"Reference: the same effect without site offsets or tilted recruitment (noise levels still differ "
        f"by site), subject-level 5-fold x 2, no harmonisation: {cell(reference)}.",
    ]
    return record(lines, "sites", args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
