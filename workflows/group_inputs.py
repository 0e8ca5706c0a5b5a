"""The group level's inputs: every map lesion-aligned on the analysis grid, the cohort table, class maps.

:func:`prepare_inputs` is the first step of the group workflow. It writes one npz that every later step
reads (the samples on the grid, labels, scores, units and subjects, and each model's other inputs:
:data:`workflows.models.INPUT_ARRAYS`), the grid (JSON), ``cohort.tsv`` and the mean map of each class.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import NamedTuple

import nibabel as nb
import numpy as np

from workflows.explain import atlas_on_grid, save_grid_image
from workflows.grid import (
    align_image,
    apply_grid,
    check_same_grid,
    grid_mask,
    group_mask,
    lesion_exclusion,
    make_grid,
    subsample_windows,
    template_mask,
)
from workflows.labels import is_severe
from workflows.models import (
    CLINICAL,
    CLINICAL_NAMES,
    CONFOUND_FEATURES,
    CONTROL_MAPS,
    DFCSD,
    INPUT_ARRAYS,
    LESION_VOLUME,
    PARCEL_ATLAS,
    PRIOR_REGIONS,
    QUALITY,
    TIMESCALE_MAPS,
    TIMESCALE_NAMES,
)
from workflows.motor_prior import motor_prior_labels
from workflows.params import GROUP_MAPS, GroupParams, timescale_seconds
from workflows.seeds import atlas_image
from workflows.utils.bids import sidecar_path
from workflows.utils.errors import InputError
from workflows.utils.images import load_nifti
from workflows.utils.io import atomic_write_json, write_tsv

LOGGER = logging.getLogger("strokefc.group")

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
#: Column of ``group/cohort.tsv`` added after :data:`COHORT_COLUMNS` when the subjects have sites.
SITE_COLUMN = "site"


#: The class maps' description of each map (dfcsd: the first version's words).
CLASS_MAP_TEXT = {"dfcsd": "dFC SD", "dfcexcess": "excess dFC SD", "fc": "static FC", "dfcmean": "mean dFC"}


class PreparedInputs(NamedTuple):
    """Files written by :func:`prepare_inputs`."""

    data_file: str  # npz: samples x, labels y, subject groups, subject maps, sides
    grid_file: str  # JSON description of the CNN grid
    cohort_file: str  # cohort.tsv
    class_maps: list[str]  # mean maps of the severe and mild classes and their difference


def _exclusion(lesion_files: list[str], grid: dict, side: str, align: bool) -> np.ndarray | None:
    """The union over a subject's lesion masks (one per session) of :func:`lesion_exclusion`."""
    masks = [lesion_exclusion(f, grid, side, align) for f in lesion_files]
    return np.logical_or.reduce(masks) if masks else None


def clinical_inputs(subjects: list[dict]) -> dict[str, np.ndarray]:
    """The clinical baseline's covariates (units, columns) and their names, or {} when none is known.

    The columns are each subject's ``clinical`` values (participants.tsv, chosen by the app: NaN where
    unknown) and the lesion volume of its map sidecar (``qc``); a column unknown for every unit is left
    out, and without any known column the clinical model does not run.
    """
    names = list(subjects[0].get("clinical") or {}) if subjects else []
    rows = [
        [float((s.get("clinical") or {}).get(n, np.nan)) for n in names]
        + [float((s.get("qc") or {}).get(LESION_VOLUME, np.nan))]
        for s in subjects
    ]
    values = np.array(rows, dtype=float).reshape(len(subjects), len(names) + 1)
    known = np.isfinite(values).any(axis=0)
    if not known.any():
        return {}
    return {
        INPUT_ARRAYS[CLINICAL]: values[:, known],
        CLINICAL_NAMES: np.array([n for n, k in zip([*names, LESION_VOLUME], known) if k]),
    }


def prepare_inputs(subjects: list[dict], params: GroupParams, work_dir: str | Path) -> PreparedInputs:
    """Lesion-align the maps, build the CNN grid, put every sample on it; write cohort and class maps.

    ``subjects`` are dicts with ``label, map_file, windows_file, lesion_side, score`` and, for the
    control models, ``fc_file``, ``dfcmean_file`` and ``qc`` (quality measures, see
    :data:`workflows.models.CONFOUND_FEATURES`); ``clinical`` (participants.tsv covariates of the
    clinical baseline, :func:`clinical_inputs`). ``lesion_files`` (the participant level's
    lesion masks) take the lesion and its mirror out of every model input (NaN). The atlas parcels of
    the primary model are put on the same grid. ``site`` (optional, the same for every unit of a
    subject) names each subject's scanning site: when every subject has one, the sites are kept
    (``sites``, one per unit) and ``cohort.tsv`` gets a ``site`` column. Everything is written into
    ``work_dir``; the group workflow's writer node copies the outputs into the dataset.
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
            controls[INPUT_ARRAYS[stat]] = np.concatenate(
                [
                    apply_grid(s[f"{stat}_file"], grid, s["lesion_side"], align, ex)
                    for s, ex in zip(subjects, excluded)
                ]
            )
    # the map at every window length (the per-timescale models and --timescale auto), same order for all
    names = sorted(subjects[0].get("timescale_files") or {}, key=timescale_seconds)
    if names and any(sorted(s.get("timescale_files") or {}) != sorted(names) for s in subjects):
        raise InputError(
            "the subjects' maps are not at the same window lengths",
            str(subjects[0]["map_file"]),
            "run the participant level with the same --window-lengths for everyone",
        )
    if names:
        controls[TIMESCALE_MAPS] = np.stack(
            [
                np.concatenate(
                    [
                        apply_grid(s["timescale_files"][name], grid, s["lesion_side"], align, ex)
                        for s, ex in zip(subjects, excluded)
                    ]
                )
                for name in names
            ]
        )
        controls[TIMESCALE_NAMES] = np.array(names)
    parcels = (atlas_on_grid(atlas_image(PARCEL_ATLAS), grid) * grid_mask(grid)).astype(np.int32)
    if align:  # the motor prior's regions, ipsilesional on the left (aligned maps only)
        controls[PRIOR_REGIONS] = motor_prior_labels(grid)
    confounds = np.array(
        [[float(s.get("qc", {}).get(k, np.nan)) for k in CONFOUND_FEATURES] for s in subjects], dtype=float
    )
    data_file = work_dir / "group_inputs.npz"
    arrays: dict[str, np.ndarray] = {
        INPUT_ARRAYS[DFCSD]: x,
        "y": y,
        "groups": groups,
        "split_groups": np.array([subject_of[str(g)] for g in groups]),
        "subjects": labels,
        "y_subject": y_subject,
        "scores": np.array([float(s["score"]) for s in subjects]),  # UL-FMA per subject (regression)
        "maps": maps,
        "sides": np.array([s["lesion_side"] for s in subjects]),
        "parcels": parcels,
        INPUT_ARRAYS[QUALITY]: confounds,
        **clinical_inputs(subjects),
        **controls,
    }
    sites = [str(s.get("site") or "") for s in subjects]
    if all(sites):
        arrays["sites"] = np.array(sites)
    np.savez(data_file, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    grid_file = atomic_write_json(work_dir / "grid.json", grid)

    severe, mild = maps[y_subject == 1], maps[y_subject == 0]
    shape = tuple(grid["shape"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # voxels excluded in every subject of a class
        mean_severe = np.nan_to_num(np.nanmean(severe, 0)) if len(severe) else np.zeros(shape)
        mean_mild = np.nan_to_num(np.nanmean(mild, 0)) if len(mild) else np.zeros(shape)
    what = CLASS_MAP_TEXT.get(params.map, GROUP_MAPS[params.map])
    class_maps = [
        save_grid_image(
            mean,
            grid,
            work_dir / f"desc-{name}_{params.map}.nii.gz",
            text,
            aligned=align,
            Space=space,
            Units="Fisher z",
        )
        for name, mean, text in (
            ("severe", mean_severe, f"mean {what} of the severe class"),
            ("mild", mean_mild, f"mean {what} of the mild-to-moderate class"),
            ("difference", mean_severe - mean_mild, f"severe minus mild-to-moderate mean {what}"),
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
            SITE_COLUMN: site,
        }
        for s, t, row, site in zip(subjects, y_subject, confounds, sites)
    ]
    columns = list(COHORT_COLUMNS) + ([SITE_COLUMN] if all(sites) else [])
    cohort_file = write_tsv(work_dir / "cohort.tsv", cohort, columns)
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
