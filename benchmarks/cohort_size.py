"""Learning curves by cohort size on full-app generated data: how many patients would the models need?

Issue 23 asks the primary model for a balanced accuracy of 0.8 and the CNN for 0.75 on a cohort whose
effect is about as large as a one-feature oracle at 0.85-0.9. On the fixed simulator that cohort takes
``--effect 1.5`` (oracle 0.87; at 40 patients the primary model reached 0.91 and the CNN 0.80:
``2026-12-04-cohort-size-fixed.md``). This script measures the models at several cohort sizes:

1. ``strokefc-simulate`` writes ONE large cohort (4 mm, 200 volumes at TR 2 s, ``--dynamics states
   --effect-type dynamic``, seed 7, ``--effect`` 0.75 by default: the planted-cohort record's effect).
2. The participant level computes the maps in batches of 40 subjects (``--nprocs 2``; subjects whose
   dFC-SD map exists are skipped, so an interrupted run resumes). The stationary null is off by default
   (``--null-surrogates 0``): it only adds the ``dfcexcess`` map, which no model here reads.
3. The group inputs (the maps on the 3 mm model grid, parcels, labels) are built once for every subject by
   the group level's own code (``collect_group_inputs`` then ``prepare_inputs``), or read from ``--inputs``.
4. Nested stratified subsets of n = 40, 60, 80, ... patients (``cohort_subsets``: a draw shuffles each
   class once, so every smaller subset lies inside the larger ones of its draw), several draws per n.
   On each subset: strokefc's subject-level 5-fold CV (``subject_folds``), and on the same folds the
   primary model of the registry (``PRIMARY_MODEL``), the static-FC control, the CNN (the app's training
   code at its default settings; it can be limited to fewer draws and sizes, it is the slow part) and the
   one-feature oracle (the mean dFC SD over the planted regions, independent code shared with
   ``planted_cohort.py``, a logistic regression fitted in the training folds). The models are the
   registry's fit functions (``fold_models``): every scaler, inner CV and early stop sits inside the
   training fold. The group-level mask is the one the app builds from all subjects' maps (no labels).
5. Fits a learning curve per model (an inverse power law, :func:`workflows.learning_curve.fit_learning_curve`)
   and the size at which it reaches the issue's target, or "not reached" when its asymptote stays
   below; compares the primary model with the static-FC control fold by fold (paired differences on
   the same folds); the one-feature oracle on the whole cohort's dFC-SD, static-FC and mean-dFC maps
   says whether the planted dynamic effect also shows in static FC.
6. Writes ``benchmarks/results/<date>-<name>.md`` and ``.json`` (after every subset, so a partial
   run leaves a record).

Usage: ``python benchmarks/cohort_size.py [--n-subjects 160] [--sizes 40 60 80 120 160] [--draws 3]
[--cnn-draws 1] [--cnn-sizes ...] [--effect 0.75] [--cache /work/bench/sizes] [--name cohort-size]``
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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workflows/, when run as a script
from planted_cohort import BIN, oracle_feature, run, simulate, write_result

from workflows.learning_curve import subsampled_folds
from workflows.models import CNN_MODEL, FC, MODELS, PRIMARY_MODEL, fold_models

#: Balanced accuracies issue 23 asks for, by model role.
TARGETS = {"primary": 0.8, "cnn": 0.75}
ORACLE = "oracle"
BATCH = 40


def control_model() -> str:
    """The static-FC control of the registry (the parcel model on static-FC maps)."""
    return next(name for name, spec in MODELS.items() if spec.role == "control" and spec.input == FC)


def cohort_subsets(y: np.ndarray, sizes: Sequence[int], draw: int) -> dict[int, np.ndarray]:
    """Nested class-stratified subsets of the subjects (one sample per subject): size -> sorted indices.

    Each class is shuffled once with seed ``draw`` and a subset of ``n`` keeps the first
    ``ceil(n / N * class size)`` of each class (:func:`workflows.learning_curve.subsampled_folds`), so the
    subsets of one draw are nested and keep the cohort's class shares. A size above the cohort is refused.
    """
    y = np.asarray(y)
    total = len(y)
    if max(sizes) > total or min(sizes) < 4:
        raise ValueError(f"cohort sizes must lie in 4..{total}, not {sorted(sizes)}")
    idx = np.arange(total)
    fold = {"repeat": 0, "fold": 0, "train": idx, "test": idx[:0]}
    # a hair below n / N, so that ceil() does not round a float error up to one subject more
    fractions = [n / total - 1e-9 for n in sorted(sizes)]
    subsets = subsampled_folds(fold, y, idx, fractions, seed=draw)
    return {n: s["train"] for n, s in zip(sorted(sizes), subsets, strict=True)}


def curve_replicates(runs: list[dict], name: str) -> tuple[list[int], list[list[float]], list[int]]:
    """A model's learning curve as :func:`workflows.learning_curve.fit_learning_curve` takes it: the sizes,
    per size the replicates that a refit resamples (the draws' mean scores when the size has several
    draws, else its fold scores) and the weights (the number of draws)."""
    sizes, replicates, weights = [], [], []
    for n in sorted({r["n"] for r in runs}):
        these = [r["scores"][name] for r in runs if r["n"] == n and name in r["scores"]]
        if not these:
            continue
        sizes.append(n)
        replicates.append([float(np.mean(t)) for t in these] if len(these) > 1 else list(these[0]))
        weights.append(len(these))
    return sizes, replicates, weights


def curve_fit(runs: list[dict], name: str, target: float) -> dict | None:
    """The inverse power law fitted to a model's curve, where it crosses ``target``, and the smallest
    measured size whose mean reaches it (``reached_n``); None with fewer than three sizes."""
    from workflows.learning_curve import fit_learning_curve

    sizes, replicates, weights = curve_replicates(runs, name)
    if len(sizes) < 3:
        return None
    fit = fit_learning_curve(sizes, replicates, target, weights=weights)
    means = [
        float(
            np.mean(np.concatenate([r["scores"][name] for r in runs if r["n"] == n and name in r["scores"]]))
        )
        for n in sizes
    ]
    fit["reached_n"] = next((n for n, m in zip(sizes, means, strict=True) if m >= target), None)
    return fit


def fit_sentence(label: str, fit: dict) -> str:
    """What a fitted curve says about its target, in words: measured, within range, extrapolated (how far)
    or not reached (the asymptote below the target)."""
    from workflows.learning_curve import EXPONENT_RANGE

    target, largest = fit["target"], int(fit["largest_n"])
    a_low, a_high = fit["a_ci"]
    if fit["b"] == 0:  # a flat (or falling) curve: c is undetermined
        shape = f"Fit flat at {fit['a']:.2f} (b = 0, c undetermined)"
    else:
        bound = (
            ", c at its search bound" if min(abs(np.log(fit["c"] / e)) for e in EXPONENT_RANGE) < 0.05 else ""
        )
        shape = f"Fit {fit['a']:.2f} - {fit['b']:.3g} n^-{fit['c']:.2f}{bound}"
    curve = f"{shape}; asymptote a = {fit['a']:.2f} (95% {a_low:.2f}-{a_high:.2f}); RMSE {fit['rmse']:.3f}"
    measured = (
        f"measured mean reaches {target} at n = {fit['reached_n']}"
        if fit["reached_n"] is not None
        else f"no measured mean reaches {target} (n <= {largest})"
    )
    low, high = fit["n_target_ci"]
    interval = (
        f"{'n/a' if low is None else round(low)}-{'not reached' if high is None else round(high)}; "
        f"{fit['reached_share']:.0%} of {fit['n_boot']} refits reach it"
    )
    n_target = fit["n_target"]
    if n_target is None:
        verdict = f"**not reached**: the fitted asymptote {fit['a']:.2f} lies below {target}"
    elif n_target < fit["smallest_n"]:
        verdict = f"the fit lies above {target} from the smallest measured size ({fit['smallest_n']:.0f}) on"
    elif n_target <= largest:
        verdict = f"the fit crosses {target} at n = {n_target:.0f} (95% {interval})"
    elif fit["supported"]:
        verdict = (
            f"the fit crosses {target} at n = {n_target:.0f}, an extrapolation {fit['extrapolation']:.1f} "
            f"times the largest measured n ({largest}) (95% {interval})"
        )
    else:
        verdict = (
            f"the fit would cross {target} at n = {n_target:.0f} ({fit['extrapolation']:.1f} x {largest}), "
            f"which the fit does not support ({'; '.join(fit['caveats'])}): read it as not shown "
            f"(95% {interval})"
        )
    return f"- {label}, target {target}: {measured}; {verdict}. {curve}."


def paired_differences(runs: list[dict], model: str, reference: str, n_folds: int) -> dict[int, dict]:
    """Per size: fold-wise ``model`` minus ``reference`` balanced accuracy on the same folds (every draw),
    the folds won and lost, and the Nadeau-Bengio corrected resampled t-test of the differences (the
    draws' subsets overlap, so its p is a rough guide)."""
    from workflows.stats import corrected_resampled_ttest

    out = {}
    for n in sorted({r["n"] for r in runs}):
        pairs = [
            np.subtract(r["scores"][model], r["scores"][reference])
            for r in runs
            if r["n"] == n and model in r["scores"] and reference in r["scores"]
        ]
        if not pairs:
            continue
        d = np.concatenate(pairs)
        test = corrected_resampled_ttest(d, 1 / (n_folds - 1))
        out[n] = {
            **test,
            "sd": float(np.std(d, ddof=1)) if d.size > 1 else None,
            "wins": int(np.sum(d > 0)),
            "losses": int(np.sum(d < 0)),
            "folds": int(d.size),
            "draw_means": [float(np.mean(p)) for p in pairs],
        }
    return out


def cohort_oracles(cache: Path) -> dict[str, dict]:
    """The one-feature oracle on the whole cohort (5 x 5 CV) for the dFC-SD, static-FC and mean-dFC maps,
    with the feature's class separation (Cohen's d): does the dynamic effect show in static FC?"""
    from planted_cohort import oracle

    out = {}
    for stat in ("dfcsd", "fc", "dfcmean"):
        values = oracle_feature(cache / "bids", cache / "out", stat)
        x = np.array([v[0] for v in values.values()])
        y = np.array([v[1] for v in values.values()])
        if len(x) < 10:
            continue
        pooled = np.sqrt((np.var(x[y == 1], ddof=1) + np.var(x[y == 0], ddof=1)) / 2)
        out[stat] = {
            **oracle(cache / "bids", cache / "out", stat),
            "cohens_d": float((x[y == 1].mean() - x[y == 0].mean()) / pooled),
            "subjects": len(x),
        }
    return out


def participant(cache: Path, labels: list[str], null_surrogates: int) -> list[dict]:
    """Participant level in batches of :data:`BATCH` subjects; subjects with a dFC-SD map are skipped."""
    bids, out = cache / "bids", cache / "out"
    todo = [lab for lab in labels if not any((out / f"sub-{lab}").glob("func/*_stat-dfcsd_boldmap.nii.gz"))]
    times = []
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        seconds = run(
            [
                BIN / "strokefc",
                bids,
                out,
                "participant",
                "--work-dir",
                cache / "work",
                "--participant-label",
                *batch,
                "--null-surrogates",
                null_surrogates,
                "--nprocs",
                2,
                "--skip-bids-validation",
            ],
            cache / f"participant_{batch[0]}.log",
        )
        times.append({"subjects": len(batch), "s": round(seconds), "load": os.getloadavg()[0]})
        print(f"participant level: {len(batch)} subjects in {seconds:.0f} s", flush=True)
    return times


def group_inputs(cache: Path, n_subjects: int) -> Path:
    """The group level's prepared inputs of every processed subject (built once per cohort size into
    ``cache/group_inputs/n<N>``)."""
    target = cache / "group_inputs" / f"n{n_subjects}" / "group_inputs.npz"
    if target.is_file():
        return target
    from bids_app.group_level import collect_group_inputs
    from bids_app.parser import parse_args
    from workflows.group_inputs import prepare_inputs

    config = parse_args(
        [
            str(cache / "bids"),
            str(cache / "out"),
            "group",
            "--work-dir",
            str(cache / "gwork"),
            "--skip-bids-validation",
        ]
    )
    subjects, excluded, _ = collect_group_inputs(config)
    if excluded:
        print(f"group inputs: {len(excluded)} subject(s) left out (no map yet, or excluded)", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    out = prepare_inputs([s.as_dict() for s in subjects], config.group, target.parent)
    return Path(out.data_file)


def oracle_fit(feature: np.ndarray):
    """The oracle as a registry-style fit function of sample indices (logistic regression on one feature,
    fitted on the training fold)."""
    from sklearn.linear_model import LogisticRegression

    def fit(idx_train, y_train, groups_train, idx_test, *, seed=0):
        del groups_train, seed
        model = LogisticRegression(class_weight="balanced").fit(feature[idx_train, None], y_train)
        return model.predict_proba(feature[idx_test, None])[:, 1], []

    return fit


def evaluate(
    data, models: dict, subset: np.ndarray, n_folds: int, repeats: int, seed: int
) -> dict[str, list[float]]:
    """Balanced accuracy of each model on each test fold of strokefc's subject-level CV of ``subset``."""
    from workflows.cross_validation import cross_validate, subject_folds

    y, groups = data["y"], data["groups"]
    folds = [
        {**f, "train": subset[f["train"]], "test": subset[f["test"]]}
        for f in subject_folds(y[subset], groups[subset], n_folds, repeats, seed)
    ]
    _, metrics, _ = cross_validate(np.arange(len(y)), y, groups, folds, models)
    return {name: [float(m["balanced_accuracy"]) for m in metrics if m["model"] == name] for name in models}


def summary_rows(runs: list[dict], names: list[str]) -> dict[str, dict[int, dict]]:
    """model -> n -> mean and SD over every fold of every draw, the SD of the draw means, and counts."""
    out: dict[str, dict[int, dict]] = {}
    for name in names:
        for n in sorted({r["n"] for r in runs}):
            these = [r["scores"][name] for r in runs if r["n"] == n and name in r["scores"]]
            if not these:
                continue
            folds = np.concatenate(these)
            draws = [float(np.mean(t)) for t in these]
            out.setdefault(name, {})[n] = {
                "mean": float(np.mean(folds)),
                "sd_folds": float(np.std(folds, ddof=1)),
                "sd_draws": float(np.std(draws, ddof=1)) if len(draws) > 1 else None,
                "draws": len(draws),
                "folds": len(folds),
            }
    return out


def merge_runs(states: list[dict]) -> dict:
    """One state from the records of runs on the same cohort (e.g. the linear models and the CNN run in
    two processes): the scores of each (n, draw) gathered, the commands and times kept."""
    merged = {**states[0], "runs": [], "times": [s["times"] for s in states]}
    merged["commands"] = [s["command"] for s in states]
    for state in states:
        for run_row in state["runs"]:
            same = next(
                (r for r in merged["runs"] if (r["n"], r["draw"]) == (run_row["n"], run_row["draw"])), None
            )
            if same is None:
                merged["runs"].append(
                    {**run_row, **{k: dict(run_row[k]) for k in ("scores", "seconds", "load")}}
                )
            else:
                for key in ("scores", "seconds", "load"):
                    same[key].update(run_row[key])
    merged["runs"].sort(key=lambda r: (r["draw"], r["n"]))
    return merged


def record(args, state: dict, names: dict[str, str]) -> None:
    """Write the markdown record and its JSON (``benchmarks/results/<date>-<name>``)."""
    table = summary_rows(state["runs"], list(names.values()))
    sizes = sorted({r["n"] for r in state["runs"]})
    fits = {
        role: curve_fit(state["runs"], names[role], target)
        for role, target in TARGETS.items()
        if names[role] in table
    }
    paired = paired_differences(state["runs"], names["primary"], names["control"], args.folds)
    state["summary"], state["fits"], state["paired_primary_minus_control"] = table, fits, paired
    state.pop("reach", None)  # the log-linear trend of earlier records, replaced by the fits
    json_path = Path(__file__).parent / "results" / f"{dt.date.today().isoformat()}-{args.name}.json"
    json_path.write_text(json.dumps(state, indent=1, default=lambda o: o.tolist()) + "\n")
    labels = {
        names["primary"]: f"primary ({names['primary']})",
        names["cnn"]: "CNN",
        names["control"]: f"static-FC control ({names['control']})",
        ORACLE: "oracle (planted regions, 1 feature)",
    }
    design = state.get("design", {"effect": args.effect, "n_volumes": args.n_volumes, "seed": args.seed})
    lines = [
        f"# Cohort size: learning curves on generated data (issue 23, {dt.date.today().isoformat()})",
        "",
        f"One generated cohort of {state['n_subjects']} patients (4 mm, {design['n_volumes']} volumes at TR "
        f"2 s, `--effect {design['effect']} --dynamics states --effect-type dynamic`, seed {design['seed']}; "
        "coupling states of 40-80 s), participant level at the default settings but "
        f"`--null-surrogates {args.null_surrogates}` (the stationary null only adds a map no model here "
        "reads). Nested class-stratified subsets of n patients (each draw shuffles each class once; a "
        "smaller subset lies inside the larger ones of its draw), strokefc's subject-level "
        f"{args.folds}-fold CV x {args.cv_repeats} repeat(s) on each subset, the same folds for every "
        "model. Balanced accuracy: mean over every test fold of every draw ± SD over those folds (the SD "
        "of the draw means in brackets when there are several draws). Chance is 0.5.",
        "",
    ]
    oracles = state.get("oracles", {})
    if oracles:
        lines += [
            "One-feature oracle on the whole cohort (mean of the map over the planted regions, logistic "
            "regression, 5 x 5 CV; Cohen's d of the feature between classes): "
            + "; ".join(
                f"{stat} {o['mean']:.2f} ± {o['sd']:.2f} (d = {o['cohens_d']:.2f})"
                for stat, o in oracles.items()
            )
            + ".",
            "",
        ]
    lines += [
        "| n | " + " | ".join(labels[m] for m in labels if m in table) + " |",
        "|---|" + "---|" * sum(m in table for m in labels),
    ]
    for n in sizes:
        cells = []
        for m in labels:
            if m not in table:
                continue
            v = table[m].get(n)
            if v is None:
                cells.append("not run")
                continue
            draws = f" [{v['sd_draws']:.2f}]" if v["sd_draws"] is not None else ""
            cells.append(f"{v['mean']:.2f} ± {v['sd_folds']:.2f}{draws} ({v['draws']} draw(s))")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Learning curves: an inverse power law BA(n) = a - b n^-c (Figueroa et al. 2012, BMC Med Inform "
        "Decis Mak 12:8) fitted by weighted least squares to the mean at each size (weights: the draws; "
        "0 <= b, a <= 1, 0.05 <= c <= 2); the interval refits on the draws resampled within each size (the "
        "folds, where a size has one draw). A crossing beyond the largest measured n is not given as a "
        "result when it lies beyond 4 times that n, when fewer than four sizes were measured, or when "
        "more than 2.5% of refits never reach the target.",
        "",
    ]
    for role, fit in fits.items():
        if fit is None:
            lines.append(f"- {labels[names[role]]}: fewer than three sizes, no fit.")
        else:
            lines.append(fit_sentence(labels[names[role]], fit))
    if paired:
        lines += [
            "",
            "Primary minus static-FC control on the same folds (every draw): mean paired difference ± SD, "
            "folds won/lost, Nadeau-Bengio corrected t-test (the draws' subsets overlap: a rough guide).",
            "",
            "| n | difference | won/lost of folds | draws' mean differences | corrected t, p |",
            "|---|---|---|---|---|",
        ]
        for n, d in paired.items():
            sd = "" if d["sd"] is None else f" ± {d['sd']:.2f}"
            lines.append(
                f"| {n} | {d['mean_difference']:+.2f}{sd} | {d['wins']}/{d['losses']} of {d['folds']} | "
                + ", ".join(f"{v:+.2f}" for v in d["draw_means"])
                + f" | {d['t']:.2f}, {d['p_two_sided']:.3f} |"
            )
    lines += [
        "",
        f"Run times (s, load average at the time): {json.dumps(state['times'])}",
        "",
        f"Code: strokefc at commit {state['commit']}; command `{state['command']}`; machine: "
        f"{state['machine']}. Cohort and group inputs: `{state['cache']}` "
        f"(`out/`: participant derivatives; `group_inputs/n{state['n_subjects']}/group_inputs.npz`).",
    ]
    write_result(args.name, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-subjects", type=int, default=160)
    parser.add_argument("--n-volumes", type=int, default=200)
    parser.add_argument("--effect", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=7, help="the simulator's seed")
    parser.add_argument("--null-surrogates", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 60, 80, 120, 160])
    parser.add_argument("--draws", type=int, default=3, help="random nested subsets per size (linear models)")
    parser.add_argument("--cnn-draws", type=int, default=1, help="of those, the draws the CNN also runs on")
    parser.add_argument("--cnn-sizes", type=int, nargs="*", default=None, help="sizes for the CNN (all)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads of the CNN")
    parser.add_argument("--cache", type=Path, default=Path("/work/bench/sizes"))
    parser.add_argument("--inputs", type=Path, default=None, help="group_inputs.npz to use (skips 1-3)")
    parser.add_argument(
        "--no-participant", action="store_true", help="use the subjects processed so far, start no new ones"
    )
    parser.add_argument("--name", default="cohort-size", help="record name: results/<date>-<name>.md/.json")
    parser.add_argument("--cnn-only", action="store_true", help="the CNN alone (a second process)")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="records (.json) of runs to merge into one record"
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_runs([json.loads(p.read_text()) for p in args.merge])
        merged["command"] = "python benchmarks/cohort_size.py " + " ".join(argv or sys.argv[1:])
        record(args, merged, merged["models"])
        return 0
    import torch

    from workflows.params import GroupParams

    torch.set_num_threads(args.threads)
    cache = args.cache
    times: dict = {}
    if args.inputs is None:
        bids = cache / "bids"
        if not (bids / "participants.tsv").is_file():
            start = time.time()
            simulate(bids, args.n_subjects, args.n_volumes, args.effect, "states", "dynamic", args.seed)
            times["simulate"] = {"s": round(time.time() - start), "load": os.getloadavg()[0]}
        labels = sorted(p.name[4:] for p in bids.glob("sub-*"))
        if not args.no_participant:
            times["participant"] = participant(cache, labels, args.null_surrogates)
        start = time.time()
        inputs = group_inputs(
            cache, len(list((cache / "out").glob("sub-*/func/*_stat-dfcsd_boldmap.nii.gz")))
        )
        times["group_inputs"] = {"s": round(time.time() - start), "load": os.getloadavg()[0]}
    else:
        inputs = args.inputs
    data = dict(np.load(inputs))
    if len(np.unique(data["groups"])) != len(data["groups"]):
        raise SystemExit("one sample per subject expected (GroupParams.samples maps, no sessions)")
    values = oracle_feature(cache / "bids", cache / "out")
    feature = np.array([values[str(s)][0] for s in data["groups"]])
    if not np.array_equal([values[str(s)][1] for s in data["groups"]], data["y"]):
        raise SystemExit("the oracle's classes differ from the group inputs' labels")
    params = GroupParams()
    names = {"primary": PRIMARY_MODEL, "cnn": CNN_MODEL, "control": control_model(), "oracle": ORACLE}
    registry = fold_models(data, params)
    models = {ORACLE: oracle_fit(feature), **{names[r]: registry[names[r]] for r in ("primary", "control")}}
    if args.cnn_only:
        models = {}
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    state = {
        "n_subjects": len(data["y"]),
        "n_severe": int(np.sum(data["y"])),
        "commit": commit,
        "command": "python benchmarks/cohort_size.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared; niced",
        "cache": str(cache),
        "design": {"effect": args.effect, "n_volumes": args.n_volumes, "seed": args.seed},
        "oracles": {} if args.cnn_only else cohort_oracles(cache),
        "models": names,
        "times": times,
        "runs": [],
    }
    cnn_sizes = set(args.sizes if args.cnn_sizes is None else args.cnn_sizes)
    for draw in range(args.draws):  # a whole curve per draw: an interrupted run still spans every size
        for n in sorted(args.sizes):
            subset = cohort_subsets(data["y"], args.sizes, draw)[n]
            these = dict(models)
            if draw < args.cnn_draws and n in cnn_sizes:
                these[CNN_MODEL] = registry[CNN_MODEL]
            for name, fit in these.items():
                start = time.time()
                scores = evaluate(data, {name: fit}, subset, args.folds, args.cv_repeats, seed=draw)[name]
                seconds = time.time() - start
                run_row = next((r for r in state["runs"] if r["n"] == n and r["draw"] == draw), None)
                if run_row is None:
                    run_row = {"n": n, "subjects": len(subset), "draw": draw, "scores": {}, "seconds": {}}
                    run_row["load"] = {}
                    state["runs"].append(run_row)
                run_row["scores"][name] = scores
                run_row["seconds"][name] = round(seconds, 1)
                run_row["load"][name] = round(os.getloadavg()[0], 1)
                print(
                    f"n={n} draw {draw} {name}: {np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"
                    f" ({seconds:.0f} s, load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                record(args, state, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
