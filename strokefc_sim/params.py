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
#: Models of the seed-target coupling over time (``strokefc_sim.signal.coupling_course``).
DYNAMICS = ("oscillation", "states")
#: Where severe patients differ from the others (``strokefc_sim.signal.EFFECT_TYPES``).
EFFECT_TYPES = ("dynamic", "static", "both", "none")
#: A site's voxel-noise SD relative to the reference scanner, drawn uniformly in this range. Temporal
#: SNR of the same protocol differs by up to about a factor of two between scanners of a multi-site
#: study (Friedman & Glover 2006, J Magn Reson Imaging 23:827, FBIRN phantom QA; site effects on
#: resting-state measures: Yan et al. 2013, NeuroImage 80:246), hence 0.75-1.33 (a ratio of 1.8).
SITE_NOISE_RANGE = (0.75, 1.33)
#: Time since stroke (months), log-uniform: resting-state studies of chronic stroke recruit from a few
#: months to several years after onset (e.g. Park et al. 2011, Stroke 42:1357); 3-72 months is this
#: project's reading of that range, not a figure from one paper. Not correlated with severity.
TIME_SINCE_STROKE_MONTHS = (3.0, 72.0)


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
    effect: float = _opt(
        0.75,
        "size of the seed-target coupling's variation in severe patients: the oscillation's amplitude, "
        "or the gap between the strong and the weak state",
    )
    dynamics: str = _opt(
        "oscillation",
        "oscillation: the original smoothed square wave of period 200-300 s; states: strong and weak "
        "coupling states with dwell times uniform in --dwell-min-s..--dwell-max-s",
        choices=DYNAMICS,
    )
    effect_type: str = _opt(
        "dynamic",
        "dynamic: severe patients' coupling varies more, same mean coupling (exactly so with states); "
        "static: their mean coupling is lower by --static-effect, same dynamics as the others; both; "
        "none: a null, every patient drawn alike",
        choices=EFFECT_TYPES,
    )
    # Published sliding-window dFC states last of the order of tens of seconds to a few minutes (Allen
    # et al. 2014, Cereb Cortex 24:663; Hutchison et al. 2013, NeuroImage 80:360); see
    # strokefc_sim.signal for the sources. 40-80 s lies inside that range.
    dwell_min_s: float = _opt(40.0, "shortest dwell time of a coupling state (s), with --dynamics states")
    dwell_max_s: float = _opt(80.0, "longest dwell time of a coupling state (s), with --dynamics states")
    static_effect: float = _opt(
        0.2, "how much lower severe patients' mean coupling is, with --effect-type static or both"
    )
    n_sites: int = _opt(
        1,
        "scanning sites; with more than one, participants.tsv gets a site column and each site's "
        "scanner its own voxel-noise level (see SITE_NOISE_RANGE)",
    )
    site_severity: float = _opt(
        0.0,
        "how unevenly severe patients are spread over sites (0 = the same mix everywhere, 1 = the "
        "first site recruits only mild patients and the last only severe ones): a site confound, a design "
        "setting with no published value",
    )
    clinical_covariates: bool = _opt(
        False, "write time since stroke (months) in participants.tsv (drawn from TIME_SINCE_STROKE_MONTHS)"
    )
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
        if self.dynamics not in DYNAMICS:
            raise SystemExit(f"--dynamics must be one of {', '.join(DYNAMICS)}")
        if self.effect_type not in EFFECT_TYPES:
            raise SystemExit(f"--effect-type must be one of {', '.join(EFFECT_TYPES)}")
        if self.n_sites < 1:
            raise SystemExit("--n-sites must be at least 1")
        if not 0.0 <= self.site_severity <= 1.0:
            raise SystemExit("--site-severity must be between 0 and 1")
        if not 0 < self.dwell_min_s <= self.dwell_max_s:
            raise SystemExit("--dwell-min-s must be > 0 and <= --dwell-max-s")
