"""The exported model: the primary parcel model (default) or the CNN, trained on every subject, with its card.

:func:`train_final` trains the model ``GroupParams.export_model`` names (:func:`workflows.models.
exported_model`) on every labelled sample: the primary parcel model as plain arrays
(:mod:`workflows.parcel_model`), or the CNN. Its cross-validated performance comes from the folds, not
from this fit. :func:`export_model` completes the model card (grid, labels, the deployed model's
subject-bootstrap interval, permutation p-value and in-CV calibration, the CV metrics of every model,
the training cohort with a hash of every training subject's id, intended use and limitations:
:mod:`workflows.model_card`) and writes ``model.safetensors`` and ``model_card.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from workflows.conformal import cv_calibration
from workflows.cross_validation import prediction_column, split_groups, targets
from workflows.metadata import software_versions
from workflows.model_card import card_sections
from workflows.model_io import load_arrays, load_model, read_card, save_arrays, save_model
from workflows.models import (
    BASELINE_MODEL,
    MODELS,
    MOTOR_PRIOR_MODEL,
    PARCEL_ATLAS,
    PARCEL_EXPORTS,
    PARCEL_VOLUMES,
    PRIMARY_MODEL,
    TIMESCALE_MAPS,
    TIMESCALE_NAMES,
    exported_model,
    parcel_matrix,
    select_timescale,
)
from workflows.params import AUTO_TIMESCALE, GROUP_MAPS, GroupParams, timescale_seconds
from workflows.parcel_model import PARCEL_TYPE, ParcelLinearModel, features_record, fit_parcel_model
from workflows.permutation import null_scores
from workflows.seeds import atlas_record

LOGGER = logging.getLogger("strokefc.group")


def train_final(data_file: str | Path, params: GroupParams, work_dir: str | Path) -> str:
    """Train the exported model on every labelled subject; saved (safetensors) in ``work_dir/final``."""
    data = np.load(data_file)
    out = Path(work_dir) / "final"
    x, y, groups = data["x"], targets(data, params), split_groups(data)
    chosen = {}
    if params.timescale == AUTO_TIMESCALE:  # chosen on every subject, as each fold chose on its own
        names = [str(n) for n in data[TIMESCALE_NAMES]]
        operator, _ = parcel_matrix(data["parcels"])
        name = select_timescale(
            dict(zip(names, data[TIMESCALE_MAPS])),
            y,
            groups,
            operator=operator,
            target=params.target,
            seed=params.random_seed,
        )
        x, chosen = data[TIMESCALE_MAPS][names.index(name)], {"timescale_chosen": name}
    name = exported_model(params)
    if name in PARCEL_EXPORTS:
        model, _, facts = fit_parcel_model(
            x, y, groups, data[PARCEL_VOLUMES[name]], target=params.target, seed=params.random_seed, name=name
        )
        card = {
            "ModelType": PARCEL_TYPE,
            "input": {},
            "target": params.target,
            "features": features_record(model, name),
            "training": {**facts, "n_samples": len(data["y"]), "seed": params.random_seed, **chosen},
        }
        LOGGER.info("final model: trained on every subject (%s)", MODELS[name].noun)
        return str(save_arrays(model.to_arrays(), card, out))
    import torch  # only when the CNN is the exported model: a parcel model's final fit needs none

    from workflows.cnn import train_model

    torch.set_num_threads(params.threads)  # runs alongside the cross-validation folds
    train = replace(params.train, seed=params.random_seed)
    regression = params.target == "regression"
    cnn, curve = train_model(x, y, groups, train, regression=regression)
    card = {
        "input": {},
        "training": {
            **train.to_dict(),
            "final_epochs_run": len(curve),
            "n_samples": len(data["y"]),
            **chosen,
            **cnn.training_device,  # device, deterministic ("full", or "partial on CUDA"), ops that warned
        },
    }
    LOGGER.info("final model: trained on every subject (%d epochs)", len(curve))
    return str(save_model(cnn, card, out))


def deployed_evidence(summary: dict, name: str) -> dict[str, Any]:
    """The deployed model's evidence from ``cv_summary.json``: the honest interval, permutation p and
    in-CV calibration.

    The interval is the subject-level (cluster) bootstrap of the pooled out-of-fold predictions, the
    one the summary calls honest; the fold t-interval (``*_ci95`` of every model) is optimistic. The
    calibration (intercept, slope, Brier and scaled Brier, or for a regression calibration-in-the-large
    and slope) is that of the same out-of-fold predictions (None in a summary written before it).
    """
    bootstrap = summary.get("bootstrap", {}).get(name, {})
    calibration = summary.get("calibration_metrics") or {}
    permutation = ((summary.get("permutation") or {}).get("models") or {}).get(name) or {}
    return {
        "model": name,
        **{
            metric: {"value": value.get("value"), "ci95": value.get("ci95")}
            for metric, value in bootstrap.items()
            if isinstance(value, dict) and "value" in value
        },
        "interval": "95% subject-level bootstrap of the pooled out-of-fold predictions (a subject's "
        "sessions drawn together)",
        "permutation_p_value": permutation.get("p_value"),
        "permutations": len(null_scores(permutation)[1]),
        "n_subjects": summary.get("n_subjects"),
        "n_sessions": summary.get("n_sessions"),
        "calibration": calibration if calibration.get("model") == name else None,
    }


def conformal_record(predictions_file: str | Path | None, name: str, params: GroupParams) -> dict[str, Any]:
    """``{"conformal": ...}``: the exported model's calibration scores from its cross-validated predictions
    (:func:`workflows.conformal.cv_calibration`), or {} without them (no file, or no row of the model)."""
    if predictions_file is None:
        return {}
    value = prediction_column(params)
    with open(predictions_file) as fh:
        rows = [
            {
                "participant_id": r["participant_id"],
                "model": r["model"],
                "y_true": float(r["y_true"]),
                value: float(r[value]),
            }
            for r in csv.DictReader(fh, delimiter="\t")
            if r["model"] == name and r[value] not in ("", "n/a")
        ]
    if not rows:
        return {}
    return {"conformal": cv_calibration(rows, name, params.target, value, params.conformal_coverage)}


def site_evidence(summary: dict, name: str) -> dict[str, Any] | None:
    """The card's sites: the training sites with their class counts, the deployed model's
    leave-one-site-out results (pooled and per held-out site, bootstrap intervals) when that ran, and
    whether the features were harmonised (None without site information)."""
    sites = summary.get("sites")
    if not sites:
        return None
    loso = sites.get("leave_site_out") or {}

    def scores(record: dict) -> dict:
        return {
            metric: {"value": value.get("value"), "ci95": value.get("ci95")}
            for metric, value in record.get(name, {}).items()
            if isinstance(value, dict) and "value" in value
        }

    return {
        "training_sites": sites.get("class_counts"),
        "leave_site_out": {
            "pooled": scores(loso.get("pooled", {})),
            "per_site": {
                site: {"class_counts": rec.get("class_counts"), **scores(rec.get("models", {}))}
                for site, rec in (loso.get("per_site") or {}).items()
            },
        }
        if loso
        else None,
        "harmonization": summary.get("harmonization")
        or "none: the features were not harmonised across sites",
        # ComBat's training estimates are not stored with the weights: participant --model applies the
        # model to unharmonised features, as it was trained (left for a later version)
        "deployed_model_harmonized": False,
    }


def chosen_window(partial_card: dict) -> dict:
    """``WindowLength_s`` of the window length the final model chose (``--timescale auto``), else {}."""
    name = partial_card.get("training", {}).get("timescale_chosen")
    return {"WindowLength_s": timescale_seconds(name)} if name else {}


def export_model(
    final_dir: str | Path,
    grid_file: str | Path,
    summary_file: str | Path,
    params: GroupParams,
    shared_params: dict,
    model_dir: str | Path,
    cohort: dict | None = None,
    predictions_file: str | Path | None = None,
) -> str:
    """Re-load the final model safely, complete its card (grid, labels, the deployed model's evidence,
    CV metrics, the training ``cohort`` with intended use and limitations: :mod:`workflows.model_card`),
    export it. With ``predictions_file`` (cv_predictions.tsv) the card carries the exported model's
    conformal calibration (:func:`conformal_record`)."""
    partial_card = read_card(final_dir)
    name = exported_model(params)
    grid = json.loads(Path(grid_file).read_text())
    summary = json.loads(Path(summary_file).read_text())
    cv: dict[str, Any] = {
        model: {
            **{m: v["mean"] for m, v in metrics.items()},
            **{f"{m}_sd": v["sd"] for m, v in metrics.items()},
            **{f"{m}_ci95": v["ci95"] for m, v in metrics.items()},
        }
        for model, metrics in summary["models"].items()
    }
    evidence = deployed_evidence(summary, name)
    cv.update(
        folds=summary["cv"]["folds"],
        repeats=summary["cv"]["repeats"],
        grouped_by="subject",
        fold_interval="<model>.<metric>_ci95: 95% t-interval over folds x repeats (optimistic: folds "
        "share subjects); the deployed model's honest interval is DeployedModel",
        permutation_p_value=evidence["permutation_p_value"],
    )
    regression = params.target == "regression"
    parcel = partial_card["ModelType"] == PARCEL_TYPE
    what = (
        "3D CNN"
        if not parcel
        else MODELS[name].methods
        if name != PRIMARY_MODEL
        else "ridge regression on HCPEx parcel means (the primary model)"
        if regression
        else "L2 logistic regression on HCPEx parcel means (the primary model)"
    )
    atlases = {"parcels": atlas_record(PARCEL_ATLAS), "saliency_regions": atlas_record(PARCEL_ATLAS)}
    if name == MOTOR_PRIOR_MODEL:  # its regions come from HCPEx and AAL (workflows.motor_prior)
        atlases["motor_prior_regions"] = atlas_record("AAL")
    card = {
        **{k: v for k, v in partial_card.items() if k in ("ModelType", "features", "architecture")},
        "Name": "strokefc UL-FMA "
        + ("regression" if regression else "severity")
        + (" parcel model" if parcel else " CNN"),
        "Description": (
            f"{what} predicting the UL-FMA score (severe when the predicted score <= threshold)"
            if regression
            else f"{what} classifying severe (UL-FMA <= threshold) vs mild-to-moderate upper-limb impairment"
        )
        + " from lesion-aligned ipsilesional-M1 "
        + ("dFC variability (SD) maps" if params.map == "dfcsd" else GROUP_MAPS[params.map] + " maps"),
        "DeployedModel": evidence,
        "calibrated": False,
        "target": params.target,
        "strokefc_version": software_versions().get("strokefc", "unknown"),
        "software": software_versions(),
        "input": {
            "grid": grid,
            "space": (shared_params or {}).get("Space"),
            "align_lesion": params.align_lesion,
            "resolution_mm": params.cnn_resolution,
            "map": (
                "stat-dfcsd (subject-level dFC SD map)"
                if params.map == "dfcsd"
                else f"stat-{params.map} (subject-level map: {GROUP_MAPS[params.map]})"
            )
            if params.samples == "maps"
            else "stat-windows (window maps; subject prediction = mean over windows)",
            "stat": params.map,
            "timescale": partial_card.get("training", {}).get("timescale_chosen")
            or params.timescale
            or "the participant level's --window-length (dfc_parameters.WindowLength_s)",
            "samples": params.samples,
            "lesion_alignment": "right-lesion maps mirrored about world x = 0 (left = ipsilesional)"
            if params.align_lesion
            else "none",
            "normalisation": "parcel means standardised with the training mean/SD (arrays mean/scale "
            "of the weights)"
            if parcel
            else "voxelwise z-score, mean/SD fit on the training samples (buffers in_mean/in_std of the "
            "weights)",
        },
        "label": {
            "column": params.label_column,
            "severe_threshold": params.severe_threshold,
            "positive_class": "severe",
            "definition": f"severe = {params.label_column} <= {params.severe_threshold:g}",
            "target": params.target,
            "output": "predicted UL-FMA score (points; class = predicted score <= severe_threshold)"
            if regression
            else "probability of severe",
        },
        # a window length chosen by --timescale auto is the one a predicted subject's map must have
        "dfc_parameters": {**(shared_params or {}), **chosen_window(partial_card)},
        "training": {
            **partial_card.get("training", {}),
            "n_subjects": summary["n_subjects"],
            "n_sessions": summary.get("n_sessions"),
            "class_counts": summary["class_counts"],
        },
        "cross_validation": cv,
        **conformal_record(predictions_file, name, params),
        "sites": site_evidence(summary, name),
        # the classification baseline's text for both targets, as the cards written so far (a regression
        # card's own baseline is in cv_summary.json)
        "baseline": MODELS[BASELINE_MODEL].description["classification"],
        **card_sections(cohort, atlases),
    }
    if parcel:
        arrays, _ = load_arrays(final_dir)
        ParcelLinearModel.from_arrays(arrays, params.target)  # refuse a malformed file before export
        return str(save_arrays(arrays, card, model_dir))
    model, _ = load_model(final_dir)
    card.pop("ModelType", None)  # save_model writes the CNN's own
    card.pop("architecture", None)
    return str(save_model(model, card, model_dir))
