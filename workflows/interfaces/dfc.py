"""Nipype interface over :func:`workflows.dfc_run.run_dfc`."""

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from workflows.dfc_run import run_dfc
from workflows.interfaces.base import StrokefcInterface
from workflows.params import WindowParams
from workflows.seeds import atlas_region_mask
from workflows.utils.images import load_nifti

#: Regions traced in the windows table and the report: name -> (atlas, region; {ipsi}/{contra} = side).
REPORT_REGIONS = {
    "contraM1": ("HCPEx", "Primary_Motor_Cortex_{contra}"),
    "ipsiSMA": ("AAL", "Supp_Motor_Area_{ipsi}"),
    "ipsiThalamus": ("AAL", "Thalamus_{ipsi}"),
}


def _report_regions(lesion_side: str, ref_img: nb.Nifti1Image) -> dict[str, nb.Nifti1Image]:
    """Regions traced in the report: contralesional M1, ipsilesional SMA and thalamus."""
    contra = "R" if lesion_side == "L" else "L"
    return {
        name: atlas_region_mask(atlas, [region.format(ipsi=lesion_side, contra=contra)], ref_img)
        for name, (atlas, region) in REPORT_REGIONS.items()
    }


class _DFCInputSpec(BaseInterfaceInputSpec):
    denoised = File(exists=True, mandatory=True, desc="denoised (T, V) .npy from DenoiseBold")
    censored_values = traits.Either(
        None,
        File(exists=True),
        default=None,
        usedefault=True,
        desc="DenoiseBold's cleaned series at the censored volumes (the null's continuous series)",
    )
    volumes_tsv = File(exists=True, mandatory=True, desc="per-volume kept flags")
    mask_file = File(exists=True, mandatory=True, desc="brain mask defining the voxel columns")
    seed_mask = File(exists=True, mandatory=True, desc="seed mask on the same grid")
    lesion_side = traits.Enum("L", "R", mandatory=True, desc="lesion hemisphere")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    window = traits.Dict(mandatory=True, desc="WindowParams as a dict (workflows.params.WindowParams)")
    high_pass = traits.Either(
        None,
        traits.Float,
        mandatory=True,
        desc="high-pass cutoff of the denoising (Hz), for the window-length warning",
    )
    n_threads = traits.Int(
        1, usedefault=True, desc="threads of the stationary null (results do not depend on it)"
    )


class _DFCOutputSpec(TraitedSpec):
    dfcsd = File(exists=True, desc="SD over windows of Fisher z (dFC variability)")
    dfcmean = File(exists=True, desc="mean over windows of Fisher z")
    fc = File(exists=True, desc="static (whole-run) Fisher z")
    windows = File(desc="4D window maps (when save_windows)")
    dfcexcess = File(
        desc="dFC SD minus the stationary null's mean SD, in Fisher z units (when null_surrogates)"
    )
    seed_tsv = File(exists=True, desc="seed time series")
    windows_tsv = File(exists=True, desc="per-window table (volumes, coverage, region traces)")
    maps = traits.Dict(
        desc="every map by name; those at the other window lengths as <stat>_<label> (label: win60s)"
    )
    info = traits.Dict(desc="window parameters and counts, for sidecars")


class ComputeDFC(StrokefcInterface):
    """Sliding-window seed correlation maps of one run."""

    input_spec = _DFCInputSpec
    output_spec = _DFCOutputSpec

    def _run_interface(self, runtime):
        mask_img = load_nifti(self.inputs.mask_file)
        results = run_dfc(
            np.load(self.inputs.denoised, mmap_mode="r"),
            pd.read_csv(self.inputs.volumes_tsv, sep="\t")["kept"].to_numpy(bool),
            mask_img,
            load_nifti(self.inputs.seed_mask),
            WindowParams(**self.inputs.window),
            tr=self.inputs.tr,
            high_pass=self.inputs.high_pass,
            out_dir=runtime.cwd,
            regions=_report_regions(self.inputs.lesion_side, mask_img),
            censored_values=(
                np.load(self.inputs.censored_values) if self.inputs.censored_values is not None else None
            ),
            n_threads=self.inputs.n_threads,
        )
        self._results.update(results)
        return runtime
