"""The label-permutation test of every model's cross-validated balanced accuracy (or, for a UL-FMA
regression, its MAE).

One draw (:func:`run_permutation`, one MapNode iteration of the group workflow) shuffles the class
labels (or the UL-FMA scores) between subjects (:func:`permute_subject_labels`: a subject's sessions
move together, as one label vector exchanged only with subjects that have as many sessions, Winkler
et al. 2015), plans new subject-level folds and cross-validates every permuted model with as many
repeats as the observed score (:func:`permutation_nulls`). :func:`permutation_summary` turns the
draws into each model's p-value (:func:`workflows.stats.permutation_p_value`). Which models are
permuted: :func:`workflows.models.permuted_models` (the CNN only with ``permute_cnn``). A permuted
CNN also explains each fold's test subjects, as the observed folds do (:func:`permutation_draw`): the
draws' region saliency is the null of the saliency region table.

Draws are resumable: with a ``draws_dir`` each finished draw is stored there (written atomically) under
its index, the seed and a digest of everything it depends on (:func:`draw_inputs_digest`), and a rerun
reads it back instead of computing it again. An interrupted run of 1000 draws (a SLURM time limit, a
killed process) thus continues where it stopped, also after ``--n-permutations`` changed; a changed
input or setting gives another digest, so stale draws are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from workflows.cross_validation import (
    cross_validate,
    split_groups,
    subject_folds,
    subject_labels,
    targets,
)
from workflows.explain import FoldExplainer, null_region_statistic
from workflows.group_inputs import is_severe
from workflows.models import CNN_MODEL, PRIMARY_MODEL, FitPredict, fold_models, permuted_models
from workflows.params import GroupParams
from workflows.stats import COMPARE_METRIC, LOWER_IS_BETTER, fold_metrics_for, permutation_p_value
from workflows.utils.io import atomic_write_json

LOGGER = logging.getLogger("strokefc.group")


def permute_subject_labels(
    y: np.ndarray, groups: np.ndarray, rng: np.random.Generator, subjects: npt.ArrayLike | None = None
) -> np.ndarray:
    """Shuffle labels between subjects: a unit's samples keep one label, a subject's units move together.

    ``groups`` are the units (a subject, or a subject-session), ``subjects`` the subject of each sample
    (default: ``groups``, each unit its own subject). Under the null only whole subjects are
    exchangeable (their sessions are not independent), so each subject's vector of unit labels (its
    sessions in order) is exchanged with another subject's, within exchangeability blocks of subjects
    with the same number of units (Winkler et al. 2015, NeuroImage 123:253-268: multi-level blocks).
    Permuting units instead gives a null too narrow: p <= 0.05 about twice as often as it should.
    """
    groups = np.asarray(groups)
    units, labels = subject_labels(y, groups)
    label_of = dict(zip(units.tolist(), labels))
    subject_of = dict(zip(groups.tolist(), np.asarray(groups if subjects is None else subjects).tolist()))
    units_of: dict[Any, list] = {}
    for unit in units.tolist():
        units_of.setdefault(subject_of[unit], []).append(unit)
    blocks: dict[int, list] = {}
    for subject in sorted(units_of, key=str):
        blocks.setdefault(len(units_of[subject]), []).append(subject)
    mapping: dict[Any, Any] = {}
    for size in sorted(blocks):
        members = blocks[size]
        vectors = [[label_of[u] for u in units_of[s]] for s in members]
        for subject, order in zip(members, rng.permutation(len(members))):
            mapping.update(zip(units_of[subject], vectors[order]))
    return np.array([mapping[g] for g in groups.tolist()])


def permutation_nulls(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    models: dict[str, FitPredict],
    *,
    n_folds: int,
    seed: int,
    index: int,
    n_repeats: int = 1,
    split_groups: npt.ArrayLike | None = None,
    severe_threshold: float | None = None,
    on_fold: Callable[[dict, np.ndarray], None] | None = None,
) -> dict[str, float]:
    """One null draw for every model: labels permuted between subjects, then the same repeated k-fold.

    Each model's mean balanced accuracy over ``n_repeats`` repeats of subject-level k-fold (use as many
    repeats as the observed score, so that null and observed means average the same number of folds).
    Labels are permuted between, and folds grouped by, the subjects ``split_groups`` (default
    ``groups``): a subject's sessions keep their labels together. Folds are shared by every model.
    With ``severe_threshold`` the targets ``y`` are UL-FMA scores (regression): the scores are permuted
    the same way, the folds are stratified by the permuted scores' class (as the observed folds), and
    the statistic is each model's mean MAE. ``on_fold(fold, classes)``, when given, is called before
    each fold with the fold and every sample's permuted class (the CNN's null saliency,
    :class:`workflows.explain.FoldExplainer`).
    """
    split = np.asarray(groups if split_groups is None else split_groups)
    rng = np.random.default_rng([seed, 7919, index])
    y_perm = permute_subject_labels(y, groups, rng, split)
    regression, threshold = severe_threshold is not None, float(severe_threshold or 0.0)
    strata = np.array([int(is_severe(v, threshold)) for v in y_perm]) if regression else y_perm
    folds = subject_folds(strata, split, n_folds, n_repeats, seed + 100_000 + index)
    metrics: list[dict[str, Any]] = []
    for batch in [[fold] for fold in folds] if on_fold else [folds]:  # fold by fold for on_fold
        if on_fold:
            on_fold(batch[0], np.asarray(strata))
        metrics += cross_validate(
            x,
            y_perm,
            groups,
            batch,
            models,
            split_groups=split,
            metrics=fold_metrics_for("regression" if regression else "classification", threshold),
            value="predicted_score" if regression else "prob_severe",
        )[1]
    metric = COMPARE_METRIC["regression" if regression else "classification"]
    return {name: float(np.nanmean([m[metric] for m in metrics if m["model"] == name])) for name in models}


def draw_inputs_digest(data: Mapping[str, np.ndarray], params: GroupParams) -> str:
    """SHA-256 of what a permutation draw depends on: every array of the group inputs (name, dtype,
    shape and values: not the file's bytes, which hold the time it was written) and every group setting
    but the number of draws (a run extended from 100 to 1000 draws keeps its first 100).
    """
    digest = hashlib.sha256()
    for name in sorted(data):
        array = np.ascontiguousarray(data[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    settings = params.to_dict()
    settings["cv"] = {k: v for k, v in settings["cv"].items() if k != "n_permutations"}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def draw_path(draws_dir: str | Path, inputs: str, index: int, seed: int) -> Path:
    """Where draw ``index`` of the inputs with digest ``inputs`` and random seed ``seed`` is stored."""
    return Path(draws_dir) / inputs[:16] / f"draw-{int(index):06d}_seed-{int(seed)}.json"


class Draw(NamedTuple):
    """One permutation draw: every permuted model's null score, and the permuted CNN's region saliency."""

    null: dict[str, float]  # model -> mean balanced accuracy (regression: MAE) on permuted labels
    saliency: dict[str, float]  # atlas label -> held-out region statistic ({}: not computed)


def _stored_draw(path: Path, record: dict[str, Any], saliency: bool) -> Draw | None:
    """A stored draw when ``path`` holds the draw ``record`` describes (with its region saliency when
    ``saliency`` is wanted); None otherwise."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
        if all(stored.get(k) == v for k, v in record.items()):
            if saliency and not stored.get("saliency"):
                return None  # stored before the saliency null was asked for
            return Draw(
                {str(name): float(value) for name, value in stored["null"].items()},
                {str(label): float(value) for label, value in (stored.get("saliency") or {}).items()},
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        LOGGER.warning("permutation test: %s is unreadable (%s); computing that draw again", path, exc)
        return None
    LOGGER.warning("permutation test: %s is another draw's; computing this draw again", path)
    return None


def permutation_draw(
    data_file: str | Path,
    index: int,
    params: GroupParams,
    draws_dir: str | Path | None = None,
    grid_file: str | Path | None = None,
) -> Draw:
    """One draw of the label-permutation null of every permuted model's mean balanced accuracy (MAE for
    a regression: the scores are permuted).

    Labels are permuted between subjects (sessions together), then every model of
    :func:`workflows.models.permuted_models` is cross-validated on the same subject-level folds, with as
    many repeats as the observed score. When the CNN is permuted and ``grid_file`` is given, each fold's
    permuted-label CNN also explains its own test subjects (as the observed folds do, classes by the
    permuted labels), and the draw keeps the region statistic of that held-out saliency
    (:func:`workflows.explain.null_region_statistic`): the null of the region table. With ``draws_dir``
    the draw is read from there when an earlier run stored it (:func:`draw_path`), else computed and
    stored.
    """
    data = np.load(data_file)
    index = int(index)
    permuted = permuted_models(params)
    if CNN_MODEL in permuted:  # PyTorch only for --permute-cnn: a draw of the linear models never needs it
        import torch

        torch.set_num_threads(params.threads)
    explain = FoldExplainer(data, params) if grid_file and CNN_MODEL in permuted else None
    stored, path, record = None, None, {}
    if draws_dir:
        inputs = draw_inputs_digest(data, params)
        record = {"index": index, "seed": params.random_seed, "inputs": inputs}
        path = draw_path(draws_dir, inputs, index, params.random_seed)
        stored = _stored_draw(path, record, explain is not None)
    if stored is not None:
        LOGGER.debug("permutation test: draw %d read from %s", index, path)
        draw = stored
    else:
        models = {name: fit for name, fit in fold_models(data, params, explain).items() if name in permuted}
        regression = params.target == "regression"
        nulls = permutation_nulls(
            np.arange(len(data["y"])),
            targets(data, params),
            data["groups"],
            models,
            n_folds=params.cv.cv_folds,
            n_repeats=params.cv.cv_repeats,
            seed=params.random_seed,
            index=index,
            split_groups=split_groups(data),
            severe_threshold=params.severe_threshold if regression else None,
            on_fold=explain.start if explain is not None else None,
        )
        saliency = {}
        if explain is not None and explain.parts:
            grid = json.loads(Path(grid_file or "").read_text())
            saliency = null_region_statistic(explain.parts, grid, data["parcels"])
        draw = Draw(nulls, saliency)
        if path is not None:
            atomic_write_json(path, {**record, "null": nulls, **({"saliency": saliency} if saliency else {})})
    total = params.cv.n_permutations
    if (index + 1) % max(1, total // 10) == 0 or index + 1 == total:  # about ten progress lines
        LOGGER.info("permutation test: permutation %d/%d done", index + 1, total)
    return draw


def run_permutation(
    data_file: str | Path, index: int, params: GroupParams, draws_dir: str | Path | None = None
) -> dict[str, float]:
    """The null scores of :func:`permutation_draw` (no saliency)."""
    return permutation_draw(data_file, index, params, draws_dir).null


def permutation_summary(
    models: dict[str, dict], null: list[dict[str, float]], params: GroupParams
) -> dict[str, Any]:
    """Permutation p-value of every model's mean balanced accuracy (regression: mean MAE, lower is
    better); the primary model's at the top level. The draws are under ``null_<metric>``, the observed
    score under ``observed_<metric>`` (:func:`null_scores` reads them)."""
    metric = COMPARE_METRIC[params.target]
    per_model = {}
    for name in models:
        draws = [float(d[name]) for d in null if name in d]
        if not draws:
            continue
        observed = models[name][metric]["mean"]
        per_model[name] = {
            "metric": metric,
            "p_value": permutation_p_value(observed, draws, lower_is_better=metric in LOWER_IS_BETTER),
            f"null_{metric}": draws,
            f"observed_{metric}": observed,
        }
    primary = PRIMARY_MODEL if PRIMARY_MODEL in per_model else next(iter(per_model), None)
    return {
        "n": len(null),
        "repeats": params.cv.cv_repeats,
        "folds": params.cv.cv_folds,
        "model": primary,
        **(per_model[primary] if primary else {}),
        "models": per_model,
        "scheme": ("UL-FMA scores" if params.target == "regression" else "labels")
        + " permuted between subjects (a subject's sessions move together, exchanged "
        "within blocks of subjects with as many sessions); every model cross-validated on the same "
        f"subject-level folds with {params.cv.cv_repeats} repeat(s) of k-fold per draw, as the observed score"
        + ("" if params.cv.permute_cnn else "; the CNN is not permuted (--permute-cnn)"),
    }


def null_scores(permutation: dict[str, Any] | None) -> tuple[str, list[float], float | None]:
    """``(metric, null draws, observed)`` of a permutation record (the summary's top level, or one
    model's entry); summaries written before regression had a test hold the balanced accuracy."""
    record = permutation or {}
    metric = str(record.get("metric") or COMPARE_METRIC["classification"])
    if f"null_{metric}" not in record and "null_balanced_accuracy" in record:
        metric = COMPARE_METRIC["classification"]
    return metric, list(record.get(f"null_{metric}") or []), record.get(f"observed_{metric}")
