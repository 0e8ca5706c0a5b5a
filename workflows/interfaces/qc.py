"""Nipype interface over :func:`workflows.qc.qc_row`: the QC table of one processed run."""

import math
import os

import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, isdefined, traits

from workflows.interfaces.base import StrokefcInterface
from workflows.qc import QC_COLUMNS, qc_row
from workflows.utils.images import load_nifti
from workflows.utils.io import write_tsv


class _QCInputSpec(BaseInterfaceInputSpec):
    run = traits.Str(mandatory=True, desc="the run's name (file name up to the space entity)")
    denoise_info = traits.Dict(mandatory=True, desc="from DenoiseBold")
    dfc_info = traits.Dict(mandatory=True, desc="from ComputeDFC")
    lag_info = traits.Dict(desc="from DenoiseBold (lag QC)")
    lesion_info = traits.Dict(desc="from LesionOnGrid")
    tsnr_file = File(exists=True, mandatory=True, desc="temporal SNR map on the BOLD grid")
    seed_mask = File(exists=True, mandatory=True, desc="the seed on the same grid")
    notes = traits.List(traits.Str, desc="input problems that changed what was applied (QC reason column)")


class _QCOutputSpec(TraitedSpec):
    qc_tsv = File(exists=True, desc="one-row QC table (workflows.qc.QC_COLUMNS)")


class RunQC(StrokefcInterface):
    """Gather a run's QC measures into one row: motion, censoring, DOF, windows, seed tSNR, lesion, lag."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        seed = np.asarray(load_nifti(self.inputs.seed_mask).dataobj) > 0
        tsnr = np.asarray(load_nifti(self.inputs.tsnr_file).dataobj)[seed]
        row = qc_row(
            self.inputs.run,
            self.inputs.denoise_info,
            self.inputs.dfc_info,
            float(np.median(tsnr)) if tsnr.size else math.nan,
            self.inputs.lag_info if isdefined(self.inputs.lag_info) else None,
            self.inputs.lesion_info if isdefined(self.inputs.lesion_info) else None,
            self.inputs.notes if isdefined(self.inputs.notes) else (),
        )
        self._results["qc_tsv"] = str(write_tsv(os.path.join(runtime.cwd, "qc.tsv"), [row], list(QC_COLUMNS)))
        return runtime
