"""The a-priori motor network: a few regions named by the stroke literature, relative to the lesion side.

The whole-brain parcel model spreads its weight over about 415 parcels; when an effect sits in a few of
them it pays for not knowing which (``benchmarks/results/2026-12-03-primary-candidates.md``). The motor
prior model (``motor_prior`` in :data:`workflows.models.MODELS`) reads instead the mean of the map in
six regions of the motor network, in both hemispheres (12 features), chosen from the literature before
any data were seen:

- **primary motor cortex (M1)**: the interhemispheric M1-M1 coupling of the ipsilesional M1 tracks
  upper-limb impairment (Carter et al. 2010, Ann Neurol 67:365-375) and recovery (Park et al. 2011,
  Stroke 42:1357-1362);
- **supplementary motor area (SMA)**, **dorsal and ventral premotor cortex** and **M1** are the cortical
  nodes of the motor network whose intra- and interhemispheric interactions are disturbed after stroke
  (Grefkes & Fink 2011, Brain 134:1264-1276; 2014, Lancet Neurol 13:206-216);
- **thalamus** and **cerebellum**: ipsilesional-M1 connectivity with them changed with motor recovery
  (Park et al. 2011), and with the **putamen** they are the subcortical motor loop of the same reviews.

Regions come from the atlases strokefc already ships (:mod:`workflows.seeds`): HCPEx for the cortical
areas of the HCP parcellation (M1, the premotor areas 6d and 6v) and the putamen; AAL for the SMA (one
region, as the stroke studies define it), the thalamus and the motor cerebellum (lobules IV-VI and VIII,
the cerebellar motor representations). Where two regions overlap on the grid, the earlier one in
:data:`MOTOR_PRIOR_REGIONS` keeps the voxel.

The group level reads lesion-aligned maps (right-lesion maps mirrored, so the left hemisphere is
ipsilesional: :func:`workflows.grid.align_image`); :func:`motor_prior_labels` therefore draws the
ipsilesional regions in the left hemisphere, and :func:`region_atlas_names` says which atlas regions
a lesion side makes ipsi- and contralesional.

The simulator (``strokefc_sim.signal.PLANTED_TARGETS``: contralesional M1, ipsilesional SMA and
thalamus) was built from the same literature, so its planted regions lie inside this prior; what the
prior costs when an effect lies outside it is measured in ``benchmarks/results/2026-12-03-motor-prior.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workflows.grid import grid_image, grid_mask
from workflows.seeds import atlas_region_mask


class PriorRegion(NamedTuple):
    """One region of the prior: its name, atlas, atlas label patterns (``{side}`` = L or R), sources."""

    name: str
    atlas: str
    patterns: tuple[str, ...]
    sources: str


#: The motor network of the prior, in label order (see the module docstring for the literature).
MOTOR_PRIOR_REGIONS = (
    PriorRegion(
        "M1", "HCPEx", ("Primary_Motor_Cortex_{side}",), "Carter 2010; Park 2011; Grefkes & Fink 2011"
    ),
    PriorRegion("SMA", "AAL", ("Supp_Motor_Area_{side}",), "Park 2011; Grefkes & Fink 2011"),
    PriorRegion(
        "premotor", "HCPEx", ("Dorsal_area_6_{side}", "Ventral_Area_6_{side}"), "Grefkes & Fink 2011, 2014"
    ),
    PriorRegion("thalamus", "AAL", ("Thalamus_{side}",), "Park 2011; Grefkes & Fink 2011"),
    PriorRegion("putamen", "HCPEx", ("Putamen_{side}",), "Grefkes & Fink 2011"),
    PriorRegion(
        "cerebellum",
        "AAL",
        ("Cerebelum_4_5_{side}", "Cerebelum_6_{side}", "Cerebelum_8_{side}"),
        "Park 2011; Grefkes & Fink 2011",
    ),
)
#: Hemispheres relative to the lesion, in label order within each region.
SIDES = ("ipsilesional", "contralesional")
#: The literature the prior is drawn from (the methods text and the model card cite it).
PRIOR_REFERENCES = (
    "Carter et al. 2010, Ann Neurol 67:365-375",
    "Park et al. 2011, Stroke 42:1357-1362",
    "Grefkes & Fink 2011, Brain 134:1264-1276",
    "Grefkes & Fink 2014, Lancet Neurol 13:206-216",
)


def region_names() -> list[str]:
    """The features' names in label order: ``ipsilesional M1``, ``contralesional M1``, ... (label i+1)."""
    return [f"{side} {region.name}" for region in MOTOR_PRIOR_REGIONS for side in SIDES]


def region_atlas_names(lesion_side: str) -> dict[str, tuple[str, list[str]]]:
    """Feature name -> (atlas, atlas region names) for a lesion on ``lesion_side`` (L or R).

    The ipsilesional regions are those of the lesion's hemisphere: for a right lesion, the ipsilesional
    M1 is ``Primary_Motor_Cortex_R``. On lesion-aligned maps every lesion is on the left.
    """
    if lesion_side not in ("L", "R"):
        raise ValueError(f"lesion side {lesion_side!r} is not L or R")
    other = "R" if lesion_side == "L" else "L"
    out = {}
    for region in MOTOR_PRIOR_REGIONS:
        for side, hemi in zip(SIDES, (lesion_side, other)):
            out[f"{side} {region.name}"] = (region.atlas, [p.format(side=hemi) for p in region.patterns])
    return out


def motor_prior_labels(grid: dict, lesion_side: str = "L") -> np.ndarray:
    """Integer label volume of the prior's regions on the model grid (0 = none; label i+1 is
    :func:`region_names` ``[i]``), inside the grid's mask.

    ``lesion_side`` is the hemisphere drawn as ipsilesional: L for lesion-aligned maps (the default).
    A voxel claimed by two regions keeps the first one's label.
    """
    reference = grid_image(np.zeros(tuple(grid["shape"]), np.float32), grid)
    labels = np.zeros(tuple(grid["shape"]), np.int32)
    for value, (atlas, names) in enumerate(region_atlas_names(lesion_side).values(), start=1):
        mask = np.asarray(atlas_region_mask(atlas, names, reference).dataobj) > 0
        labels[mask & (labels == 0)] = value
    return labels * grid_mask(grid).astype(np.int32)
