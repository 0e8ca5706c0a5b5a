"""Explaining the primary parcel model: its activation patterns (Haufe et al. 2014) on held-out subjects.

A linear model's weights are not what it reads: a large weight may only cancel noise that a parcel
shares with another. Haufe et al. (2014, NeuroImage 87:96-110) turn the weights ``w`` of a linear
model into its activation pattern ``A = cov(z) w``, the covariance of each (standardised) feature
``z`` with the model's decision value ``s = z w``; here per SD of that value (``A / sd(s)``), so that
patterns of fold models with different strengths share a scale (Haufe's ``cov(z) w / var(s)`` shrinks
as a model's weights grow). Each
cross-validation fold's primary model, refit on the fold's training subjects as the fold fit it (the
same pipeline and seed, :func:`workflows.parcel_model.fit_parcel_model`), gives the pattern of its own
test subjects; the table is the mean over the fold models, ranked by its absolute value, with the same
fold stability as the CNN's saliency table (:func:`workflows.explain.top_share`). The model is the
registry's primary one (:data:`workflows.models.PRIMARY_MODEL`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from workflows.columns import tsv_sidecar
from workflows.cross_validation import fold_indices, split_groups, targets
from workflows.explain import (
    STABLE_SHARE,
    TOP_REGIONS,
    profile_correlation,
    region_side,
    sign_agreement,
    top_share,
)
from workflows.model_io import json_clean
from workflows.models import PARCEL_ATLAS, PARCEL_EXPORTS, PRIMARY_MODEL, parcel_matrix, parcel_means
from workflows.params import AUTO_TIMESCALE, GroupParams
from workflows.parcel_model import fit_parcel_model
from workflows.seeds import atlas_labels, atlas_record
from workflows.utils.io import atomic_write_json, write_tsv

LOGGER = logging.getLogger("strokefc.group")

PATTERN_REGIONS = "parcel_patterns.tsv"
#: Columns of the pattern table (described in :data:`workflows.columns.COLUMNS`).
PATTERN_COLUMNS = (
    "region",
    "side",
    "activation_pattern",
    "fold_top_share",
    "fold_sign_agreement",
    "n_voxels",
)


def activation_pattern(z: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``cov(z_j, s) / sd(s)`` for every feature ``j`` (columns of ``z``: samples x features) and the
    decision values ``s`` (Haufe et al. 2014 for one output, the source scaled to unit variance; sample
    covariance and SD); NaN when ``s`` does not vary."""
    z, score = np.asarray(z, float), np.asarray(score, float)
    if len(score) < 2:
        return np.full(z.shape[1], np.nan)
    s = score - score.mean()
    sd = math.sqrt(float(s @ s) / (len(s) - 1))
    if sd <= 0:
        return np.full(z.shape[1], np.nan)
    return ((z - z.mean(0)).T @ s) / (len(s) - 1) / sd


def fold_patterns(
    data: Mapping[str, np.ndarray],
    folds: Sequence[Mapping[str, Any]],
    params: GroupParams,
    name: str = PRIMARY_MODEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Each fold model's activation pattern on its own test samples: ``(folds, parcels)`` and the parcel ids.

    ``folds`` are the planned folds (test unit labels, :func:`workflows.cross_validation.plan_folds`);
    the model of each is refit on the fold's training samples with the fold's seed, as in the
    cross-validation, and its pattern taken over the test samples' standardised parcel features.
    """
    x, y, split = data["x"], targets(data, params), split_groups(data)
    operator, ids = parcel_matrix(data["parcels"])
    rows = []
    for fold in folds:
        idx = fold_indices(np.asarray(data["groups"]), dict(fold))
        train, test = idx["train"], idx["test"]
        _, pipeline, _ = fit_parcel_model(
            x[train],
            y[train],
            split[train],
            data["parcels"],
            target=params.target,
            seed=1000 * int(fold["repeat"]) + int(fold["fold"]),
            name=name,
        )
        z = pipeline[:-1].transform(parcel_means(x[test], operator))
        estimator = pipeline[-1]
        score = (
            estimator.decision_function(z)
            if hasattr(estimator, "decision_function")
            else estimator.predict(z)
        )
        rows.append(activation_pattern(z, np.ravel(score)))
    return np.array(rows).reshape(len(rows), len(ids)), ids


def pattern_table(
    patterns: np.ndarray,
    ids: np.ndarray,
    parcels: np.ndarray,
    affine: np.ndarray,
    names: Mapping[int, str],
    top: int = TOP_REGIONS,
) -> list[dict[str, Any]]:
    """The parcels ranked by the absolute mean pattern over the fold models (rows of ``patterns``),
    with their fold stability (:data:`PATTERN_COLUMNS`)."""
    mean = np.nanmean(patterns, axis=0) if len(patterns) else np.full(len(ids), np.nan)
    share, agree = top_share(patterns, top), sign_agreement(patterns, mean)
    parcels = np.asarray(parcels)
    rows = []
    for j in np.argsort(-np.abs(np.nan_to_num(mean)), kind="stable")[:top]:
        voxels = np.argwhere(parcels == ids[j])
        region, side = region_side(
            names.get(int(ids[j]), f"parcel_{ids[j]}"), nb.affines.apply_affine(affine, voxels)[:, 0]
        )
        rows.append(
            {
                "region": region,
                "side": side,
                "activation_pattern": float(mean[j]),
                "fold_top_share": float(share[j]),
                "fold_sign_agreement": float(agree[j]),
                "n_voxels": len(voxels),
            }
        )
    return rows


def patterns_computed(params: GroupParams) -> bool:
    """Whether the fold models can be refit as the cross-validation fit them: a parcel model as the
    primary, features not harmonised across sites, one window length (not chosen in each fold)."""
    return (
        PRIMARY_MODEL in PARCEL_EXPORTS and params.harmonize == "none" and params.timescale != AUTO_TIMESCALE
    )


def explain_parcel_model(
    data_file: str | Path,
    grid_file: str | Path,
    folds: Sequence[Mapping[str, Any]],
    params: GroupParams,
    work_dir: str | Path,
) -> list[str]:
    """Write ``parcel_patterns.tsv`` (+ JSON sidecar) of the primary model; returns the files written.

    Nothing is written (an empty list) when the fold models cannot be refit as the cross-validation
    fit them (:func:`patterns_computed`).
    """
    if not patterns_computed(params):
        LOGGER.info("activation patterns: not computed (the fold models cannot be refit as they were fit)")
        return []
    data = np.load(data_file)
    grid = json.loads(Path(grid_file).read_text())
    patterns, ids = fold_patterns(data, folds, params)
    names = {value: name for name, value in atlas_labels(PARCEL_ATLAS).items()}
    rows = pattern_table(patterns, ids, data["parcels"], np.asarray(grid["affine"]), names)
    path = Path(work_dir) / PATTERN_REGIONS
    table = write_tsv(path, rows, list(PATTERN_COLUMNS))
    rho = profile_correlation(patterns)
    sidecar = atomic_write_json(
        path.with_suffix(".json"),
        json_clean(
            {
                **tsv_sidecar(
                    PATTERN_COLUMNS,
                    f"parcels ranked by |activation pattern| (Haufe et al. 2014) of the primary model "
                    f"({PRIMARY_MODEL}), each fold's model on its own test subjects, mean over fold models",
                    strict=True,
                ),
                "Atlas": atlas_record(PARCEL_ATLAS),
                "Model": PRIMARY_MODEL,
                "Stability": {
                    "FoldModels": len(patterns),
                    "TopK": TOP_REGIONS,
                    "StableShare": STABLE_SHARE,
                    "FoldProfileSpearman": None if math.isnan(rho) else rho,
                },
            }
        ),
    )
    return [str(table), str(sidecar)]
