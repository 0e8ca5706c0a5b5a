"""Positive and negative control at the cohort level: the simulator's planted effect, 40 patients, 5 x 5 CV.

1. ``strokefc-simulate`` writes 40 patients (4 mm, 240 volumes at TR 2 s) whose severe half carries the
   planted time-varying coupling (``--effect``).
2. The participant level computes the maps (no stationary null, for time).
3. An **oracle** written here, independently of strokefc's models: one feature per subject, the mean
   dFC SD over the planted target regions (atlas masks on the map grid, lesion-aligned by the side in
   ``participants.tsv``), and a one-feature logistic regression scored on the same subject-level
   5 x 5 folds (scikit-learn's ``StratifiedKFold``, not strokefc's code). It tells how much signal the
   maps carry, so the models' numbers can be read against it.
4. The group level (every model on the same folds, 5 x 5).
5. The **null**: the same maps with the labels shuffled between subjects (a copy of the raw dataset
   whose ``participants.tsv`` is permuted; the outputs are hard-linked): every model must be at chance.

Usage: ``python benchmarks/planted_cohort.py [--effect 0.75] [--n-subjects 40] [--n-volumes 240]``;
writes ``benchmarks/results/<date>-planted-cohort.md`` and prints it.

``--reuse`` keeps a cohort whose participant level has run (the same ``--cache``), so several group
analyses share its derivatives. ``--models NAME ...`` scores only those registry models instead of the
whole group level (no CNN), with strokefc's own steps on strokefc's folds: the group inputs
(``collect_group_inputs``, ``prepare_inputs``), the planned subject-level folds, ``fold_models``,
``cross_validate``, the subject bootstrap with paired differences from ``--primary`` (default: the
registry's primary), permutation draws of the ``--permute`` models (one repeat of k-fold per draw, for
time: a wider null than the mean over the observed repeats, so a larger p), and the report's effect-kind
sentence (``workflows.comparisons.effect_kind``) with ``--primary`` read as the primary model. It
writes ``models[-shuffled<seed>]-<names>.json`` in the cache and prints a table; labels shuffled
between subjects with ``--shuffle-labels``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPACE = "MNI152NLin2009cAsym"


def run(cmd: list, log: Path) -> float:
    """Run a command with its output in ``log``; the wall time (s)."""
    start = time.time()
    with open(log, "w") as fh:
        subprocess.run([str(c) for c in cmd], check=True, stdout=fh, stderr=subprocess.STDOUT)
    return time.time() - start


def ba_cell(summary: dict, model: str) -> str:
    """A table cell: balanced accuracy over folds, and the pooled value with its bootstrap interval."""
    ba, boot = summary["models"][model]["balanced_accuracy"], summary["bootstrap"][model]["balanced_accuracy"]
    low, high = boot["ci95"]
    return f"{ba['mean']:.2f} ± {ba['sd']:.2f} (pooled {boot['value']:.2f}, {low:.2f}-{high:.2f})"


def report_result(out: Path) -> list[str]:
    """The sentences of the group report's Result section (``group.html``), as the reader sees them."""
    import html
    import re

    page = (out / "group.html").read_text()
    block = re.search(r'<div class="result">(.*?)</div>', page, re.S)
    return [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", block.group(1), re.S)] if block else []


def write_result(name: str, lines: list[str]) -> Path:
    """Write ``lines`` to ``benchmarks/results/<today>-<name>.md``, print them and the path."""
    text = "\n".join(lines) + "\n"
    target = REPO / "benchmarks" / "results" / f"{dt.date.today().isoformat()}-{name}.md"
    target.write_text(text)
    print(text)
    print(f"written to {target}")
    return target


def oracle_feature(bids: Path, out: Path, stat: str = "dfcsd") -> dict[str, tuple[float, int]]:
    """Per subject label: the mean of one map over the planted regions (lesion-aligned by the side in the
    ground truth, atlas masks on the map grid) and the class (1 = severe), from independent code."""
    from strokefc_sim.signal import PLANTED_TARGETS
    from workflows.seeds import atlas_region_mask

    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]
    values: dict[str, tuple[float, int]] = {}
    masks: dict[str, np.ndarray] = {}
    for label, info in sorted(truth.items()):
        path = next((out / f"sub-{label}" / "func").glob(f"*_stat-{stat}_boldmap.nii.gz"), None)
        if path is None:  # not (yet) processed
            continue
        img = nb.load(str(path))
        side = info["lesion_hemisphere"]
        if side not in masks:
            contra = "R" if side == "L" else "L"
            regions = [
                np.asarray(
                    atlas_region_mask(a, [p.format(side=side if h == "ipsi" else contra)], img).dataobj
                )
                > 0
                for a, p, h in PLANTED_TARGETS
            ]
            masks[side] = np.logical_or.reduce(regions)
        values[label] = (float(np.asarray(img.dataobj)[masks[side]].mean()), int(info["ul_fma"] <= 20))
    return values


def oracle(bids: Path, out: Path, stat: str = "dfcsd", n_folds: int = 5, n_repeats: int = 5) -> dict:
    """One-feature logistic regression on the planted regions' mean of one map, subject-level repeated CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    values = oracle_feature(bids, out, stat)
    x = np.array([v[0] for v in values.values()])[:, None]
    y = np.array([v[1] for v in values.values()])
    scores = []
    for repeat in range(n_repeats):
        for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=repeat).split(x, y):
            model = LogisticRegression(class_weight="balanced").fit(x[train], y[train])
            scores.append(balanced_accuracy_score(y[test], model.predict(x[test])))
    return {"mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1))}


def light_group(
    bids: Path,
    out: Path,
    work: Path,
    names: list[str],
    *,
    primary: str,
    cv_repeats: int,
    permute: list[str],
    n_permutations: int,
    shuffle_seed: int | None = None,
) -> dict:
    """Score registry models ``names`` on strokefc's folds with strokefc's own group steps (no workflow).

    Returns ``{"models": per-fold summaries, "bootstrap": pooled values and paired differences from
    ``primary``, "permutation": the draws' p-values (or None), "effect_kind": the report's sentence
    with ``primary`` as the primary model, "seconds": per model}``. With ``shuffle_seed`` the subjects'
    labels are permuted (a null on the same maps).
    """
    from bids_app.group_level import collect_group_inputs
    from bids_app.parser import parse_args
    from workflows.comparisons import effect_kind
    from workflows.cross_validation import cross_validate, fold_indices, plan_folds, split_groups
    from workflows.cv_summary import unit_subjects
    from workflows.group_inputs import prepare_inputs
    from workflows.models import fold_models
    from workflows.permutation import permutation_nulls, permutation_summary
    from workflows.stats import bootstrap_comparison, summarise_models

    argv = [str(bids), str(out), "group", "--work-dir", str(work), "--skip-bids-validation"]
    config = parse_args([*argv, "--cv-repeats", str(cv_repeats)])
    params = config.group
    work.mkdir(parents=True, exist_ok=True)
    data_file = work / "group_inputs.npz"
    subjects = [s.as_dict() for s in collect_group_inputs(config)[0]]
    if not data_file.exists():
        prepare_inputs(subjects, params, work)
    data = dict(np.load(data_file))
    if shuffle_seed is not None:  # whole subjects' labels exchanged (one map per subject here)
        order = np.random.default_rng(shuffle_seed).permutation(len(data["y"]))
        data["y"], data["y_subject"] = data["y"][order], data["y_subject"][order]
        for s, label in zip(subjects, data["y_subject"]):
            s["score"] = 10.0 if label else 50.0
    y, groups, split = data["y"], data["groups"], split_groups(data)
    folds = [fold_indices(groups, f) for f in plan_folds(subjects, params)]
    built = fold_models(data, params)
    models = {k: built[k] for k in names if k in built}  # in the order asked
    metrics, predictions, seconds = [], [], {}
    for name, model in models.items():
        start = time.time()
        pred, met, _ = cross_validate(np.arange(len(y)), y, groups, folds, {name: model}, split_groups=split)
        predictions += [{**r, "participant_id": f"sub-{r['participant_id']}"} for r in pred]
        metrics += met
        seconds[name] = round(time.time() - start)
        ba = [m["balanced_accuracy"] for m in met]
        print(
            f"{name}: balanced accuracy {np.mean(ba):.3f} ± {np.std(ba, ddof=1):.3f}, {seconds[name]} s",
            flush=True,
        )
    summary = summarise_models(metrics)
    bootstrap = bootstrap_comparison(
        predictions, [primary], seed=params.random_seed, clusters=unit_subjects(data)
    )
    null = []
    for index in range(n_permutations if permute else 0):
        null.append(
            permutation_nulls(
                np.arange(len(y)),
                y,
                groups,
                {k: v for k, v in models.items() if k in permute},
                n_folds=params.cv.cv_folds,
                seed=params.random_seed,
                index=index,
                split_groups=split,
            )
        )
    permutation = permutation_summary(summary, null, params) if null else None
    kind = effect_kind(
        {
            "target": "classification",
            "bootstrap": bootstrap,
            "permutation": permutation,
            "primary_model": primary,
            "map": {"stat": params.map},
        }
    )
    return {
        "models": summary,
        "bootstrap": bootstrap,
        "permutation": permutation,
        "effect_kind": kind,
        "seconds": seconds,
    }


def light_cell(result: dict, model: str) -> str:
    """A table cell of :func:`light_group`'s result (as :func:`ba_cell`), with the permutation p."""
    cell = ba_cell(result, model)
    perm = ((result.get("permutation") or {}).get("models") or {}).get(model)
    return cell + (f", p = {perm['p_value']:.3f}" if perm else "")


def simulate(
    bids: Path, n_subjects: int, n_volumes: int, effect: float, dynamics: str, effect_type: str, seed: int = 7
) -> None:
    """``strokefc-simulate`` a 4 mm cohort at TR 2 s into ``bids`` (the planted effect's settings)."""
    subprocess.run(
        [
            str(BIN / "strokefc-simulate"),
            str(bids),
            "--n-subjects",
            str(n_subjects),
            "--n-volumes",
            str(n_volumes),
            "--effect",
            str(effect),
            "--dynamics",
            dynamics,
            "--effect-type",
            effect_type,
            "--seed",
            str(seed),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def shuffled_copy(bids: Path, out: Path, dest: Path, seed: int = 11) -> tuple[Path, Path]:
    """The raw dataset with labels permuted between subjects (derivatives linked), and a linked output."""
    raw = dest / "bids"
    raw.mkdir(parents=True)
    for item in bids.iterdir():
        target = raw / item.name
        if item.name == "participants.tsv":
            table = pd.read_csv(item, sep="\t", dtype=str)
            table["ul_fma"] = np.random.default_rng(seed).permutation(table["ul_fma"].to_numpy())
            table.to_csv(target, sep="\t", index=False)
        else:
            target.symlink_to(item.resolve())
    out_copy = dest / "out"
    subprocess.run(["cp", "-al", str(out), str(out_copy)], check=True)
    for stale in ("group", "model", "group.html"):
        path = out_copy / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return raw, out_copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-subjects", type=int, default=40)
    parser.add_argument("--n-volumes", type=int, default=240)
    parser.add_argument("--effect", type=float, default=0.75)
    parser.add_argument("--dynamics", default="oscillation", help="the simulator's coupling model")
    parser.add_argument("--effect-type", default="dynamic", help="dynamic, static, both or none")
    parser.add_argument(
        "--null-surrogates",
        type=int,
        default=None,
        help="passed to the participant level (default: strokefc's default; 0 = no stationary null)",
    )
    parser.add_argument("--cv-repeats", type=int, default=5)
    parser.add_argument(
        "--n-permutations",
        type=int,
        default=0,
        help="label permutations at the group level (the report's gated verdicts need them; default 0)",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/strokefc-planted"))
    parser.add_argument("--skip-null", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep a cohort whose participant level ran")
    parser.add_argument("--models", nargs="+", default=None, help="score only these registry models")
    parser.add_argument("--primary", default=None, help="with --models: the model read as the primary")
    parser.add_argument("--permute", nargs="*", default=[], help="with --models: models permuted")
    parser.add_argument("--shuffle-labels", type=int, default=None, metavar="SEED")
    args = parser.parse_args(argv)
    cache = args.cache
    bids, out, work = cache / "bids", cache / "out", cache / "work"
    reuse = args.reuse and any(out.glob("sub-*/func/*_stat-dfcsd_boldmap.nii.gz"))
    if not reuse:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
    if args.models:
        from workflows.models import PRIMARY_MODEL

        if not reuse:
            raise SystemExit("--models needs --reuse and a cohort whose participant level ran")
        primary = args.primary or PRIMARY_MODEL
        tag = "" if args.shuffle_labels is None else f"-shuffled{args.shuffle_labels}"
        result = light_group(
            bids,
            out,
            cache / f"light{tag}",
            args.models,
            primary=primary,
            cv_repeats=args.cv_repeats,
            permute=args.permute,
            n_permutations=args.n_permutations,
            shuffle_seed=args.shuffle_labels,
        )
        if args.shuffle_labels is None:
            stats = ("dfcsd", "fc")
            result["oracle"] = {s: oracle(bids, out, s, n_repeats=args.cv_repeats) for s in stats}
        name = f"models{tag}-{'-'.join(args.models)}.json"
        (cache / name).write_text(json.dumps(result, indent=1, default=str))
        for name in result["models"]:
            print(f"| {name} | {light_cell(result, name)} |")
        for stat, value in result.get("oracle", {}).items():
            print(f"oracle {stat}: {value['mean']:.2f} ± {value['sd']:.2f}")
        print(result["effect_kind"]["sentence"])
        return 0
    simulate(bids, args.n_subjects, args.n_volumes, args.effect, args.dynamics, args.effect_type)
    common = ["--nprocs", 2, "--skip-bids-validation"]
    null = [] if args.null_surrogates is None else ["--null-surrogates", args.null_surrogates]
    t_part = run(
        [BIN / "strokefc", bids, out, "participant", "--work-dir", work, *null, *common],
        cache / "participant.log",
    )
    stats = [
        s for s in ("dfcsd", "dfcexcess", "fc") if any(out.glob(f"sub-*/func/*_stat-{s}_boldmap.nii.gz"))
    ]
    oracles = {s: oracle(bids, out, s, n_repeats=args.cv_repeats) for s in stats}
    for stat, value in oracles.items():
        print(f"oracle on {stat}: balanced accuracy {value['mean']:.3f} ± {value['sd']:.3f}", flush=True)
    t_group = run(
        [
            BIN / "strokefc",
            bids,
            out,
            "group",
            "--work-dir",
            cache / "gwork",
            "--cv-repeats",
            args.cv_repeats,
            "--n-permutations",
            args.n_permutations,
            *common,
        ],
        cache / "group.log",
    )
    results = {"planted": json.loads((out / "group" / "cv_summary.json").read_text())}
    times = {"participant_s": round(t_part), "group_s": round(t_group)}
    if not args.skip_null:
        raw, out_null = shuffled_copy(bids, out, cache / "null")
        times["null_group_s"] = round(
            run(
                [
                    BIN / "strokefc",
                    raw,
                    out_null,
                    "group",
                    "--work-dir",
                    cache / "nwork",
                    "--cv-repeats",
                    args.cv_repeats,
                    "--n-permutations",
                    args.n_permutations,
                    *common,
                ],
                cache / "null_group.log",
            )
        )
        results["labels shuffled"] = json.loads((out_null / "group" / "cv_summary.json").read_text())
    models = list(results["planted"]["models"])
    name = "planted-cohort" if args.effect_type == "dynamic" else f"planted-cohort-{args.effect_type}"
    settings = f"`--effect {args.effect} --dynamics {args.dynamics} --effect-type {args.effect_type}`"
    null_text = "default" if args.null_surrogates is None else str(args.null_surrogates)
    lines = [
        f"# Planted-cohort control, effect type {args.effect_type} ({dt.date.today().isoformat()})",
        "",
        f"{args.n_subjects} generated patients (4 mm, {args.n_volumes} volumes at TR 2 s, "
        f"{settings}, seed 7); participant level at strokefc's default settings (stationary null "
        f"surrogates: {null_text}); subject-level 5-fold CV x {args.cv_repeats} repeats, "
        "the same folds for every model. "
        "Balanced accuracy: mean ± SD over folds, and the pooled out-of-fold value with its 95% "
        "subject-bootstrap interval. Chance is 0.5.",
        "",
        "Oracle (one feature: the mean of one map over the planted regions, logistic regression, "
        "independent code): "
        + "; ".join(f"{stat} {v['mean']:.2f} ± {v['sd']:.2f}" for stat, v in oracles.items())
        + ".",
        "",
        "| model | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(ba_cell(summary, m) for summary in results.values()) + " |")
    lines += ["", "The group report's Result section (planted):", ""]
    lines += [f"> {sentence}" for sentence in report_result(out)]
    lines += ["", "Run times on this machine (2 cores): " + ", ".join(f"{k} {v}" for k, v in times.items())]
    write_result(name, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
