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
region table. The table says how far to trust each region: its stability over the fold models (each
on its own held-out subjects: :func:`top_share`, :func:`sign_agreement`, and the whole profile's
:func:`profile_correlation`) and, when the CNN's permutation test ran, its permutation p-values against
the same held-out saliency of the permuted-label CNNs (:class:`FoldExplainer`,
:func:`null_p_values`, corrected over regions by the maximum statistic).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import nibabel as nb
import numpy as np
from nilearn.image import resample_img

from workflows.columns import tsv_sidecar
from workflows.grid import grid_image, grid_mask
from workflows.model_io import json_clean
from workflows.models import PARCEL_ATLAS
from workflows.params import GroupParams
from workflows.seeds import atlas_labels, atlas_record
from workflows.stats import permutation_p_value
from workflows.utils.bids import sidecar_path
from workflows.utils.io import atomic_write_json, write_tsv

if TYPE_CHECKING:  # PyTorch is imported where a CNN is explained: a node that only reads tables never does
    import torch

    from workflows.cnn import StrokeCNN

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
    "fold_top_share",
    "fold_sign_agreement",
    "null_p",
    "null_p_fwe",
    "stable_above_null",
)
#: Rows of the region table; the stability counts a region's fold-wise rank within as many.
TOP_REGIONS = 20
#: A region is stable when it ranks among the table's top regions in at least this share of the fold models.
STABLE_SHARE = 0.5
#: ... and above the null when its FWE-corrected permutation p is below this.
NULL_ALPHA = 0.05


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
    import torch
    from captum.attr import IntegratedGradients

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


def held_out_means(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
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


class Regions(NamedTuple):
    """Atlas regions on the CNN grid: their labels, each grid voxel's region, their voxel counts."""

    labels: np.ndarray  # atlas label of each region
    of_voxel: np.ndarray  # per grid voxel (flattened), the position of its region in ``labels``; -1: none
    counts: np.ndarray  # voxels of each region inside the CNN mask


def grid_regions(grid: dict, labels: np.ndarray, min_voxels: int = 2) -> Regions:
    """The atlas regions with at least ``min_voxels`` voxels inside the CNN mask (a voxel's mean is noise)."""
    labels = np.asarray(labels)
    inside = (grid_mask(grid) & (labels > 0)).ravel()
    present, counts = np.unique(labels.ravel()[inside], return_counts=True)
    keep = present[counts >= min_voxels]
    position = np.full(int(labels.max(initial=0)) + 1, -1)
    position[keep] = np.arange(len(keep))
    index = np.where(inside, position[np.where(inside, labels.ravel(), 0)], -1)
    return Regions(keep.astype(int), index, counts[counts >= min_voxels])


def region_means(saliency: np.ndarray, regions: Regions) -> np.ndarray:
    """Mean of a saliency map over each region's voxels (in the order of ``regions.labels``)."""
    inside = regions.of_voxel >= 0
    sums = np.bincount(
        regions.of_voxel[inside],
        weights=np.asarray(saliency, np.float64).ravel()[inside],
        minlength=len(regions.labels),
    )
    return sums / regions.counts


def region_statistic(saliency: Mapping[str, np.ndarray], regions: Regions) -> np.ndarray:
    """What ranks the regions: the severe-minus-mild mean saliency of each region (with a class missing,
    the mean over all subjects)."""
    if "severe" in saliency and "mild" in saliency:
        return region_means(saliency["severe"], regions) - region_means(saliency["mild"], regions)
    return region_means(saliency["all"], regions)


def fold_profiles(
    parts: Sequence[Mapping[str, np.ndarray]], regions: Regions, difference: bool = True
) -> np.ndarray:
    """Each fold model's region statistic on its own held-out subjects: (fold models, regions).

    ``parts`` are the folds' :func:`class_sums`; with ``difference`` the statistic is the class
    difference and a fold without a subject of each class gets a row of NaN.
    """
    rows = []
    for part in parts:
        means = held_out_means([part])
        if difference and not ("severe" in means and "mild" in means):
            rows.append(np.full(len(regions.labels), np.nan))
        else:
            rows.append(
                region_statistic(means, regions) if difference else region_means(means["all"], regions)
            )
    return np.array(rows).reshape(len(rows), len(regions.labels))


def _complete(profiles: np.ndarray) -> np.ndarray:
    profiles = np.asarray(profiles, float)
    return profiles[~np.isnan(profiles).any(1)] if profiles.ndim == 2 else profiles.reshape(0, 0)


def top_share(profiles: np.ndarray, k: int) -> np.ndarray:
    """Per region (column), the share of fold models (rows) in which it is among the ``k`` regions of
    largest absolute statistic; NaN rows (a fold without both classes) are left out."""
    valid = _complete(profiles)
    if not len(valid):
        return np.full(np.shape(profiles)[-1], np.nan)
    ranks = np.argsort(np.argsort(-np.abs(valid), axis=1, kind="stable"), axis=1, kind="stable")
    return (ranks < k).mean(0)


def sign_agreement(profiles: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per region, the share of fold models whose statistic has the sign of the pooled ``observed`` one."""
    valid = _complete(profiles)
    if not len(valid):
        return np.full(np.shape(profiles)[-1], np.nan)
    return (np.sign(valid) == np.sign(np.asarray(observed))[None]).mean(0)


def profile_correlation(profiles: np.ndarray) -> float:
    """Mean Spearman correlation of the whole region profile between every pair of fold models (NaN
    with fewer than two): how much the folds agree on which regions matter, reported once."""
    from scipy.stats import rankdata

    valid = _complete(profiles)
    if len(valid) < 2:
        return math.nan
    ranks = rankdata(valid, axis=1)
    corr = np.corrcoef(ranks)
    return float(np.nanmean(corr[np.triu_indices(len(valid), 1)]))


def null_p_values(observed: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permutation p of each region's absolute statistic among the permuted-label draws ``null``
    (draws, regions), and the family-wise corrected p against each draw's maximum over every region
    (Nichols & Holmes 2002); both ``(1 + #{null >= observed}) / (1 + draws)``, NaN without draws."""
    observed, null = np.abs(np.asarray(observed, float)), np.abs(np.asarray(null, float))
    if null.size == 0:
        return np.full(len(observed), np.nan), np.full(len(observed), np.nan)
    peak = np.nanmax(null, axis=1)
    p = np.array([permutation_p_value(o, null[:, j]) for j, o in enumerate(observed)])
    return p, np.array([permutation_p_value(o, peak) for o in observed])


def null_matrix(draws: Sequence[Mapping[str, float]], regions: Regions) -> np.ndarray:
    """The draws' region statistics (:func:`null_region_statistic`) as (draws, regions); empty draws
    (no saliency computed) are left out."""
    rows = [[float(d.get(str(label), math.nan)) for label in regions.labels] for d in draws if d]
    return np.array(rows, float).reshape(len(rows), len(regions.labels))


def null_region_statistic(
    parts: Sequence[Mapping[str, np.ndarray]], grid: dict, labels: np.ndarray
) -> dict[str, float]:
    """One permuted-label draw's region statistic (atlas label -> value) from its folds' class sums."""
    regions = grid_regions(grid, labels)
    values = region_statistic(held_out_means(parts), regions)
    return {str(label): float(v) for label, v in zip(regions.labels, values)}


def region_table(
    saliency: dict[str, np.ndarray],
    grid: dict,
    labels: np.ndarray,
    names: dict[int, str],
    top: int = TOP_REGIONS,
    min_voxels: int = 2,
    *,
    folds: Sequence[Mapping[str, np.ndarray]] | None = None,
    null: Sequence[Mapping[str, float]] | None = None,
) -> list[dict]:
    """Atlas regions ranked by how differently they push the two classes (see :data:`REGION_COLUMNS`).

    ``saliency`` holds the held-out means (:func:`held_out_means`: ``all`` and, when present,
    ``severe`` and ``mild``); the rank is by the absolute severe-minus-mild difference of the mean
    signed saliency over the parcel's voxels inside the CNN mask (by the absolute mean over all
    subjects when a class is missing). With the training mean as baseline, the all-subject mean of a
    region the model reads linearly is near zero, which is why it does not rank. ``labels`` are
    atlas labels on the CNN grid (:func:`atlas_on_grid`). Regions with fewer than ``min_voxels``
    voxels on the grid are left out (a single voxel's mean is noise).

    Stability, from ``folds`` (each fold model's :func:`class_sums`): the share of fold models whose
    own held-out subjects rank the region among the top ``top`` (:func:`top_share`), and whose sign
    agrees with the pooled one (:func:`sign_agreement`). Null, from ``null`` (each permuted-label
    draw's :func:`null_region_statistic`): the region's permutation p and its FWE-corrected p
    (:func:`null_p_values`). A region is marked stable and above the null when its top share is at
    least :data:`STABLE_SHARE` and its corrected p below :data:`NULL_ALPHA`.
    """
    regions = grid_regions(grid, labels, min_voxels)
    both = "severe" in saliency and "mild" in saliency
    by_class = {
        cls: region_means(saliency[cls], regions) if cls in saliency else np.full(len(regions.labels), np.nan)
        for cls in ("severe", "mild")
    }
    mean_all = region_means(saliency["all"], regions)
    statistic = region_statistic(saliency, regions)
    profiles = fold_profiles(list(folds or []), regions, both)
    share, agree = top_share(profiles, top), sign_agreement(profiles, statistic)
    p, p_fwe = null_p_values(statistic, null_matrix(list(null or []), regions))
    x_mm = nb.affines.apply_affine(np.asarray(grid["affine"]), np.argwhere(np.ones(labels.shape, bool)))[:, 0]
    rows: list[dict[str, Any]] = []
    for i, label in enumerate(regions.labels):
        region, side = region_side(names.get(int(label), f"parcel_{label}"), x_mm[regions.of_voxel == i])
        marked = "n/a" if math.isnan(p_fwe[i]) else "no"
        if marked == "no" and share[i] >= STABLE_SHARE and p_fwe[i] < NULL_ALPHA:
            marked = "yes"
        rows.append(
            {
                "region": region,
                "side": side,
                "class_difference": float(by_class["severe"][i] - by_class["mild"][i]),
                **{f"mean_saliency_{cls}": float(v[i]) for cls, v in by_class.items()},
                "mean_saliency": float(mean_all[i]),
                "n_voxels": int(regions.counts[i]),
                "fold_top_share": float(share[i]),
                "fold_sign_agreement": float(agree[i]),
                "null_p": float(p[i]),
                "null_p_fwe": float(p_fwe[i]),
                "stable_above_null": marked,
            }
        )
    order = np.argsort(-np.abs(statistic), kind="stable")
    return [rows[i] for i in order[:top]]


def write_region_table(
    rows: list[dict], path: str | Path, atlas: str = PARCEL_ATLAS, **meta: Any
) -> tuple[Path, Path]:
    """Write the region table as TSV with a JSON sidecar describing its columns and naming the atlas
    (``meta``: more sidecar fields, such as the stability and null records of :func:`summarise_saliency`)."""
    path = Path(path)
    table = write_tsv(path, rows, list(REGION_COLUMNS))
    description = "atlas regions ranked by |severe - mild| mean held-out signed saliency of the CNN"
    sidecar = atomic_write_json(
        path.with_suffix(".json"),
        json_clean(
            {**tsv_sidecar(REGION_COLUMNS, description, strict=True), "Atlas": atlas_record(atlas), **meta}
        ),
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
    data: Mapping[str, np.ndarray],
    test: np.ndarray,
    params: GroupParams,
    out: dict[str, np.ndarray],
    classes: np.ndarray | None = None,
) -> Callable[[StrokeCNN, np.ndarray], None]:
    """``explain(model, x_test)`` for one fold: signed saliency of the fold's CNN on its test units.

    ``test`` are the fold's test sample indices (the order of ``x_test``). Saliency is averaged over
    each unit's samples (at most :data:`SALIENCY_WINDOWS` window maps), brought to the lesion-aligned
    orientation when the maps were not aligned, and summed per class into ``out``
    (:func:`class_sums`). The class of a unit is its own (``data["y_subject"]``), or the one
    ``classes`` (one per sample: permuted labels) gives its samples.
    """
    groups = np.asarray(data["groups"])[test]
    row = {str(s): i for i, s in enumerate(data["subjects"])}
    given = None if classes is None else dict(zip(groups.tolist(), np.asarray(classes)[test].tolist()))

    def explain(model: StrokeCNN, x_test: np.ndarray) -> None:
        if len(x_test) != len(groups):
            raise RuntimeError("held-out saliency: the test samples are not the fold's test units")
        keep = saliency_samples(groups, SALIENCY_WINDOWS if params.samples == "windows" else len(groups))
        units, maps = subject_saliency(model, x_test[keep], groups[keep])
        rows = np.array([row[str(u)] for u in units])
        if not params.align_lesion:  # bring right-lesion saliency to the left (grid symmetric in x)
            right = np.asarray(data["sides"])[rows] == "R"
            maps[right] = maps[right][:, ::-1]
        unit_classes = (
            np.asarray(data["y_subject"])[rows]
            if given is None
            else np.array([given[u] for u in units.tolist()])
        )
        out.update(class_sums(maps, unit_classes), units=units.astype(str))

    return explain


class FoldExplainer:
    """The CNN's held-out saliency over several folds run one after another (the permutation null).

    :meth:`start` a fold (its test indices and the labels it is scored with), then pass the object as
    the CNN's ``explain``; each fold's :func:`class_sums` are appended to :attr:`parts`.
    """

    def __init__(self, data: Mapping[str, np.ndarray], params: GroupParams) -> None:
        self.data, self.params = data, params
        self.parts: list[dict[str, np.ndarray]] = []
        self._explain: Callable[[StrokeCNN, np.ndarray], None] | None = None

    def start(self, fold: Mapping[str, Any], classes: np.ndarray) -> None:
        """Explain the test units of ``fold`` next, by the class ``classes`` (one per sample) gives them."""
        out: dict[str, np.ndarray] = {}
        self.parts.append(out)
        self._explain = held_out_explainer(self.data, fold["test"], self.params, out, classes)

    def __call__(self, model: StrokeCNN, x_test: np.ndarray) -> None:
        if self._explain is None:
            raise RuntimeError("FoldExplainer: no fold started")
        self._explain(model, x_test)


def summarise_saliency(
    saliency_files: list[str],
    data_file: str | Path,
    grid_file: str | Path,
    params: GroupParams,
    work_dir: str | Path,
    space: str | None = None,
    null: Sequence[Mapping[str, float]] | None = None,
) -> ExplainFiles:
    """Held-out saliency maps (all subjects, each class) and the region table, from the folds' sums.

    Each fold's CNN explained only its own test units (:func:`held_out_explainer`); the maps are the
    mean over subjects (and over repeats) of the signed integrated gradients, lesion-aligned, on the
    CNN grid. Regions: the HCPEx parcels (the parcel model's, already on the grid), with their
    stability over the fold models and, given the permuted-label draws' region statistics ``null``
    (:func:`workflows.permutation.permutation_draw`), their permutation p-values.
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
    rows = region_table(means, grid, data["parcels"], names, TOP_REGIONS, folds=parts, null=null)
    regions = grid_regions(grid, data["parcels"])
    null_draws = len(null_matrix(list(null or []), regions))
    stability = {
        "FoldModels": len(parts),
        "TopK": TOP_REGIONS,
        "StableShare": STABLE_SHARE,
        # how much the fold models agree on the whole region profile (every region, not only the top)
        "FoldProfileSpearman": profile_correlation(
            fold_profiles(parts, regions, "severe" in means and "mild" in means)
        ),
    }
    null_record = {
        "Draws": null_draws,
        "Statistic": "|class_difference| of the permuted-label CNNs' held-out saliency (each draw's "
        "folds explain their own test subjects, classes by the permuted labels)",
        "Correction": "null_p_fwe: against each draw's maximum over every region",
        "Alpha": NULL_ALPHA,
    }
    table, table_sidecar = write_region_table(
        rows, work_dir / SALIENCY_REGIONS, PARCEL_ATLAS, Stability=stability, Null=null_record
    )
    class_maps = [str(p) for cls, p in saved.items() if cls != "all"]
    sidecars = [str(sidecar_path(p)) for p in saved.values()] + [str(table_sidecar)]
    return ExplainFiles(str(saved["all"]), str(table), class_maps + sidecars)
