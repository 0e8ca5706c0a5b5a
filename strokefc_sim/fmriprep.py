"""fMRIPrep-like derivatives of a simulated run: BOLD, mask, reference, confounds (fMRIPrep 23 names)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from strokefc_sim.bids_writer import write_json

SPACE = "MNI152NLin2009cAsym"


def space_entities(resolution: int) -> str:
    """``_space-<SPACE>``, plus ``_res-2`` on the 2 mm grid (fMRIPrep writes no ``res`` at 4 mm)."""
    return f"_space-{SPACE}" + ("_res-2" if resolution == 2 else "")


def write_description(fmriprep: Path) -> None:
    write_json(
        fmriprep / "dataset_description.json",
        {
            "Name": "fMRIPrep - fMRI PREProcessing workflow (simulated)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "fMRIPrep", "Version": "23.2.0", "CodeURL": "https://github.com/nipreps/fmriprep"}
            ],
        },
    )


def to_image(
    data_tv: np.ndarray, mask: np.ndarray, affine: np.ndarray, tr: float | None = None
) -> nb.Nifti1Image:
    """In-mask data (T, V) as a 4D int16 image around 1000 (a BOLD-like scale).

    With ``tr`` the header holds it in seconds, as fMRIPrep writes it (otherwise nibabel's 1, unitless).
    """
    vol = np.zeros((*mask.shape, data_tv.shape[0]), np.float32)
    vol[mask] = (1000.0 + 20.0 * data_tv).T
    img = nb.Nifti1Image(vol, affine)
    img.set_data_dtype(np.int16)  # nibabel picks the scale factor; 10x smaller and faster to gzip
    if tr is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
        img.header.set_xyzt_units("mm", "sec")
    return img


def write_run(
    func: Path,
    ents: str,
    *,
    resolution: int,
    data: np.ndarray,
    mask_img: nb.Nifti1Image,
    confounds: pd.DataFrame,
    compcor: dict,
    tr: float,
    source: str,
) -> None:
    """One run's preprocessed BOLD (with sidecar), brain mask, reference and confounds (with JSON)."""
    func.mkdir(parents=True, exist_ok=True)
    mask = np.asarray(mask_img.dataobj) > 0
    affine = mask_img.affine
    sp = space_entities(resolution)
    to_image(data, mask, affine, tr).to_filename(func / f"{ents}{sp}_desc-preproc_bold.nii.gz")
    write_json(
        func / f"{ents}{sp}_desc-preproc_bold.json",
        {
            "RepetitionTime": tr,
            "TaskName": "rest",
            "SkullStripped": False,
            "StartTime": 0.0,
            "Sources": [source],
        },
    )
    nb.Nifti1Image(mask.astype(np.uint8), affine).to_filename(func / f"{ents}{sp}_desc-brain_mask.nii.gz")
    ref = np.where(mask, 1000.0, 0.0).astype(np.float32)
    nb.Nifti1Image(ref, affine).to_filename(func / f"{ents}{sp}_boldref.nii.gz")
    confounds.to_csv(
        func / f"{ents}_desc-confounds_timeseries.tsv",
        sep="\t",
        index=False,
        na_rep="n/a",
        float_format="%.6g",
    )
    write_json(func / f"{ents}_desc-confounds_timeseries.json", compcor)
