"""``cv_summary.json`` and the group tables (``cv_predictions.tsv``, ``training_curves.tsv``,
``decision_curves.tsv``, ``learning_curves.tsv``): the folds gathered and summarised.

:func:`summarise_cv` reads every fold's predictions and metrics (:func:`workflows.cross_validation.run_fold`)
and the permutation draws (:mod:`workflows.permutation`), and writes the group's cross-validation record:
fold summaries, subject-bootstrap intervals and paired tests against the primary model (and, for a
regression, the references), quality by class, QC-FC, the decision curves of every classifier
(:mod:`workflows.decision_curve`), the primary model's learning curve (:mod:`workflows.learning_curve`),
the minimum sample size at the cohort's prevalence (:func:`workflows.study_design.sample_size_curve`),
the settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from workflows.calibration import calibration_text
from workflows.comparisons import STATIC_CONTROL, comparisons, cv_warnings
from workflows.conformal import cv_coverage
from workflows.cross_validation import CONFORMAL_COLUMNS, prediction_column, split_groups
from workflows.decision_curve import DECISION_COLUMNS, decision_curves, decision_summary
from workflows.incremental import ALPHA, METHOD, incremental_value, unit_predictions
from workflows.learning_curve import LEARNING_COLUMNS, learning_curve_summary
from workflows.model_io import json_clean
from workflows.models import (
    BASELINE_MODEL,
    CLINICAL,
    CLINICAL_NAMES,
    CONFOUND_FEATURES,
    INPUT_ARRAYS,
    MODELS,
    PRIMARY_MODEL,
    QUALITY,
    REGRESSION_REFERENCES,
    TIMESCALE_NAMES,
    descriptions,
    exported_model,
    parcel_matrix,
    timescale_model,
)
from workflows.params import AUTO_TIMESCALE, GROUP_MAPS, PROTECT_OUTCOME, GroupParams
from workflows.permutation import permutation_summary
from workflows.qc import qc_fc
from workflows.sites import site_class_counts, site_summary
from workflows.stats import (
    BOOTSTRAP_DRAWS,
    COMPARE_METRIC,
    bootstrap_comparison,
    calibration_summary,
    paired_tests,
    quality_by_class,
    regression_bootstrap,
    summarise_models,
    summarise_regression_models,
)
from workflows.study_design import detectable_effect, sample_size_curve
from workflows.utils.io import atomic_write_json, write_tsv


def timescale_summary(
    names: list[str], chosen: list[dict], params: GroupParams, static: str | None
) -> dict[str, Any]:
    """The window lengths of the maps: which one the models read (or chose per fold, with auto), the
    primary model run at each (:func:`workflows.models.timescale_model`) and the static-FC control they
    are compared with (bootstrap ``difference_from_<static>``)."""
    counts: dict[str, int] = {}
    for row in chosen:
        counts[row["timescale"]] = counts.get(row["timescale"], 0) + 1
    return {
        "requested": params.timescale or "default (the participant level's --window-length)",
        "available": names,
        "models": {name: timescale_model(name) for name in names},
        "static_control": static,
        "chosen_in_folds": chosen if params.timescale == AUTO_TIMESCALE else [],
        "chosen_counts": counts,
    }


def clinical_value(
    data: Mapping[str, np.ndarray], predictions: list[dict[str, Any]], params: GroupParams, names: set[str]
) -> dict[str, Any] | None:
    """The primary model's incremental value over the clinical baseline (:mod:`workflows.incremental`),
    on its out-of-fold predictions averaged over repeats; None without clinical covariates."""
    if INPUT_ARRAYS[CLINICAL] not in data or CLINICAL not in names:
        return None
    rows = {f"sub-{u}": i for i, u in enumerate(data["subjects"].tolist())}
    unit = unit_predictions(predictions, PRIMARY_MODEL, prediction_column(params), params.target)
    order = [u for u in unit if u in rows]
    index = np.array([rows[u] for u in order])
    truth = data["scores"] if params.target == "regression" else data["y_subject"]
    result = incremental_value(
        truth[index],
        data[INPUT_ARRAYS[CLINICAL]][index],
        np.array([unit[u] for u in order]),
        target=params.target,
    )
    return {
        "method": METHOD,
        "model": PRIMARY_MODEL,
        "clinical_model": CLINICAL,
        "covariates": [str(n) for n in data[CLINICAL_NAMES]],
        "alpha": ALPHA,
        "test_result": result,
    }


class CVSummaryFiles(NamedTuple):
    """Files written by :func:`summarise_cv`."""

    summary_file: str
    predictions_file: str
    curves_file: str
    site_predictions_file: str | None = None  # site_predictions.tsv (leave-one-site-out), when run
    learning_curves_file: str | None = None  # learning_curves.tsv
    decision_curves_file: str | None = None  # decision_curves.tsv (classification only)


def site_section(
    site_fold_files: list[str],
    data: Mapping[str, np.ndarray],
    params: GroupParams,
    clusters: Mapping[str, str],
    work_dir: Path,
) -> tuple[dict[str, Any] | None, str | None]:
    """The ``sites`` record of cv_summary.json (class counts per site and, when it ran, the
    leave-one-site-out results: :func:`workflows.sites.site_summary`) and site_predictions.tsv."""
    if "sites" not in data:
        return None, None
    units = [f"sub-{u}" for u in data["subjects"].tolist()]
    site_of = dict(zip(units, np.asarray(data["sites"]).astype(str).tolist()))
    record: dict[str, Any] = {
        "class_counts": site_class_counts(list(site_of.values()), data["y_subject"]),
        "cv_scheme": params.cv.scheme,
        "leave_site_out": None,
    }
    if not site_fold_files:
        return record, None
    predictions, metrics, held_out = [], [], []
    for path in site_fold_files:
        part = json.loads(Path(path).read_text())
        predictions += part["predictions"]
        metrics += [dict(m, site=part["site"]) for m in part["metrics"]]
        held_out.append(str(part["site"]))
    for row in predictions:
        row["participant_id"] = f"sub-{row['participant_id']}"
        row["site"] = site_of[row["participant_id"]]
    predictions.sort(key=lambda r: (r["site"], r["model"], r["participant_id"]))
    value = prediction_column(params)
    table = write_tsv(
        work_dir / "site_predictions.tsv",
        predictions,
        ["participant_id", "site", "model", "y_true", value],
    )
    sites = sorted(held_out)
    record["leave_site_out"] = {
        "sites": sites,
        "training_sites": {s: [t for t in sites if t != s] for s in sites},
        "description": "each site held out once: every model trained on the subjects of the other sites "
        "(every fitted step inside that training set) and scored on the held-out site's subjects; "
        f"ci95: subject-level bootstrap ({BOOTSTRAP_DRAWS} draws, a subject's sessions together) of the "
        "held-out predictions, pooled over sites or within one site (a draw without both classes has no "
        "balanced accuracy or AUC and is left out of their interval; a site of one class reports accuracy, "
        "sensitivity or specificity)",
        **site_summary(predictions, site_of, params, PRIMARY_MODEL, clusters=clusters),
        "fold_metrics": sorted(metrics, key=lambda m: (m["site"], m["model"])),
    }
    return record, str(table)


def unit_subjects(data: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{"sub-<unit>": subject}`` of every unit of the group inputs (the bootstrap's clusters)."""
    return {
        f"sub-{unit}": str(subject)
        for unit, subject in zip(data["groups"].tolist(), split_groups(data).tolist())
    }


def subjects_per_class(data: Mapping[str, np.ndarray], regression: bool) -> dict[str, int]:
    """Subjects (not sessions) of each class; one count of every subject for a regression. A subject
    whose sessions differ in class counts in both."""
    clusters = unit_subjects(data)
    units = [f"sub-{u}" for u in data["subjects"].tolist()]
    if regression:
        return {"subjects": len(set(clusters.values()))}
    y = np.asarray(data["y_subject"]).astype(int)
    return {
        name: len({clusters[u] for u, c in zip(units, y) if c == value})
        for name, value in (("severe", 1), ("mild-to-moderate", 0))
    }


def deployed_calibration(
    predictions: list[dict[str, Any]], params: GroupParams, clusters: Mapping[str, str]
) -> dict[str, Any] | None:
    """In-CV calibration (intercept, slope, scaled Brier) of the model the group level exports, from its
    out-of-fold predictions (:func:`workflows.stats.calibration_summary`); the model card carries it."""
    name = exported_model(params)
    out = calibration_summary(predictions, name, params.target, seed=params.random_seed, clusters=clusters)
    if out is not None and params.target != "regression" and params.calibration != "none":
        recalibrated = MODELS[name].calibrated
        out["note"] = (
            f"the out-of-fold probabilities were recalibrated in-fold ({params.calibration}), but the "
            "exported model is not: its own probabilities may be less well calibrated than these"
            if recalibrated
            else "this model is never recalibrated (--calibration leaves it as it is)"
        )
    return out


def decision_section(
    predictions: list[dict[str, Any]], params: GroupParams, work_dir: Path
) -> tuple[dict[str, Any], str | None]:
    """cv_summary.json's ``decision_curve`` and decision_curves.tsv (every classifier's net benefit,
    :mod:`workflows.decision_curve`); a regression gets only a note (a predicted score is not a risk)."""
    if params.target == "regression":
        return {
            "skipped": "decision curves need predicted probabilities of a class; this run predicted the "
            "UL-FMA score (regression)"
        }, None
    rows = decision_curves(predictions)
    table = write_tsv(work_dir / "decision_curves.tsv", rows, list(DECISION_COLUMNS))
    summary = decision_summary(rows, PRIMARY_MODEL, calibration_text(params) or "") or {}
    return summary, str(table)


def learning_section(
    fold_learning: list[dict[str, Any]], params: GroupParams, work_dir: Path
) -> tuple[dict[str, Any], str]:
    """cv_summary.json's ``learning_curve`` and learning_curves.tsv (the primary model by training size)."""
    regression = params.target == "regression"
    fold_learning.sort(key=lambda r: (r["repeat"], r["fold"], r["fraction"]))
    columns = list(LEARNING_COLUMNS) + (["mae"] if regression else [])
    table = write_tsv(work_dir / "learning_curves.tsv", fold_learning, columns)
    metric = "mae" if regression else "balanced_accuracy"
    return {
        "model": PRIMARY_MODEL,
        "metric": metric,
        "description": "the primary model refit on nested subject-level subsets of each outer fold's "
        "training subjects (stratified by class for a classification) and scored on the fold's unchanged "
        "test subjects; fraction 1.0 is the fold's own fit; mean, SD and range over folds x repeats",
        "points": learning_curve_summary(fold_learning, metric),
    }, str(table)


def sample_size_section(
    data: Mapping[str, np.ndarray], summary: Mapping[str, Any], per_class: Mapping[str, int], target: str
) -> dict[str, Any]:
    """cv_summary.json's ``sample_size``: Riley et al.'s minimum n for this cohort's prevalence and the
    primary model's candidate parameters (its parcels), across anticipated C and at its out-of-fold AUC."""
    if target == "regression":
        return {
            "skipped": "the minimum sample size is computed for the binary outcome (severe vs "
            "mild-to-moderate); this run predicted the UL-FMA score (regression)"
        }
    severe, mild = int(per_class.get("severe", 0)), int(per_class.get("mild-to-moderate", 0))
    _, parcels = parcel_matrix(data["parcels"])
    auc = ((summary.get("bootstrap") or {}).get(PRIMARY_MODEL) or {}).get("roc_auc", {}).get("value")
    observed = None if auc is None or not np.isfinite(auc) else float(auc)
    return sample_size_curve(severe / (severe + mild), int(parcels.size), severe + mild, observed)


def summarise_cv(
    fold_files: list[str],
    null: list[dict[str, float]],
    data_file: str | Path,
    params: GroupParams,
    work_dir: str | Path,
    site_fold_files: list[str] | None = None,
) -> CVSummaryFiles:
    """Gather the folds into cv_predictions.tsv, training_curves.tsv and cv_summary.json (in ``work_dir``).

    ``site_fold_files`` are the leave-one-site-out folds (:func:`workflows.sites.plan_site_folds`):
    summarised apart (``sites`` in cv_summary.json, site_predictions.tsv), never pooled with the
    subject-level folds.
    """
    from workflows.cnn import count_parameters, model_for  # PyTorch: only to count the CNN's weights

    work_dir = Path(work_dir)
    predictions, fold_metrics, curves, chosen, conformal, learning = [], [], [], [], [], []
    for path in fold_files:
        part = json.loads(Path(path).read_text())
        predictions += part["predictions"]
        fold_metrics += part["metrics"]
        curves += part["curves"]
        chosen += part.get("timescales", [])
        conformal += [part["conformal"]] if part.get("conformal") else []
        learning += part.get("learning_curve", [])

    def key(r: dict[str, Any]) -> tuple[int, int]:
        return (r["repeat"], r["fold"])

    predictions.sort(key=lambda r: (*key(r), r["model"], r["participant_id"]))
    curves.sort(key=lambda r: (*key(r), r["epoch"]))
    fold_metrics.sort(key=lambda r: (*key(r), r["model"]))
    for row in predictions:
        row["participant_id"] = f"sub-{row['participant_id']}"
    regression = params.target == "regression"
    extra = list(CONFORMAL_COLUMNS[params.target])
    predictions_file = write_tsv(
        work_dir / "cv_predictions.tsv",
        [{**row, **{c: "n/a" for c in extra if row.get(c) is None}} for row in predictions],
        ["participant_id", "repeat", "fold", "model", "y_true", prediction_column(params), *extra],
    )
    curves_file = write_tsv(
        work_dir / "training_curves.tsv", curves, ["repeat", "fold", "epoch", "train_loss", "val_loss"]
    )
    names = {m["model"] for m in fold_metrics}
    data = np.load(data_file)
    timescales = [str(n) for n in data[TIMESCALE_NAMES]] if TIMESCALE_NAMES in data else []
    # with maps at several window lengths every model is also compared with the static-FC control
    static = [STATIC_CONTROL] if timescales and STATIC_CONTROL in names else []
    clusters = unit_subjects(data)
    if regression:
        models = summarise_regression_models(fold_metrics)
        # the primary's difference from the static-FC control says whether an effect is dynamic or static
        control = [STATIC_CONTROL] if STATIC_CONTROL in names else []
        references = [r for r in REGRESSION_REFERENCES if r in names] + control
        bootstrap = regression_bootstrap(
            predictions, references, params.severe_threshold, params.random_seed, clusters=clusters
        )
    else:
        models = summarise_models(fold_metrics)
        # subject-bootstrap intervals of the pooled out-of-fold scores and paired differences
        bootstrap = bootstrap_comparison(
            predictions, [PRIMARY_MODEL, *static], seed=params.random_seed, clusters=clusters
        )
    described = descriptions(params.target)
    calibration = deployed_calibration(predictions, params, clusters)
    permutation = permutation_summary(models, null, params) if null else None
    y_subject = data["y_subject"]
    quality = data[INPUT_ARRAYS[QUALITY]]
    n_folds = int(max(m["fold"] for m in fold_metrics) + 1)
    sites, site_predictions = site_section(site_fold_files or [], data, params, clusters, work_dir)
    summary = {
        "target": params.target,
        "models": models,
        "model_descriptions": {name: described[name] for name in models if name in described}
        | {
            timescale_model(t): f"the primary parcel model on the {t} maps (same folds)"
            for t in timescales
            if timescale_model(t) in models
        },
        "map": {"stat": params.map, "description": GROUP_MAPS[params.map]},
        "timescales": timescale_summary(timescales, chosen, params, STATIC_CONTROL if static else None),
        "primary_model": PRIMARY_MODEL,
        "bootstrap": bootstrap,
        "quality_by_class": quality_by_class(quality, y_subject, CONFOUND_FEATURES),
        "qc_fc": qc_fc(data["maps"], quality[:, CONFOUND_FEATURES.index("mean_fd_mm")]),
        "paired_tests": paired_tests(
            fold_metrics,
            PRIMARY_MODEL,
            test_fraction=1.0 / max(1, n_folds - 1),
            metric=COMPARE_METRIC[params.target],
        ),
        "fold_metrics": fold_metrics,
        "n_subjects": len(set(clusters.values())),
        "n_sessions": len(y_subject),  # units: subject-sessions (the subjects without sessions)
        "n_samples": len(data["y"]),
        "class_counts": {  # units (subject-sessions) per class; a subject's sessions may differ
            "severe": int((y_subject == 1).sum()),
            "mild-to-moderate": int((y_subject == 0).sum()),
        },
        "cv": {
            "folds": n_folds,
            "repeats": params.cv.cv_repeats,
            "grouped_by": "subject",
            "splitter": "sklearn StratifiedGroupKFold by subject (shuffled, seed = random_seed + repeat)",
            "interval": "models.*.ci95: 95% t-interval over folds x repeats (optimistic: folds share "
            "subjects); bootstrap.*.ci95 (the honest interval): subject-level bootstrap of the pooled "
            "out-of-fold predictions, a subject's sessions drawn together",
        },
        "samples": params.samples,
        "permutation": permutation,
        "calibration": calibration_text(params),
        "calibration_metrics": calibration,
        "baseline": MODELS[BASELINE_MODEL].description[params.target],
        "cnn_parameters": count_parameters(
            model_for(data["x"].shape[1:], params.train, n_classes=1 if regression else 2)
        ),
        "conformal": cv_coverage(
            predictions, conformal, params.target, params.conformal_coverage, PRIMARY_MODEL
        ),
        "clinical_value": clinical_value(data, predictions, params, names),
        "sites": sites,
        "harmonization": harmonization_text(params),
        "settings": params.to_dict(),
    }
    per_class = subjects_per_class(data, regression)
    summary["comparisons"] = comparisons(summary)
    summary["warnings"] = cv_warnings(summary, per_class, exported=exported_model(params))
    summary["detectable_effect"] = detectable_effect(per_class, params.target)
    summary["decision_curve"], decision_file = decision_section(predictions, params, work_dir)
    summary["learning_curve"], learning_file = learning_section(learning, params, work_dir)
    summary["sample_size"] = sample_size_section(data, summary, per_class, params.target)
    summary_file = atomic_write_json(work_dir / "cv_summary.json", json_clean(summary))
    return CVSummaryFiles(
        str(summary_file),
        str(predictions_file),
        str(curves_file),
        site_predictions,
        learning_file,
        decision_file,
    )


def harmonization_text(params: GroupParams) -> str | None:
    """What was harmonised, in words (None without harmonisation)."""
    if params.harmonize == "none":
        return None
    protected = PROTECT_OUTCOME[params.harmonize]
    return (
        "ComBat (empirical Bayes; workflows.harmonize) of the parcel features of the parcel models, "
        "fitted on each training fold's subjects only"
        + (" with their outcome protected" if protected else " (outcome not protected)")
        + ", and applied to the fold's test subjects with the training estimates"
        + (" and without their outcome" if protected else "")
        + " (a site absent from "
        "training: estimated from its test subjects' features, unlabelled); the voxel PCA baseline, the "
        "CNN and the confound-only model are not harmonised; the exported model is not harmonised"
    )
