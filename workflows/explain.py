"""Explaining the CNN on held-out subjects: signed integrated gradients and a ranked atlas-region table.

Each cross-validation fold's CNN explains the *test* subjects of that fold only (out-of-fold
saliency): the model never explains a subject it was trained on. Saliency is the signed integrated
gradient (captum) of the severe-vs-mild log-odds (severe logit minus mild logit; with the UL-FMA
regression head, minus the standardised predicted score) with respect to the input map, from a
baseline equal to the training mean map (the model's normaliser mean, an "average patient"):
positive voxels push the prediction toward severe, negative ones toward mild-to-moderate, and a
sample's attributions sum to its log-odds minus the baseline's. Saliency is averaged over a
subject's samples (windows), then over subjects (and within each class). Maps are lesion-aligned:
world x < 0 is ipsilesional (right-lesion subjects were mirrored), so region sides are given relative
to the lesion. Regions come from the HCPEx atlas, which is on MNI152NLin2009cAsym, the maps' space.

In the group workflow each fold's CNN explains its test units through :func:`held_out_explainer`, and
:func:`summarise_saliency` turns the folds' class sums into the group's held-out saliency maps and
region table.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nb
import numpy as np
import torch
from captum.attr import IntegratedGradients
from nilearn.image import resample_img

from workflows.cnn import StrokeCNN
from workflows.columns import tsv_sidecar
from workflows.grid import grid_image, grid_mask
from workflows.model_io import json_clean
from workflows.models import PARCEL_ATLAS
from workflows.params import GroupParams
from workflows.seeds import atlas_labels, atlas_record
from workflows.utils.bids import sidecar_path
from workflows.utils.io import atomic_write_json, write_tsv

LOGGER = logging.getLogger("strokefc.group")

#: Window maps per subject used for saliency with ``samples="windows"``.
SALIENCY_WINDOWS = 4
#: Group outputs of the held-out saliency (see :func:`summarise_saliency`).
SALIENCY_FILES = {
    "all": "desc-heldoutsaliency_map.nii.gz",
    "severe": "desc-heldoutsaliencysevere_map.nii.gz",
    "mild": "desc-heldoutsaliencymild_map.nii.gz",
}
SALIENCY_REGIONS = "saliency_regions.tsv"
#: Fraction of a parcel's grid voxels that must lie on each side of x = 0 for it to count as midline.
MIDLINE_FRACTION = 0.2
#: Columns of the region table (described in :data:`workflows.columns.COLUMNS`).
REGION_COLUMNS = (
    "region",
    "side",
    "class_difference",
    "mean_saliency_severe",
    "mean_saliency_mild",
    "mean_saliency",
    "n_voxels",
)


def _severe_log_odds(model: StrokeCNN) -> Any:
    """The model as a function of its input returning, per sample, what pushes toward severe.

    Classification: the severe-minus-mild logit (log-odds). Regression (one output): minus the
    standardised predicted UL-FMA (a lower score is more severe), so the sign convention is the same.
    """

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out[:, 1] - out[:, 0] if model.n_classes > 1 else -out[:, 0]

    return forward


def integrated_gradients(
    model: StrokeCNN, x: np.ndarray, n_steps: int = 16, batch_size: int = 4
) -> np.ndarray:
    """Signed integrated gradients of the severe log-odds for each sample (n, X, Y, Z) -> (n, X, Y, Z).

    Excluded voxels (NaN: a lesion or its mirror) are set to the baseline and get no attribution.
    """
    model.eval()
    ig = IntegratedGradients(_severe_log_odds(model))
    baseline = model.in_mean.detach()[None]
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
        xb = torch.where(torch.isnan(xb), baseline, xb)
        attr = ig.attribute(
            xb, baselines=baseline.expand_as(xb), n_steps=n_steps, internal_batch_size=max(n_steps, 8)
        )
        out.append(attr.detach().numpy())
    return np.concatenate(out).astype(np.float32)


def subject_saliency(
    model: StrokeCNN, x: np.ndarray, groups: np.ndarray, n_steps: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Saliency averaged over each subject's samples; returns (subjects, maps (n_subjects, X, Y, Z))."""
    sal = integrated_gradients(model, x, n_steps=n_steps)
    subjects = np.unique(groups)
    return subjects, np.stack([sal[groups == s].mean(0) for s in subjects])


def saliency_samples(groups: np.ndarray, per_subject: int) -> np.ndarray:
    """Indices of at most ``per_subject`` evenly spaced samples of each subject (windows are near copies)."""
    groups = np.asarray(groups)
    keep = []
    for s in np.unique(groups):
        idx = np.flatnonzero(groups == s)
        keep.append(idx[np.linspace(0, len(idx) - 1, min(per_subject, len(idx))).round().astype(int)])
    return np.unique(np.concatenate(keep)) if keep else np.zeros(0, int)


def class_sums(maps: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class sums and counts of subject saliency maps (one fold's share of the held-out average)."""
    labels = np.asarray(labels).astype(int)
    return {
        "sum_severe": maps[labels == 1].sum(0, dtype=np.float64).astype(np.float32),
        "sum_mild": maps[labels == 0].sum(0, dtype=np.float64).astype(np.float32),
        "n_severe": np.array(int((labels == 1).sum())),
        "n_mild": np.array(int((labels == 0).sum())),
    }


def held_out_means(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean saliency over all subjects and within each class from the folds' :func:`class_sums`.

    Every subject is tested once per repeat, so the pooled mean over (subject, repeat) pairs equals the
    mean over subjects of each subject's mean over repeats.
    """
    severe = sum(np.asarray(p["sum_severe"], np.float64) for p in parts)
    mild = sum(np.asarray(p["sum_mild"], np.float64) for p in parts)
    n_severe = int(sum(int(p["n_severe"]) for p in parts))
    n_mild = int(sum(int(p["n_mild"]) for p in parts))
    if n_severe + n_mild == 0:
        raise ValueError("no held-out saliency to average")
    out = {"all": np.asarray((severe + mild) / (n_severe + n_mild), np.float32)}
    if n_severe:
        out["severe"] = np.asarray(severe / n_severe, np.float32)
    if n_mild:
        out["mild"] = np.asarray(mild / n_mild, np.float32)
    return out


def atlas_on_grid(atlas_img: nb.Nifti1Image, grid: dict) -> np.ndarray:
    """Atlas labels resampled (nearest neighbour) onto the CNN grid."""

    out = resample_img(
        atlas_img,
        target_affine=np.asarray(grid["affine"]),
        target_shape=tuple(grid["shape"]),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.asarray(out.dataobj).astype(np.int32)


def region_side(name: str, x_mm: np.ndarray) -> tuple[str, str]:
    """Region name without its hemisphere suffix, and its side relative to the lesion (left = lesion).

    A parcel with at least :data:`MIDLINE_FRACTION` of its voxels on each side of x = 0 (``x_mm``: the
    world x of its voxels), or without a hemisphere in its name, is "bilateral (midline)": on a coarse
    grid a medial parcel's voxels straddle the midline and its mean mixes both hemispheres.
    """
    x_mm = np.asarray(x_mm, dtype=float)
    left, right = float(np.mean(x_mm < 0)), float(np.mean(x_mm > 0))
    base = name[:-2] if name.endswith(("_L", "_R")) else name
    if min(left, right) >= MIDLINE_FRACTION or not name.endswith(("_L", "_R")):
        return base, "bilateral (midline)"
    return base, "ipsilesional" if name.endswith("_L") else "contralesional"


def region_table(
    saliency: dict[str, np.ndarray],
    grid: dict,
    labels: np.ndarray,
    names: dict[int, str],
    top: int = 20,
    min_voxels: int = 2,
) -> list[dict]:
    """Atlas regions ranked by how differently they push the two classes (see :data:`REGION_COLUMNS`).

    ``saliency`` holds the held-out means (:func:`held_out_means`: ``all`` and, when present,
    ``severe`` and ``mild``); the rank is by the absolute severe-minus-mild difference of the mean
    signed saliency over the parcel's voxels inside the CNN mask (by the absolute mean over all
    subjects when a class is missing). With the training mean as baseline, the all-subject mean of a
    region the model reads linearly is near zero, which is why it does not rank. ``labels`` are
    atlas labels on the CNN grid (:func:`atlas_on_grid`). Regions with fewer than ``min_voxels``
    voxels on the grid are left out (a single voxel's mean is noise).
    """
    mask = grid_mask(grid) & (np.asarray(labels) > 0)
    affine = np.asarray(grid["affine"])
    rows: list[dict[str, Any]] = []
    for label in np.unique(labels[mask]):
        voxels = mask & (labels == label)
        n = int(voxels.sum())
        if n < min_voxels:
            continue
        x_mm = nb.affines.apply_affine(affine, np.argwhere(voxels))[:, 0]
        region, side = region_side(names.get(int(label), f"parcel_{label}"), x_mm)
        by_class = {
            cls: float(saliency[cls][voxels].mean()) if cls in saliency else math.nan
            for cls in ("severe", "mild")
        }
        rows.append(
            {
                "region": region,
                "side": side,
                "class_difference": by_class["severe"] - by_class["mild"],
                **{f"mean_saliency_{cls}": v for cls, v in by_class.items()},
                "mean_saliency": float(saliency["all"][voxels].mean()),
                "n_voxels": n,
            }
        )
    both = "severe" in saliency and "mild" in saliency
    rows.sort(key=lambda r: -abs(r["class_difference"] if both else r["mean_saliency"]))
    return rows[:top]


def write_region_table(rows: list[dict], path: str | Path, atlas: str = PARCEL_ATLAS) -> tuple[Path, Path]:
    """Write the region table as TSV with a JSON sidecar describing its columns and naming the atlas."""
    path = Path(path)
    table = write_tsv(path, rows, list(REGION_COLUMNS))
    description = "atlas regions ranked by |severe - mild| mean held-out signed saliency of the CNN"
    sidecar = atomic_write_json(
        path.with_suffix(".json"),
        {**tsv_sidecar(REGION_COLUMNS, description, strict=True), "Atlas": atlas_record(atlas)},
    )
    return table, sidecar


class ExplainFiles(NamedTuple):
    """Files written by :func:`summarise_saliency`."""

    saliency_file: str
    regions_file: str
    class_saliency_files: list[str]  # the class maps, and every JSON sidecar


def save_grid_image(data: np.ndarray, grid: dict, path: Path, description: str = "", **meta: Any) -> Path:
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


def held_out_explainer(
    data: Mapping[str, np.ndarray], test: np.ndarray, params: GroupParams, out: dict[str, np.ndarray]
) -> Callable[[StrokeCNN, np.ndarray], None]:
    """``explain(model, x_test)`` for one fold: signed saliency of the fold's CNN on its test units.

    ``test`` are the fold's test sample indices (the order of ``x_test``). Saliency is averaged over
    each unit's samples (at most :data:`SALIENCY_WINDOWS` window maps), brought to the lesion-aligned
    orientation when the maps were not aligned, and summed per class into ``out``
    (:func:`class_sums`).
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
        cls: save_grid_image(
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
