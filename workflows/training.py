"""Group-level steps (plain functions, no Nipype): inputs on the CNN grid, folds, training, summary, export.

Each step takes paths and a :class:`GroupParams` and writes its files into the working directory it is
given; :func:`workflows.group.init_group_wf` wires the steps into a Nipype workflow whose writer nodes
copy the outputs into ``output_dir/group`` and ``output_dir/model``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nb
import numpy as np
import torch

from workflows import evaluation as ev
from workflows import regression as rg
from workflows.calibration import calibrated
from workflows.cnn import StrokeCNN, count_parameters, fit_predict, model_for, train_model
from workflows.cnn_inputs import (
    align_image,
    apply_grid,
    check_same_grid,
    grid_image,
    grid_mask,
    group_mask,
    lesion_exclusion,
    make_grid,
    subsample_windows,
    template_mask,
)
from workflows.evaluation import BASELINE_DESCRIPTION, baseline_fit_predict, subject_folds
from workflows.explain import (
    atlas_on_grid,
    class_sums,
    held_out_means,
    region_table,
    saliency_samples,
    subject_saliency,
    write_region_table,
)
from workflows.linear_models import (
    CONFOUND_DESCRIPTION,
    CONFOUND_FEATURES,
    PARCEL_DESCRIPTION,
    bootstrap_comparison,
    confound_fit_predict,
    corrected_resampled_ttest,
    parcel_fit_predict,
    parcel_matrix,
)
from workflows.metadata import software_versions
from workflows.model_card import card_sections
from workflows.model_io import json_clean, load_model, save_model
from workflows.params import GroupParams
from workflows.qc import qc_fc
from workflows.seeds import atlas_image, atlas_labels, atlas_record
from workflows.utils.bids import sidecar_path
from workflows.utils.images import load_nifti
from workflows.utils.io import atomic_write_json, write_tsv

LOGGER = logging.getLogger("strokefc.group")

#: Window maps per subject used for saliency with ``samples="windows"``.
SALIENCY_WINDOWS = 4
#: The atlas of the parcel model and of the saliency region table (on MNI152NLin2009cAsym, the maps' space).
PARCEL_ATLAS = "HCPEx"
#: Group outputs of the held-out saliency (see :func:`summarise_saliency`).
SALIENCY_FILES = {
    "all": "desc-heldoutsaliency_map.nii.gz",
    "severe": "desc-heldoutsaliencysevere_map.nii.gz",
    "mild": "desc-heldoutsaliencymild_map.nii.gz",
}
SALIENCY_REGIONS = "saliency_regions.tsv"
#: Subject-level maps of the control models (participant-level ``stat-<name>``).
CONTROL_MAPS = ("fc", "dfcmean")
#: The models of the group level, compared on the same folds; ``parcel`` is the primary analysis.
MODELS = {
    "parcel": "dFC-SD parcel model (primary): " + PARCEL_DESCRIPTION,
    "cnn": "3D CNN on the dFC-SD maps (location-aware head; see workflows/cnn.py)",
    "baseline": BASELINE_DESCRIPTION,
    "parcel_fc": "control: the parcel model on static-FC maps (is dFC-SD more than static FC?)",
    "parcel_dfcmean": "control: the parcel model on mean-dFC maps",
    "confounds": "control: " + CONFOUND_DESCRIPTION,
}
#: The model every other one is compared with (paired bootstrap and corrected t-test).
PRIMARY_MODEL = "parcel"
#: Columns of ``group/cohort.tsv``.
COHORT_COLUMNS = (
    "participant_id",
    "session",
    "ul_fma",
    "class",
    "lesion_side",
    "included",
    "reason",
    *CONFOUND_FEATURES,
)


class PreparedInputs(NamedTuple):
    """Files written by :func:`prepare_inputs`."""

    data_file: str  # npz: samples x, labels y, subject groups, subject maps, sides
    grid_file: str  # JSON description of the CNN grid
    cohort_file: str  # cohort.tsv
    class_maps: list[str]  # mean maps of the severe and mild classes and their difference


class CVSummaryFiles(NamedTuple):
    """Files written by :func:`summarise_cv`."""

    summary_file: str
    predictions_file: str
    curves_file: str


class FoldFiles(NamedTuple):
    """Files written by :func:`run_fold`."""

    out_file: str  # predictions, metrics and training curve (JSON)
    saliency_file: str  # per-class sums of the CNN's held-out saliency over the fold's test units (npz)


class ExplainFiles(NamedTuple):
    """Files written by :func:`summarise_saliency`."""

    saliency_file: str
    regions_file: str
    class_saliency_files: list[str]  # the class maps, and every JSON sidecar


def is_severe(score: float, threshold: float) -> bool:
    """The label rule of the mission: UL-FMA <= threshold is severe impairment."""
    return float(score) <= float(threshold)


def _save_nifti(data: np.ndarray, grid: dict, path: Path, description: str = "", **meta: Any) -> Path:
    """A group image on the CNN grid, with a JSON sidecar saying what it is, on which grid and how aligned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nb.save(grid_image(data, grid), str(path))
    shape = [int(n) for n in grid["shape"]]
    zooms = np.abs(np.diag(np.asarray(grid["affine"], dtype=float))[:3]).round(3).tolist()
    atomic_write_json(
        sidecar_path(path),
        json_clean(
            {
                "Description": description,
                "Grid": {
                    "Shape": shape,
                    "VoxelSize_mm": zooms,
                    "Affine": np.asarray(grid["affine"]).tolist(),
                },
                "LesionAligned": meta.pop("aligned", None),
                **meta,
            }
        ),
    )
    return path


# --------------------------------------------------------------------------------------------- steps
def _exclusion(lesion_files: list[str], grid: dict, side: str, align: bool) -> np.ndarray | None:
    """The union over a subject's lesion masks (one per session) of :func:`lesion_exclusion`."""
    masks = [lesion_exclusion(f, grid, side, align) for f in lesion_files]
    return np.logical_or.reduce(masks) if masks else None


def prepare_inputs(subjects: list[dict], params: GroupParams, work_dir: str | Path) -> PreparedInputs:
    """Lesion-align the maps, build the CNN grid, put every sample on it; write cohort and class maps.

    ``subjects`` are dicts with ``label, map_file, windows_file, lesion_side, score`` and, for the
    control models, ``fc_file``, ``dfcmean_file`` and ``qc`` (quality measures, see
    :data:`workflows.linear_models.CONFOUND_FEATURES`). ``lesion_files`` (the participant level's
    lesion masks) take the lesion and its mirror out of every model input (NaN). The atlas parcels of
    the primary model are put on the same grid. Everything is written into ``work_dir``; the group
    workflow's writer node copies the outputs into the dataset.
    """
    work_dir = Path(work_dir)
    align = params.align_lesion
    maps_imgs = [load_nifti(s["map_file"]) for s in subjects]
    check_same_grid(maps_imgs)
    if params.group_mask == "template":
        mask = template_mask(maps_imgs[0])
    else:  # "maps": voxels present in most subjects' (aligned) maps, the first version's mask
        aligned = [align_image(img, s["lesion_side"], align) for img, s in zip(maps_imgs, subjects)]
        mask = group_mask(aligned, params.group_mask_min_fraction)
        del aligned
    grid = make_grid(maps_imgs[0], mask, params.cnn_resolution)
    del maps_imgs
    first_sidecar = sidecar_path(subjects[0]["map_file"])
    space = json.loads(first_sidecar.read_text()).get("Space") if first_sidecar.is_file() else None
    excluded = [_exclusion(s.get("lesion_files") or [], grid, s["lesion_side"], align) for s in subjects]
    maps = np.concatenate(
        [apply_grid(s["map_file"], grid, s["lesion_side"], align, ex) for s, ex in zip(subjects, excluded)]
    )
    y_subject = np.array([int(is_severe(s["score"], params.severe_threshold)) for s in subjects])
    labels = np.array([s["label"] for s in subjects])
    subject_of = {s["label"]: s.get("subject") or s["label"] for s in subjects}
    if params.samples == "windows":
        xs: list[np.ndarray] = []
        sample_groups: list[str] = []
        for s, ex in zip(subjects, excluded):
            img = load_nifti(s["windows_file"])
            n_win = img.shape[3] if img.ndim == 4 else 1
            keep = subsample_windows(n_win, params.max_windows)
            if img.ndim == 4:  # read only the kept volumes
                img = nb.Nifti1Image(
                    np.stack([np.asarray(img.dataobj[..., int(i)], dtype=np.float32) for i in keep], axis=-1),
                    img.affine,
                )
            xs.append(apply_grid(img, grid, s["lesion_side"], align, ex))
            sample_groups.extend([s["label"]] * len(xs[-1]))
        x, groups = np.concatenate(xs), np.array(sample_groups)
        y = np.array([y_subject[labels == g][0] for g in groups])
    else:
        x, y, groups = maps, y_subject, labels
    controls = {}
    for stat in CONTROL_MAPS:  # static FC and mean dFC, when every subject has them
        if all(s.get(f"{stat}_file") for s in subjects):
            controls[stat] = np.concatenate(
                [
                    apply_grid(s[f"{stat}_file"], grid, s["lesion_side"], align, ex)
                    for s, ex in zip(subjects, excluded)
                ]
            )
    parcels = (atlas_on_grid(atlas_image(PARCEL_ATLAS), grid) * grid_mask(grid)).astype(np.int32)
    confounds = np.array(
        [[float(s.get("qc", {}).get(k, np.nan)) for k in CONFOUND_FEATURES] for s in subjects], dtype=float
    )
    data_file = work_dir / "group_inputs.npz"
    arrays: dict[str, np.ndarray] = {
        "x": x,
        "y": y,
        "groups": groups,
        "split_groups": np.array([subject_of[str(g)] for g in groups]),
        "subjects": labels,
        "y_subject": y_subject,
        "scores": np.array([float(s["score"]) for s in subjects]),  # UL-FMA per subject (regression)
        "maps": maps,
        "sides": np.array([s["lesion_side"] for s in subjects]),
        "parcels": parcels,
        "confounds": confounds,
        **{f"control_{k}": v for k, v in controls.items()},
    }
    np.savez(data_file, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    grid_file = atomic_write_json(work_dir / "grid.json", grid)

    severe, mild = maps[y_subject == 1], maps[y_subject == 0]
    shape = tuple(grid["shape"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # voxels excluded in every subject of a class
        mean_severe = np.nan_to_num(np.nanmean(severe, 0)) if len(severe) else np.zeros(shape)
        mean_mild = np.nan_to_num(np.nanmean(mild, 0)) if len(mild) else np.zeros(shape)
    class_maps = [
        _save_nifti(
            mean,
            grid,
            work_dir / f"desc-{name}_dfcsd.nii.gz",
            text,
            aligned=align,
            Space=space,
            Units="Fisher z",
        )
        for name, mean, text in (
            ("severe", mean_severe, "mean dFC SD of the severe class"),
            ("mild", mean_mild, "mean dFC SD of the mild-to-moderate class"),
            ("difference", mean_severe - mean_mild, "severe minus mild-to-moderate mean dFC SD"),
        )
    ]
    cohort = [
        {
            "participant_id": f"sub-{s.get('subject') or s['label']}",
            "session": f"ses-{s['session']}" if s.get("session") else "n/a",
            "ul_fma": float(s["score"]),
            "class": "severe" if t else "mild-to-moderate",
            "lesion_side": s["lesion_side"],
            "included": True,
            "reason": "",
            **{k: float(v) for k, v in zip(CONFOUND_FEATURES, row)},
        }
        for s, t, row in zip(subjects, y_subject, confounds)
    ]
    cohort_file = write_tsv(work_dir / "cohort.tsv", cohort, list(COHORT_COLUMNS))
    LOGGER.info(
        "group inputs: %d subjects, %d samples on a %s grid (%d mask voxels)",
        len(subjects),
        len(x),
        "x".join(map(str, shape)),
        grid["n_mask_voxels"],
    )
    # the sidecars are listed too, so Nipype keeps them (it prunes unlisted files from node folders)
    files = [str(p) for p in class_maps] + [str(sidecar_path(p)) for p in class_maps]
    return PreparedInputs(str(data_file), str(grid_file), str(cohort_file), files)


def cnn_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int,
    params: GroupParams,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Train the CNN on one training fold and predict the test samples (curve rows returned too).

    ``explain`` sees the fold's model and its test samples only (:func:`workflows.cnn.fit_predict`).
    """
    train = replace(params.train, seed=params.random_seed + seed)
    return fit_predict(x_train, y_train, groups_train, x_test, train, explain=explain)


def baseline_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int,
    params: GroupParams,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The linear baseline on one training fold (see :func:`workflows.evaluation.baseline_fit_predict`)."""
    return baseline_fit_predict(x_train, y_train, groups_train, x_test, seed=params.random_seed + seed)


def plan_folds(subjects: list[dict], params: GroupParams) -> list[dict]:
    """Subject-level folds, fixed when the workflow is built: ``{repeat, fold, test: [unit labels]}``.

    Every sample of a subject (each of its sessions, each window) follows the subject, so a subject is
    never on both sides of a fold.
    """
    labels = np.array([s["label"] for s in subjects])
    split = np.array([s.get("subject") or s["label"] for s in subjects])
    y = np.array([int(is_severe(s["score"], params.severe_threshold)) for s in subjects])
    folds = subject_folds(y, split, params.cv.cv_folds, params.cv.cv_repeats, params.random_seed)
    return [
        {"repeat": int(f["repeat"]), "fold": int(f["fold"]), "test": labels[f["test"]].tolist()}
        for f in folds
    ]


def _fold_indices(groups: np.ndarray, fold: dict) -> dict:
    test = np.isin(groups, fold["test"])
    return {
        "repeat": fold["repeat"],
        "fold": fold["fold"],
        "train": np.flatnonzero(~test),
        "test": np.flatnonzero(test),
    }


def _by_index(data: np.ndarray, fit_predict: ev.FitPredict) -> ev.FitPredict:
    """A model that receives sample indices and looks its inputs up in ``data``."""

    def fit(
        idx_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray, idx_test: np.ndarray, seed: int = 0
    ) -> tuple[np.ndarray, list]:
        return fit_predict(data[idx_train], y_train, g_train, data[idx_test], seed=seed)

    return fit


def fold_models(
    data: Mapping[str, np.ndarray],
    params: GroupParams,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> dict[str, ev.FitPredict]:
    """Every model compared on the same folds, as functions of sample indices (see :data:`MODELS`).

    ``cnn`` and ``baseline`` (voxel PCA-logistic) see the samples; ``parcel`` (the primary model) their
    atlas-parcel means; the controls see each sample's subject-level static-FC or mean-dFC map, or its
    quality measures only. ``explain`` is handed to the CNN (:func:`cnn_fit_predict`, or the regression
    CNN of :func:`workflows.regression.model_functions`).
    """
    x, groups = data["x"], data["groups"]
    operator, _ = parcel_matrix(data["parcels"])
    if params.target == "regression":  # the same inputs, regression models (workflows.regression)
        fits = rg.model_functions(operator, params.train, params.random_seed, explain=explain)
    else:
        fits = {
            "cnn": partial(cnn_fit_predict, params=params, explain=explain),
            "baseline": partial(baseline_predict, params=params),
            "parcel": partial(parcel_fit_predict, operator=operator),
            "confounds": confound_fit_predict,
        }
    row = {str(s): i for i, s in enumerate(data["subjects"])}
    subject_of_sample = np.array([row[str(g)] for g in groups])
    models: dict[str, ev.FitPredict] = {
        "cnn": _by_index(x, fits["cnn"]),
        "baseline": _by_index(x, fits["baseline"]),
        "parcel": _by_index(x, fits["parcel"]),
    }
    for stat in CONTROL_MAPS:
        if f"control_{stat}" in data:
            models[f"parcel_{stat}"] = _by_index(data[f"control_{stat}"][subject_of_sample], fits["parcel"])
    models["confounds"] = _by_index(data["confounds"][subject_of_sample], fits["confounds"])
    if "mean" in fits:  # the training-mean reference (its input is ignored)
        models["mean"] = _by_index(data["confounds"][subject_of_sample], fits["mean"])
    if params.target != "regression":  # the CNN is left out: recalibrating it would train it 4x per fold
        models = {
            name: model if name == "cnn" else calibrated(model, params.calibration)
            for name, model in models.items()
        }
    return models


def calibration_text(params: GroupParams) -> str | None:
    """What ``cv_summary.json`` and the report say about the probabilities' calibration."""
    if params.target == "regression":
        return None
    if params.calibration == "none":
        return (
            "none: probabilities of the class-weighted models are not recalibrated (the Brier score and "
            "calibration curves describe them as they are)"
        )
    method = "Platt scaling" if params.calibration == "sigmoid" else "isotonic regression"
    return (
        f"{params.calibration}: the probabilities of every model but the CNN were recalibrated by {method} "
        "fit inside each training fold on out-of-fold predictions of the training subjects "
        "(subject-level inner splits); the CNN's are not recalibrated"
    )


def _targets(data: Mapping[str, np.ndarray], params: GroupParams) -> np.ndarray:
    """What the models learn for each sample: the class (1 = severe), or the UL-FMA score."""
    if params.target != "regression":
        return data["y"]
    row = {str(s): i for i, s in enumerate(data["subjects"])}
    return np.array([data["scores"][row[str(g)]] for g in data["groups"]], dtype=float)


def _split_groups(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """The subject of each sample (inputs written before sessions had one: the sample's unit)."""
    return data["split_groups"] if "split_groups" in data else data["groups"]


def held_out_explainer(
    data: Mapping[str, np.ndarray], test: np.ndarray, params: GroupParams, out: dict[str, np.ndarray]
) -> Callable[[StrokeCNN, np.ndarray], None]:
    """``explain(model, x_test)`` for one fold: signed saliency of the fold's CNN on its test units.

    ``test`` are the fold's test sample indices (the order of ``x_test``). Saliency is averaged over
    each unit's samples (at most :data:`SALIENCY_WINDOWS` window maps), brought to the lesion-aligned
    orientation when the maps were not aligned, and summed per class into ``out``
    (:func:`workflows.explain.class_sums`).
    """
    groups = np.asarray(data["groups"])[test]
    row = {str(s): i for i, s in enumerate(data["subjects"])}

    def explain(model: StrokeCNN, x_test: np.ndarray) -> None:
        if len(x_test) != len(groups):
            raise RuntimeError("held-out saliency: the test samples are not the fold's test units")
        keep = saliency_samples(groups, SALIENCY_WINDOWS if params.samples == "windows" else len(groups))
        units, maps = subject_saliency(model, x_test[keep], groups[keep])
        rows = np.array([row[str(u)] for u in units])
        if not params.align_lesion:  # bring right-lesion saliency to the left (grid symmetric in x)
            right = np.asarray(data["sides"])[rows] == "R"
            maps[right] = maps[right][:, ::-1]
        out.update(class_sums(maps, np.asarray(data["y_subject"])[rows]), units=units.astype(str))

    return explain


def run_fold(data_file: str | Path, fold: dict, params: GroupParams, work_dir: str | Path) -> FoldFiles:
    """Fit every model (:func:`fold_models`) on one fold's training subjects, predict its test subjects.

    Writes a JSON file with the fold's predictions, metrics and training curve, and an npz with the
    fold CNN's signed saliency on the fold's test units (held out), summed per class.
    """
    torch.set_num_threads(params.threads)  # folds run in parallel as separate Nipype nodes
    data = np.load(data_file)
    y, groups = _targets(data, params), data["groups"]
    folds = [_fold_indices(groups, fold)]
    scoring: dict[str, Any] = {}
    if params.target == "regression":
        scoring = {
            "metrics": partial(rg.regression_metrics, threshold=params.severe_threshold),
            "value": "predicted_score",
        }
    saliency: dict[str, np.ndarray] = {}
    explain = held_out_explainer(data, folds[0]["test"], params, saliency)
    # every model sees the same folds; each takes its own inputs by sample index
    predictions, metrics, curves = ev.cross_validate(
        np.arange(len(y)),
        y,
        groups,
        folds,
        fold_models(data, params, explain),
        split_groups=_split_groups(data),
        **scoring,
    )
    stem = Path(work_dir) / f"fold_r{fold['repeat']}_f{fold['fold']}"
    out = atomic_write_json(
        stem.with_suffix(".json"),
        json_clean({"predictions": predictions, "metrics": metrics, "curves": curves}),
    )
    saliency_file = stem.parent / f"{stem.name}_saliency.npz"
    np.savez_compressed(saliency_file, **saliency)  # type: ignore[arg-type]
    return FoldFiles(str(out), str(saliency_file))


def run_permutation(data_file: str | Path, index: int, params: GroupParams) -> dict[str, float]:
    """One draw of the label-permutation null of every model's mean balanced accuracy.

    Labels are permuted between units, then every model of :func:`fold_models` is cross-validated on
    the same subject-level folds, with as many repeats as the observed score (``cv_repeats``). The CNN
    only with ``params.cv.permute_cnn``: its draws cost as many trainings as the observed CV.
    """
    torch.set_num_threads(params.threads)
    data = np.load(data_file)
    models = fold_models(data, params)
    if not params.cv.permute_cnn:
        models.pop("cnn", None)
    return ev.permutation_nulls(
        np.arange(len(data["y"])),
        data["y"],
        data["groups"],
        models,
        n_folds=params.cv.cv_folds,
        n_repeats=params.cv.cv_repeats,
        seed=params.random_seed,
        index=int(index),
        split_groups=_split_groups(data),
    )


def summarise_cv(
    fold_files: list[str],
    null: list[dict[str, float]],
    data_file: str | Path,
    params: GroupParams,
    work_dir: str | Path,
) -> CVSummaryFiles:
    """Gather the folds into cv_predictions.tsv, training_curves.tsv and cv_summary.json (in ``work_dir``)."""
    work_dir = Path(work_dir)
    predictions, fold_metrics, curves = [], [], []
    for path in fold_files:
        part = json.loads(Path(path).read_text())
        predictions += part["predictions"]
        fold_metrics += part["metrics"]
        curves += part["curves"]

    def key(r: dict[str, Any]) -> tuple[int, int]:
        return (r["repeat"], r["fold"])

    predictions.sort(key=lambda r: (*key(r), r["model"], r["participant_id"]))
    curves.sort(key=lambda r: (*key(r), r["epoch"]))
    fold_metrics.sort(key=lambda r: (*key(r), r["model"]))
    for row in predictions:
        row["participant_id"] = f"sub-{row['participant_id']}"
    regression = params.target == "regression"
    predictions_file = write_tsv(
        work_dir / "cv_predictions.tsv",
        predictions,
        [
            "participant_id",
            "repeat",
            "fold",
            "model",
            "y_true",
            "predicted_score" if regression else "prob_severe",
        ],
    )
    curves_file = write_tsv(
        work_dir / "training_curves.tsv", curves, ["repeat", "fold", "epoch", "train_loss", "val_loss"]
    )
    if regression:
        pieces = rg.summarise_regression(
            predictions, fold_metrics, params.severe_threshold, seed=params.random_seed
        )
        models, bootstrap = pieces["models"], pieces["bootstrap"]
        descriptions, compare = rg.REGRESSION_MODELS, rg.COMPARE_METRIC
    else:
        models = ev.summarise_models(fold_metrics)
        # subject-bootstrap intervals of the pooled out-of-fold scores and paired differences
        bootstrap = bootstrap_comparison(predictions, PRIMARY_MODEL, seed=params.random_seed)
        descriptions, compare = MODELS, "balanced_accuracy"
    permutation = permutation_summary(models, null, params) if null and not regression else None
    data = np.load(data_file)
    y_subject = data["y_subject"]
    n_folds = int(max(m["fold"] for m in fold_metrics) + 1)
    summary = {
        "target": params.target,
        "models": models,
        "model_descriptions": {name: descriptions[name] for name in models if name in descriptions},
        "primary_model": PRIMARY_MODEL,
        "bootstrap": bootstrap,
        "quality_by_class": quality_by_class(data["confounds"], y_subject),
        "qc_fc": qc_fc(data["maps"], data["confounds"][:, CONFOUND_FEATURES.index("mean_fd_mm")]),
        "paired_tests": _paired_tests(
            fold_metrics, PRIMARY_MODEL, test_fraction=1.0 / max(1, n_folds - 1), metric=compare
        ),
        "fold_metrics": fold_metrics,
        "n_subjects": len(y_subject),
        "n_samples": len(data["y"]),
        "class_counts": {
            "severe": int((y_subject == 1).sum()),
            "mild-to-moderate": int((y_subject == 0).sum()),
        },
        "cv": {
            "folds": n_folds,
            "repeats": params.cv.cv_repeats,
            "grouped_by": "subject",
            "splitter": "sklearn StratifiedGroupKFold by subject (shuffled, seed = random_seed + repeat)",
            "interval": "models.*.ci95: 95% t-interval over folds x repeats (optimistic: folds share "
            "subjects); bootstrap.*.ci95: subject-level bootstrap of the pooled out-of-fold predictions",
        },
        "samples": params.samples,
        "permutation": permutation,
        "calibration": calibration_text(params),
        "baseline": descriptions["baseline"] if regression else ev.BASELINE_DESCRIPTION,
        "cnn_parameters": count_parameters(
            model_for(data["x"].shape[1:], params.train, n_classes=1 if regression else 2)
        ),
        "settings": params.to_dict(),
    }
    summary_file = atomic_write_json(work_dir / "cv_summary.json", json_clean(summary))
    return CVSummaryFiles(str(summary_file), str(predictions_file), str(curves_file))


def permutation_summary(
    models: dict[str, dict], null: list[dict[str, float]], params: GroupParams
) -> dict[str, Any]:
    """Permutation p-value of every model's mean balanced accuracy; the primary model's at the top level."""
    per_model = {}
    for name in models:
        draws = [float(d[name]) for d in null if name in d]
        if not draws:
            continue
        observed = models[name]["balanced_accuracy"]["mean"]
        per_model[name] = {
            "p_value": ev.permutation_p_value(observed, draws),
            "null_balanced_accuracy": draws,
            "observed_balanced_accuracy": observed,
        }
    primary = PRIMARY_MODEL if PRIMARY_MODEL in per_model else next(iter(per_model), None)
    return {
        "n": len(null),
        "repeats": params.cv.cv_repeats,
        "folds": params.cv.cv_folds,
        "model": primary,
        **(per_model[primary] if primary else {}),
        "models": per_model,
        "scheme": "labels permuted between units; every model cross-validated on the same subject-level "
        f"folds with {params.cv.cv_repeats} repeat(s) of k-fold per draw, as the observed score"
        + ("" if params.cv.permute_cnn else "; the CNN is not permuted (--permute-cnn)"),
    }


def quality_by_class(confounds: np.ndarray, y_subject: np.ndarray) -> dict[str, dict[str, float]]:
    """Median of each quality measure by class and a Mann-Whitney U test: does motion differ by class?"""
    from scipy.stats import mannwhitneyu

    out = {}
    for j, name in enumerate(CONFOUND_FEATURES):
        severe, mild = confounds[y_subject == 1, j], confounds[y_subject == 0, j]
        severe, mild = severe[np.isfinite(severe)], mild[np.isfinite(mild)]
        if len(severe) < 2 or len(mild) < 2:
            continue
        out[name] = {
            "median_severe": float(np.median(severe)),
            "median_mild": float(np.median(mild)),
            "p_mann_whitney": float(mannwhitneyu(severe, mild).pvalue),
        }
    return out


def _paired_tests(
    fold_metrics: list[dict], reference: str, test_fraction: float, metric: str = "balanced_accuracy"
) -> dict[str, dict]:
    """Nadeau & Bengio (2003) corrected t-test of each model's fold-wise ``metric`` minus the reference's."""
    by_fold: dict[tuple[int, int], dict[str, float]] = {}
    for m in fold_metrics:
        by_fold.setdefault((int(m["repeat"]), int(m["fold"])), {})[m["model"]] = m[metric]
    names = sorted({m["model"] for m in fold_metrics} - {reference})
    return {
        name: corrected_resampled_ttest(
            [f[name] - f[reference] for f in by_fold.values() if name in f and reference in f], test_fraction
        )
        for name in names
    }


def train_final(data_file: str | Path, params: GroupParams, work_dir: str | Path) -> str:
    """Train the final model on every labelled subject; saved (safetensors) in ``work_dir/final``."""
    torch.set_num_threads(params.threads)  # runs alongside the cross-validation folds
    data = np.load(data_file)
    train = replace(params.train, seed=params.random_seed)
    regression = params.target == "regression"
    model, curve = train_model(
        data["x"], _targets(data, params), _split_groups(data), train, regression=regression
    )
    card = {
        "input": {},
        "training": {**train.to_dict(), "final_epochs_run": len(curve), "n_samples": len(data["y"])},
    }
    return str(save_model(model, card, Path(work_dir) / "final"))


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
        permutation_p_value=((summary.get("permutation") or {}).get("models", {}).get("cnn") or {}).get(
            "p_value"
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
        + " from lesion-aligned ipsilesional-M1 dFC variability (SD) maps",
        "target": params.target,
        "strokefc_version": software_versions().get("strokefc", "unknown"),
        "software": software_versions(),
        "input": {
            "grid": grid,
            "space": (shared_params or {}).get("Space"),
            "align_lesion": params.align_lesion,
            "resolution_mm": params.cnn_resolution,
            "map": "stat-dfcsd (subject-level dFC SD map)"
            if params.samples == "maps"
            else "stat-windows (window maps; subject prediction = mean over windows)",
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
        "dfc_parameters": shared_params or {},
        "training": {
            **partial_card.get("training", {}),
            "n_subjects": summary["n_subjects"],
            "class_counts": summary["class_counts"],
        },
        "cross_validation": cv,
        "baseline": BASELINE_DESCRIPTION,
        **card_sections(
            cohort, {"parcels": atlas_record(PARCEL_ATLAS), "saliency_regions": atlas_record(PARCEL_ATLAS)}
        ),
    }
    return str(save_model(model, card, model_dir))


def summarise_saliency(
    saliency_files: list[str],
    data_file: str | Path,
    grid_file: str | Path,
    params: GroupParams,
    work_dir: str | Path,
    space: str | None = None,
) -> ExplainFiles:
    """Held-out saliency maps (all subjects, each class) and the region table, from the folds' sums.

    Each fold's CNN explained only its own test units (:func:`held_out_explainer`); the maps are the
    mean over subjects (and over repeats) of the signed integrated gradients, lesion-aligned, on the
    CNN grid. Regions: the HCPEx parcels (the parcel model's, already on the grid).
    """
    work_dir = Path(work_dir)
    grid = json.loads(Path(grid_file).read_text())
    parts = []
    for path in saliency_files:
        with np.load(path) as part:
            if "sum_severe" in part:
                parts.append({k: part[k] for k in ("sum_severe", "sum_mild", "n_severe", "n_mild")})
    means = held_out_means(parts)
    n_units = sum(int(p["n_severe"]) + int(p["n_mild"]) for p in parts)
    regression = params.target == "regression"
    output = (
        "minus the predicted UL-FMA (standardised; positive pushes toward a lower score, i.e. severe)"
        if regression
        else "the severe-vs-mild log-odds (positive pushes toward severe)"
    )
    text = (
        f"signed integrated gradients of {output}, each cross-validation fold's CNN on its own test "
        "subjects only, averaged per subject and then over subjects{}"
    )
    meta = {
        "aligned": True,
        "Space": space,
        "Units": "standardised UL-FMA per voxel" if regression else "log-odds per voxel",
        "HeldOut": True,
        "Folds": len(parts),
        "Repeats": params.cv.cv_repeats,
        "SubjectMapsAveraged": n_units,
    }
    saved = {
        cls: _save_nifti(
            mean,
            grid,
            work_dir / SALIENCY_FILES[cls],
            text.format("" if cls == "all" else f" of the {cls} class"),
            **meta,
        )
        for cls, mean in means.items()
    }
    data = np.load(data_file)
    names = {value: name for name, value in atlas_labels(PARCEL_ATLAS).items()}
    rows = region_table(means, grid, data["parcels"], names)
    table, table_sidecar = write_region_table(rows, work_dir / SALIENCY_REGIONS, PARCEL_ATLAS)
    class_maps = [str(p) for cls, p in saved.items() if cls != "all"]
    sidecars = [str(sidecar_path(p)) for p in saved.values()] + [str(table_sidecar)]
    return ExplainFiles(str(saved["all"]), str(table), class_maps + sidecars)
