"""The raw BIDS side of a simulated cohort: dataset files, participants, small raw BOLD, sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

GENERATED_BY = "strokefc-simulate"
#: participants.json entries of the columns written only when asked for (sites, clinical covariates).
OPTIONAL_COLUMNS = {
    "site": {"Description": "scanning site (each with its own scanner noise level)"},
    "time_since_stroke_months": {"Description": "time from stroke onset to the scan", "Units": "month"},
}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def version() -> str:
    """strokefc's version, recorded as the generator's."""
    from bids_app import __version__

    return __version__


def write_dataset(out: Path, table: pd.DataFrame, tr: float) -> None:
    """``dataset_description.json``, README, ``participants.tsv``/``.json`` and the task sidecar."""
    write_json(
        out / "dataset_description.json",
        {
            "Name": "strokefc synthetic stroke cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": [GENERATED_BY],
            "GeneratedBy": [{"Name": GENERATED_BY, "Version": version()}],
        },
    )
    (out / "README").write_text(
        "Synthetic resting-state fMRI of stroke patients written by strokefc-simulate; not real data.\n"
    )
    table.drop(columns="group").to_csv(out / "participants.tsv", sep="\t", index=False)
    write_json(
        out / "participants.json",
        {
            "age": {"Description": "age at scan", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            "lesion_hemisphere": {
                "Description": "hemisphere of the stroke lesion",
                "Levels": {"L": "left", "R": "right"},
            },
            "ul_fma": {
                "Description": "Fugl-Meyer Assessment, upper limb motor score (0-66)",
                "Units": "score",
            },
        }
        | {column: doc for column, doc in OPTIONAL_COLUMNS.items() if column in table},
    )
    write_json(out / "task-rest_bold.json", {"TaskName": "rest", "RepetitionTime": tr})


def write_lesion_description(lesion_dir: Path) -> None:
    write_json(
        lesion_dir / "dataset_description.json",
        {
            "Name": "simulated lesion masks",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": GENERATED_BY, "Version": version()}],
        },
    )


def write_raw_bold(raw: Path, ents: str, rng: np.random.Generator, n_volumes: int, tr: float) -> None:
    """A tiny noise image standing in for the raw BOLD (the app reads fMRIPrep's; the validator needs one)."""
    raw.mkdir(parents=True, exist_ok=True)
    small = (1000 + rng.normal(0, 5, (8, 8, 6, n_volumes))).astype(np.int16)
    img = nb.Nifti1Image(small, np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr
    img.to_filename(raw / f"{ents}_bold.nii.gz")


def write_sessions(out: Path, label: str, rows: list[dict]) -> None:
    """``sub-<label>_sessions.tsv``: the UL-FMA of each session."""
    pd.DataFrame(rows).to_csv(out / f"sub-{label}" / f"sub-{label}_sessions.tsv", sep="\t", index=False)


def write_code(out: Path, truth: dict[str, Any], lesion_form: str) -> None:
    """The ground truth under ``code/`` and the ``.bidsignore`` the validator needs."""
    (out / "code").mkdir(exist_ok=True)
    write_json(out / "code" / "strokefc_ground_truth.json", truth)
    # fMRIPrep's documented lesion-mask name is not (yet) in the BIDS schema: the validator needs it ignored
    (out / ".bidsignore").write_text(
        "code/\n" + ("*_label-lesion_roi.nii.gz\n" if lesion_form != "template" else "")
    )
