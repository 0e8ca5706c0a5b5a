"""The exported model: the registry's exported model (the CNN) trained on every subject, with its card.

:func:`train_final` trains it on every labelled sample (its cross-validated performance comes from the
folds, not from this fit); :func:`export_model` completes the model card (grid, labels, the CV metrics of
every model, the training cohort, intended use and limitations: :mod:`workflows.model_card`) and writes
``model.safetensors`` and ``model_card.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workflows.cnn import train_model
from workflows.cross_validation import split_groups, targets
from workflows.metadata import software_versions
from workflows.model_card import card_sections
from workflows.model_io import load_model, save_model
from workflows.models import (
    BASELINE_MODEL,
    EXPORTED_MODEL,
    MODELS,
    PARCEL_ATLAS,
    TIMESCALE_MAPS,
    TIMESCALE_NAMES,
    parcel_matrix,
    select_timescale,
)
from workflows.params import AUTO_TIMESCALE, GROUP_MAPS, GroupParams, timescale_seconds
from workflows.seeds import atlas_record

LOGGER = logging.getLogger("strokefc.group")


def train_final(data_file: str | Path, params: GroupParams, work_dir: str | Path) -> str:
    """Train the final model on every labelled subject; saved (safetensors) in ``work_dir/final``."""
    torch.set_num_threads(params.threads)  # runs alongside the cross-validation folds
    data = np.load(data_file)
    train = replace(params.train, seed=params.random_seed)
    regression = params.target == "regression"
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
    model, curve = train_model(x, y, groups, train, regression=regression)
    card = {
        "input": {},
        "training": {
            **train.to_dict(),
            "final_epochs_run": len(curve),
            "n_samples": len(data["y"]),
            **chosen,
            **model.training_device,  # device, deterministic ("full", or "partial on CUDA"), ops that warned
        },
    }
    LOGGER.info("final model: trained on every subject (%d epochs)", len(curve))
    return str(save_model(model, card, Path(work_dir) / "final"))


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
) -> str:
    """Re-load the final model safely, complete its card (grid, labels, CV metrics, the training
    ``cohort`` with intended use and limitations: :mod:`workflows.model_card`), export it."""
    model, partial_card = load_model(final_dir)
    grid = json.loads(Path(grid_file).read_text())
    summary = json.loads(Path(summary_file).read_text())
    cv: dict[str, Any] = {
        name: {
            **{m: v["mean"] for m, v in metrics.items()},
            **{f"{m}_sd": v["sd"] for m, v in metrics.items()},
            **{f"{m}_ci95": v["ci95"] for m, v in metrics.items()},
        }
        for name, metrics in summary["models"].items()
    }
    cv.update(
        folds=summary["cv"]["folds"],
        repeats=summary["cv"]["repeats"],
        grouped_by="subject",
        permutation_p_value=(
            ((summary.get("permutation") or {}).get("models", {}).get(EXPORTED_MODEL) or {}).get("p_value")
        ),
    )
    regression = params.target == "regression"
    card = {
        "Name": "strokefc UL-FMA " + ("regression" if regression else "severity") + " CNN",
        "Description": (
            "3D CNN predicting the UL-FMA score (severe when the predicted score <= threshold)"
            if regression
            else "3D CNN classifying severe (UL-FMA <= threshold) vs mild-to-moderate upper-limb impairment"
        )
        + " from lesion-aligned ipsilesional-M1 "
        + ("dFC variability (SD) maps" if params.map == "dfcsd" else GROUP_MAPS[params.map] + " maps"),
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
            "normalisation": "voxelwise z-score, mean/SD fit on the training samples "
            "(buffers in_mean/in_std of the weights)",
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
            "class_counts": summary["class_counts"],
        },
        "cross_validation": cv,
        # the classification baseline's text for both targets, as the cards written so far (a regression
        # card's own baseline is in cv_summary.json)
        "baseline": MODELS[BASELINE_MODEL].description["classification"],
        **card_sections(
            cohort, {"parcels": atlas_record(PARCEL_ATLAS), "saliency_regions": atlas_record(PARCEL_ATLAS)}
        ),
    }
    return str(save_model(model, card, model_dir))
