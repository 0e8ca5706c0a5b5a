"""Nipype interface over :func:`workflows.lesion.lesion_on_grid`."""

import os

import nibabel as nb
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from workflows.interfaces.base import StrokefcInterface
from workflows.lesion import LESION_DILATION, lesion_on_grid
from workflows.params import LesionParams
from workflows.utils.images import load_nifti


class _LesionInputSpec(BaseInterfaceInputSpec):
    lesion_file = File(exists=True, mandatory=True, desc="lesion mask in the template space (any grid)")
    mask_file = File(exists=True, mandatory=True, desc="fMRIPrep brain mask on the BOLD grid")
    dilation = traits.Int(LESION_DILATION, usedefault=True, desc="voxels of dilation before exclusion")
    threshold = traits.Float(
        LesionParams.threshold, usedefault=True, desc="mask values >= threshold are the lesion"
    )


class _LesionOutputSpec(TraitedSpec):
    lesion_mask = File(exists=True, desc="the lesion on the BOLD grid (uint8)")
    exclude_mask = File(exists=True, desc="the dilated lesion inside the brain: leaves the analysis mask")
    info = traits.Dict(desc="lesion volume, voxels, exclusion, warnings (for sidecars and the report)")


class LesionOnGrid(StrokefcInterface):
    """A subject's lesion mask on the run grid, and the voxels that leave the maps."""

    input_spec = _LesionInputSpec
    output_spec = _LesionOutputSpec

    def _run_interface(self, runtime):
        brain = load_nifti(self.inputs.mask_file)
        result = lesion_on_grid(
            load_nifti(self.inputs.lesion_file),
            brain,
            dilation=self.inputs.dilation,
            where=str(self.inputs.lesion_file),
            threshold=self.inputs.threshold,
        )
        for name, data in (("lesion_mask", result.lesion), ("exclude_mask", result.excluded)):
            img = nb.Nifti1Image(data.astype(np.uint8), brain.affine)
            img.header.set_xyzt_units("mm")
            path = os.path.join(runtime.cwd, f"{name}.nii.gz")
            img.to_filename(path)
            self._results[name] = path
        self._results["info"] = result.info
        return runtime
