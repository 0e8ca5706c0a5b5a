"""``CohortParams``: every setting of a simulated cohort and its default, written once.

The command line (:mod:`strokefc_sim.cli`) builds one flag per field from this class: its default,
type and help come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: Grids of fMRIPrep's MNI152NLin2009cAsym outputs: voxel size (mm) -> shape (``res-2`` at 2 mm).
GRIDS = {2: (97, 115, 97), 4: (49, 58, 49)}
#: How lesion masks are written (see :func:`strokefc_sim.cohort.simulate_cohort`).
LESION_FORMS = ("template", "t1w", "both")


def _opt(default: T, doc: str = "", **cli: Any) -> T:
    """A field with its default, and the help (plus other argparse settings) of its flag."""
    return field(default=default, metadata={"help": doc, **cli})


@dataclass(frozen=True)
class CohortParams:
    """What to simulate; ``seed`` fixes every draw, so equal parameters write identical files."""

    n_subjects: int = _opt(24, "patients")
    resolution: int = _opt(
        4,
        "grid (mm): 2 = fMRIPrep res-2, 4 = coarse and fast",
        choices=sorted(GRIDS),
        aliases=("--voxel-size",),
    )
    n_volumes: int = _opt(150, "volumes per run (150 at TR 2 s pass the default exclusion rules)")
    tr: float = _opt(2.0, "repetition time (s)")
    n_runs: int = _opt(1, "runs per session")
    n_sessions: int = _opt(0, "0 = no session level")
    severe_fraction: float = _opt(0.5, "share of severe patients (UL-FMA <= 20), who carry the effect")
    effect: float = _opt(0.75, "amplitude of the seed-target coupling oscillation in severe patients")
    seed: int = _opt(1, "random seed")
    lesion_form: str = _opt(
        "template",
        "template: MNI masks in derivatives/lesions; t1w: raw T1w-space masks with fMRIPrep's "
        "transform; both",
        choices=LESION_FORMS,
    )
    lesion_noise: float = _opt(0.0, "cavity artefact in the lesion (SD per cm of radius)")
    lesion_size_by_class: bool = _opt(False, "severe patients get larger lesions (a confound)")
    lag: float = _opt(0.0, "hemodynamic lag (s) of the lesioned hemisphere's signals")
    motion_by_class: float = _opt(1.0, "head motion of severe patients, times the others'")

    def check(self) -> None:
        """Stop (as the command line does) on a grid or lesion form the simulator cannot write."""
        if self.lesion_form not in LESION_FORMS:
            raise SystemExit(f"--lesion-form must be one of {', '.join(LESION_FORMS)}")
        if self.resolution not in GRIDS:
            raise SystemExit(f"--resolution must be one of {sorted(GRIDS)} (mm)")
