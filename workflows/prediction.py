"""Apply a trained model to one subject's dFC variability map, refusing any mismatch with the card.

The model is the primary parcel model (arrays, :mod:`workflows.parcel_model`) or the CNN, as its card's
``ModelType`` says; both read the map put on the card's grid exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np

from workflows.cnn import predict_proba, predict_score
from workflows.conformal import UL_FMA_RANGE, apply_calibration
from workflows.grid import apply_grid, grid_mask, lesion_exclusion
from workflows.metadata import shared_parameters
from workflows.model_io import CNN_TYPE, check_card_compatible, load_arrays, load_model, read_card
from workflows.models import CNN_MODEL, PRIMARY_MODEL
from workflows.parcel_model import PARCEL_TYPE, ParcelLinearModel
from workflows.utils.errors import InputError
from workflows.utils.images import load_nifti

#: Share of the model's brain mask a resampled map must cover.
MIN_GRID_COVERAGE = 0.5


def predict_subject(
    map_file: Path | str,
    model_dir: Path | str,
    *,
    subject: str,
    lesion_side: str,
    space: str,
    meta: dict,
    lesion_files: Sequence[Path | str] = (),
    map_uri: str | None = None,
    model_uri: str | None = None,
) -> dict:
    """Probability of severe impairment for one subject (a regression model: the predicted UL-FMA).

    The model directory is loaded safely (safetensors weights whose SHA-256 must match the card; no
    pickle is ever loaded), and the card must match the subject's template space and dFC/denoising
    parameters; otherwise an ``InputError`` names the mismatch. A map on another grid (resolution,
    field of view) is resampled to the model's grid, and the result says so (:func:`grid_resampling`).
    ``lesion_files`` take the lesion and its mirror out of the input, as training did. ``map_uri`` and
    ``model_uri`` (BIDS URIs of the map as written in the output dataset and of the model) are recorded
    instead of the paths, so that the record survives moving the folders.
    """
    card = read_card(model_dir)
    if card["ModelType"] not in (CNN_TYPE, PARCEL_TYPE):
        raise InputError(
            f"model type {card['ModelType']!r} is unknown to this strokefc",
            str(model_dir),
            "use a model exported by 'strokefc ... group' of this version",
        )
    if card.get("input", {}).get("samples", "maps") != "maps":
        raise InputError(
            "this model was trained on single-window maps (GroupParams.samples windows); "
            "prediction from a subject's dFC variability map needs a model trained with "
            "GroupParams.samples maps",
            str(model_dir),
            "retrain the group level with GroupParams.samples maps (the default)",
            params=("GroupParams.samples",),
        )
    if card.get("input", {}).get("stat", "dfcsd") != "dfcsd":
        raise InputError(
            f"this model was trained on stat-{card['input']['stat']} maps (GroupParams.map); the "
            "participant level predicts from the dFC variability map (stat-dfcsd)",
            str(model_dir),
            "retrain the group level with GroupParams.map dfcsd (the default) to predict new subjects",
            params=("GroupParams.map",),
        )
    img = load_nifti(str(map_file))
    check_card_compatible(
        card, space=space, dfc_params=shared_parameters(meta), tr=meta.get("RepetitionTime")
    )
    align = bool(card.get("input", {}).get("align_lesion", True))
    grid = card["input"]["grid"]
    masks = [lesion_exclusion(f, grid, lesion_side, align) for f in lesion_files]
    x = apply_grid(img, grid, lesion_side, align, np.logical_or.reduce(masks) if masks else None)
    resampling = grid_resampling(img, grid, x)
    threshold = float(card.get("label", {}).get("severe_threshold", 20))
    cv = card.get("cross_validation", {})
    cnn = card["ModelType"] == CNN_TYPE
    name = (card.get("DeployedModel") or {}).get("model") or (CNN_MODEL if cnn else PRIMARY_MODEL)
    if cnn:
        model, card = load_model(model_dir)
        regression = model.n_classes == 1
        output = predict_score(model, x) if regression else predict_proba(model, x)
    else:
        arrays, card = load_arrays(model_dir)
        regression = card.get("target") == "regression"
        try:
            output = ParcelLinearModel.from_arrays(arrays, str(card.get("target"))).predict(x)
        except ValueError as exc:
            raise InputError(
                f"the parcel model's weights are malformed ({exc})",
                str(model_dir),
                "re-export the model with 'strokefc ... group'",
            ) from None
    if regression:  # GroupParams.target: a score; the class is its threshold
        score = float(np.mean(output))
        decision = {
            "target": "regression",
            "predicted_ul_fma": round(score, 3),
            "prob_severe": None,
            "predicted_class": "severe" if score <= threshold else "mild-to-moderate",
            "decision_threshold": threshold,
            "model_cv_mae": cv.get(name, {}).get("mae"),
        }
    else:
        prob = float(np.mean(output))
        decision = {
            "prob_severe": round(prob, 6),
            "predicted_class": "severe" if prob >= 0.5 else "mild-to-moderate",
            "decision_threshold": 0.5,
        }
    if card.get("conformal"):  # the exported model's conformal set or interval (workflows.conformal)
        decision.update(
            apply_calibration(
                card["conformal"],
                "regression" if regression else "classification",
                float(np.mean(output)),
                UL_FMA_RANGE,
            )
        )
    return {
        "participant_id": f"sub-{subject}",
        **decision,
        "label_definition": f"severe = UL-FMA <= {threshold:g}",
        "model_type": name,
        "model_id": str(card.get("ModelId", ""))[:12],
        "calibrated": bool(card.get("calibrated", False)),
        "model_dir": model_uri or str(Path(model_dir).resolve()),
        "model_cv_balanced_accuracy": cv.get(name, {}).get("balanced_accuracy"),
        "lesion_side": lesion_side,
        "map_file": map_uri or str(map_file),
        **resampling,
    }


def grid_resampling(img: nb.Nifti1Image, grid: dict, x: np.ndarray) -> dict:
    """Whether a map's grid differed from the model's training maps, and how much of the model's mask
    it covers once resampled; a map covering less than :data:`MIN_GRID_COVERAGE` is refused (another
    field of view, or not in the model's space).
    """
    source = np.asarray(grid.get("source_affine", img.affine), float)
    same = tuple(img.shape[:3]) == tuple(grid.get("source_shape", img.shape[:3])) and np.allclose(
        img.affine, source, atol=1e-3
    )
    mask = grid_mask(grid)
    valid = mask & np.isfinite(x[0])  # lesion-excluded voxels (NaN) are not the map's to cover
    covered = float((x[0][valid] != 0).mean()) if valid.any() else 0.0
    zooms = [round(float(z), 3) for z in img.header.get_zooms()[:3]]
    model_zooms = np.abs(np.diag(source)[:3]).round(3).tolist()
    if covered < MIN_GRID_COVERAGE:
        raise InputError(
            f"the map covers {100 * covered:.0f}% of the model's brain mask after resampling "
            f"(at least {100 * MIN_GRID_COVERAGE:.0f}% is needed)",
            "map grid",
            "check that the maps are in the model's template space and cover the whole brain",
        )
    return {
        "resampled": not same,
        "source_voxel_size_mm": zooms[0],
        "model_source_voxel_size_mm": model_zooms[0],
        "grid_coverage": round(covered, 4),
        "resampling": "none: the map is on the model's source grid"
        if same
        else f"map on a {'x'.join(f'{z:g}' for z in zooms)} mm grid of shape {list(img.shape[:3])}, "
        f"resampled (linear) to the model's {grid.get('resolution_mm', '?')} mm input grid; the model "
        f"was trained on {'x'.join(f'{z:g}' for z in model_zooms)} mm maps",
    }
