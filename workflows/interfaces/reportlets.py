"""Reportlets of one run (SVG figures for the participant report), written during the run."""

import os

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from workflows.interfaces.base import StrokefcInterface
from workflows.utils.images import load_nifti

#: The figures of a run, in report order (``desc-<name>`` of the SVG reportlets).
FIGURES = ("seed", "confounds", "carpet", "seedts", "maps", "dynamics")
#: Fixed colour scales so that maps compare across subjects; stated in the figures.
MAP_VMAX = {
    "dFC SD": 0.5,
    "mean dFC": 1.0,
    "static FC": 1.0,
    "dFC excess over the stationary null": 0.25,
    "hemodynamic lag": 2.0,
}
#: Units of the maps, written beside their scale.
MAP_UNITS = {
    "dFC SD": "SD of Fisher z",
    "mean dFC": "Fisher z",
    "static FC": "Fisher z",
    "dFC excess over the stationary null": "SD of Fisher z",
    "hemodynamic lag": "s",
}


#: Imported by the interface when it runs (matplotlib, nilearn's plotting), not by the process that
#: builds the workflow; a pool of Nipype workers may import them ahead, once, for all its workers.
WORKER_IMPORTS = ("workflows.plotting", "nilearn.plotting")


class _ReportletsInputSpec(BaseInterfaceInputSpec):
    carpet_bold = File(
        exists=True, mandatory=True, desc="raw BOLD of the carpet's voxel sample, (T, n) .npy (DenoiseBold)"
    )
    mask_file = File(exists=True, mandatory=True, desc="brain mask used (outlined in the seed figure)")
    seed_mask = File(exists=True, mandatory=True, desc="seed mask")
    lesion_mask = traits.Either(
        None, File(exists=True), default=None, usedefault=True, desc="lesion mask, drawn when given"
    )
    carpet_denoised = File(
        exists=True,
        mandatory=True,
        desc="denoised series of the carpet's voxel sample, (T, n) .npy (DenoiseBold)",
    )
    volumes_tsv = File(exists=True, mandatory=True, desc="kept flags and FD")
    seed_tsv = File(exists=True, mandatory=True, desc="seed series")
    windows_tsv = File(exists=True, mandatory=True, desc="per-window table with region traces")
    dfcsd = File(exists=True, mandatory=True, desc="dFC SD map")
    dfcmean = File(exists=True, mandatory=True, desc="mean dFC map")
    fc = File(exists=True, mandatory=True, desc="static FC map")
    dfcexcess = traits.Either(
        None, File(exists=True), default=None, usedefault=True, desc="dFC excess map (with a null)"
    )
    lag_map = File(exists=True, mandatory=True, desc="hemodynamic lag map (s)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    denoise_info = traits.Dict(desc="DenoiseBold record (dummy scans; FDThreshold_mm when scrubbing)")


class _ReportletsOutputSpec(TraitedSpec):
    seed = File(exists=True, desc="seed over the reference, three views")
    confounds = File(exists=True, desc="framewise displacement with censored volumes")
    carpet = File(exists=True, desc="carpet plot before/after denoising")
    seedts = File(exists=True, desc="seed series and windowed correlation traces")
    maps = File(exists=True, desc="mosaics of the dFC SD, mean dFC and static FC maps")
    dynamics = File(exists=True, desc="mosaics of the dFC excess (with a null) and lag maps")


class RunReportlets(StrokefcInterface):
    """Draw the six figures of a run."""

    input_spec = _ReportletsInputSpec
    output_spec = _ReportletsOutputSpec

    def _run_interface(self, runtime):
        # imported here (matplotlib, nilearn's plotting): the process that builds the workflow never draws
        from workflows import plotting

        cwd = runtime.cwd
        mask_img = load_nifti(self.inputs.mask_file)
        lesion = load_nifti(self.inputs.lesion_mask) if self.inputs.lesion_mask else None
        seed_img = load_nifti(self.inputs.seed_mask)
        vols = pd.read_csv(self.inputs.volumes_tsv, sep="\t", na_values="n/a")
        self._results["seed"] = plotting.plot_seed_overlay(
            seed_img, mask_img, os.path.join(cwd, "seed.svg"), lesion_mask_img=lesion
        )
        info = self.inputs.denoise_info or {}
        fd = vols["framewise_displacement"].to_numpy(float)  # after the dummy scans (DenoiseBold)
        self._results["confounds"] = plotting.plot_confounds(
            fd,
            ~vols["kept"].to_numpy(bool),
            os.path.join(cwd, "confounds.svg"),
            fd_thresh=info.get("FDThreshold_mm"),  # only scrubbing censors by FD
            dummy=int(info.get("DummyScans", 0)),
        )
        self._results["carpet"] = plotting.plot_carpet(
            np.load(self.inputs.carpet_bold),
            np.load(self.inputs.carpet_denoised),
            mask_img,
            os.path.join(cwd, "carpet.svg"),
            self.inputs.tr,
        )
        table = pd.read_csv(self.inputs.windows_tsv, sep="\t", na_values="n/a")
        traces = {c[2:]: table[c].to_numpy(float) for c in table.columns if c.startswith("z_")}
        seed = pd.read_csv(self.inputs.seed_tsv, sep="\t")["seed"].to_numpy(float)
        self._results["seedts"] = plotting.plot_seed_timeseries(
            seed,
            self.inputs.tr,
            table.assign(kept=table["valid"].astype(bool)),
            traces,
            os.path.join(cwd, "seedts.svg"),
        )
        maps = {
            "dFC SD": load_nifti(self.inputs.dfcsd),
            "mean dFC": load_nifti(self.inputs.dfcmean),
            "static FC": load_nifti(self.inputs.fc),
        }
        self._results["maps"] = plotting.plot_map_mosaics(
            maps,
            os.path.join(cwd, "maps.svg"),
            MAP_VMAX,
            units=MAP_UNITS,
            seed_img=seed_img,
            lesion_mask_img=lesion,
        )
        dynamics = {"hemodynamic lag": load_nifti(self.inputs.lag_map)}
        if self.inputs.dfcexcess:
            dynamics = {"dFC excess over the stationary null": load_nifti(self.inputs.dfcexcess), **dynamics}
        self._results["dynamics"] = plotting.plot_map_mosaics(
            dynamics,
            os.path.join(cwd, "dynamics.svg"),
            MAP_VMAX,
            units=MAP_UNITS,
            seed_img=seed_img,
            lesion_mask_img=lesion,
        )
        return runtime
