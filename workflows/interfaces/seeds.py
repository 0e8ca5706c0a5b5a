"""Nipype interface over :func:`workflows.seeds.make_seed_mask`."""

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from workflows.interfaces.base import StrokefcInterface
from workflows.seeds import make_seed_mask
from workflows.utils.images import load_nifti


class _SeedInputSpec(BaseInterfaceInputSpec):
    lesion_side = traits.Enum("L", "R", mandatory=True, desc="lesion hemisphere")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    seed_mask = traits.Either(
        None,
        File(exists=True),
        default=None,
        usedefault=True,
        desc="user seed mask (left hemisphere, or hemi-L/hemi-R pair)",
    )
    seed_coords = traits.Either(
        None,
        traits.Tuple(traits.Float, traits.Float, traits.Float),
        default=None,
        usedefault=True,
        desc="left-hemisphere sphere centre (mm)",
    )
    seed_radius = traits.Float(mandatory=True, desc="sphere radius (mm)")
    lesion_mask = traits.Either(
        None,
        File(exists=True),
        default=None,
        usedefault=True,
        desc="lesion mask (any grid in template space)",
    )
    atlas = traits.Str(mandatory=True, desc="atlas for the default M1 seed (workflows.seeds.ATLASES)")


class _SeedOutputSpec(TraitedSpec):
    seed_mask = File(exists=True, desc="ipsilesional seed mask on the BOLD grid (uint8)")
    info = traits.Dict(desc="how the seed was made, for sidecars and the report")


class MakeSeed(StrokefcInterface):
    """Ipsilesional M1 seed on the run's grid, inside the brain mask, lesion removed."""

    input_spec = _SeedInputSpec
    output_spec = _SeedOutputSpec

    def _run_interface(self, runtime):
        mask_img = load_nifti(self.inputs.mask_file)
        lesion = self.inputs.lesion_mask
        seed_img, info = make_seed_mask(
            lesion_side=self.inputs.lesion_side,
            reference_img=mask_img,
            brain_mask_img=mask_img,
            seed_mask=self.inputs.seed_mask,
            seed_coords=self.inputs.seed_coords,
            seed_radius_mm=self.inputs.seed_radius,
            lesion_mask_img=load_nifti(lesion) if lesion and isdefined(lesion) else None,
            atlas=self.inputs.atlas,
        )
        out = os.path.join(runtime.cwd, "seed_mask.nii.gz")
        seed_img.to_filename(out)
        self._results.update(seed_mask=out, info=info)
        return runtime
