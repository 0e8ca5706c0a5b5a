"""Nipype interface over :func:`workflows.dfc.seed_dfc_images`."""

import os

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from workflows.dfc import seed_dfc_images, window_warnings
from workflows.dfc_null import stationary_null
from workflows.interfaces.base import StrokefcInterface
from workflows.params import parse_duration
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
    volumes_tsv = File(exists=True, mandatory=True, desc="per-volume kept flags")
    mask_file = File(exists=True, mandatory=True, desc="brain mask defining the voxel columns")
    seed_mask = File(exists=True, mandatory=True, desc="seed mask on the same grid")
    lesion_side = traits.Enum("L", "R", mandatory=True, desc="lesion hemisphere")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    # the values come from WindowParams (workflows.dfc), where their defaults live
    window_length = traits.Str(mandatory=True, desc="window length ('60s' or '30vol')")
    window_step = traits.Int(mandatory=True, desc="window step (volumes)")
    window_shape = traits.Str(mandatory=True, desc="window taper (workflows.dfc.WINDOW_SHAPES)")
    window_estimator = traits.Str(
        mandatory=True, desc="correlation estimator (workflows.dfc.WINDOW_ESTIMATORS)"
    )
    min_coverage = traits.Float(mandatory=True, desc="minimum kept fraction per window")
    high_pass = traits.Either(
        None,
        traits.Float,
        mandatory=True,
        desc="high-pass cutoff of the denoising (Hz), for the window-length warning",
    )
    save_windows = traits.Bool(mandatory=True, desc="also write the 4D window maps")
    n_surrogates = traits.Int(
        mandatory=True, desc="phase-randomised surrogates of the stationary null (0 = off)"
    )
    n_threads = traits.Int(
        1, usedefault=True, desc="threads of the stationary null (results do not depend on it)"
    )


class _DFCOutputSpec(TraitedSpec):
    dfcsd = File(exists=True, desc="SD over windows of Fisher z (dFC variability)")
    dfcmean = File(exists=True, desc="mean over windows of Fisher z")
    fc = File(exists=True, desc="static (whole-run) Fisher z")
    windows = File(desc="4D window maps (when save_windows)")
    dfcexcess = File(desc="excess dFC SD over the stationary null, in surrogate SD units (when n_surrogates)")
    seed_tsv = File(exists=True, desc="seed time series")
    windows_tsv = File(exists=True, desc="per-window table (volumes, coverage, region traces)")
    info = traits.Dict(desc="window parameters and counts, for sidecars")


class ComputeDFC(StrokefcInterface):
    """Sliding-window seed correlation maps of one run."""

    input_spec = _DFCInputSpec
    output_spec = _DFCOutputSpec

    def _run_interface(self, runtime):
        tr = self.inputs.tr
        length = parse_duration(self.inputs.window_length, tr)
        kept = pd.read_csv(self.inputs.volumes_tsv, sep="\t")["kept"].to_numpy(bool)
        mask_img = load_nifti(self.inputs.mask_file)
        data = np.load(self.inputs.denoised, mmap_mode="r")
        out = seed_dfc_images(
            data,
            kept,
            mask_img,
            load_nifti(self.inputs.seed_mask),
            length=length,
            step=self.inputs.window_step,
            shape=self.inputs.window_shape,
            min_coverage=self.inputs.min_coverage,
            estimator=self.inputs.window_estimator,
            keep_windows=self.inputs.save_windows,
            regions=_report_regions(self.inputs.lesion_side, mask_img),
        )
        for key, name in (("sd", "dfcsd"), ("mean", "dfcmean"), ("static", "fc"), ("windows", "windows")):
            if key in out:
                path = os.path.join(runtime.cwd, f"{name}.nii.gz")
                out[key].to_filename(path)
                self._results[name] = path
        seed_tsv = os.path.join(runtime.cwd, "seed_timeseries.tsv")
        pd.DataFrame({"seed": out["seed"].round(6), "kept": kept.astype(int)}).to_csv(
            seed_tsv, sep="\t", index=False
        )
        windows_tsv = os.path.join(runtime.cwd, "windows.tsv")
        table = out["table"].copy()
        table.insert(2, "onset_s", (table["start_volume"] * tr).round(3))
        table.to_csv(windows_tsv, sep="\t", index=False, na_rep="n/a")
        plan = out["plan"]
        null_info = {}
        if self.inputs.n_surrogates > 0:
            mask = np.asarray(mask_img.dataobj) > 0
            null = stationary_null(
                out["seed"],
                data,
                length=length,
                step=self.inputs.window_step,
                shape=self.inputs.window_shape,
                kept=kept,
                min_coverage=self.inputs.min_coverage,
                estimator=self.inputs.window_estimator,
                static=np.asarray(out["static"].dataobj)[mask],
                n_surrogates=self.inputs.n_surrogates,
                n_jobs=self.inputs.n_threads,
            )
            vol = np.zeros(mask.shape, np.float32)
            vol[mask] = null.excess
            excess_img = nb.Nifti1Image(vol, mask_img.affine)
            excess_img.header.set_xyzt_units("mm")
            path = os.path.join(runtime.cwd, "dfcexcess.nii.gz")
            excess_img.to_filename(path)
            self._results["dfcexcess"] = path
            null_info = {
                "StationaryNull": {
                    "Method": "multivariate phase-randomised surrogates (same phase shift for the seed and "
                    "every voxel: spectra and static FC kept, dynamics removed), same windows",
                    "Surrogates": int(self.inputs.n_surrogates),
                    "dfcexcess": "(observed SD - surrogate mean SD) / surrogate SD",
                    "TopTargets": f"{int(null.top_targets.sum())} voxels with the largest |static z|",
                    "TopTargetsMeanExcess": round(null.top_excess, 4),
                    "TopTargetsPValue": round(null.top_p_value, 4),
                }
            }
        self._results.update(
            seed_tsv=seed_tsv,
            windows_tsv=windows_tsv,
            info={
                "WindowLength_vol": length,
                "WindowLength_s": length * tr,
                "WindowStep_vol": self.inputs.window_step,
                "WindowShape": self.inputs.window_shape,
                "MinWindowCoverage": self.inputs.min_coverage,
                "WindowCoverage": "fraction of the window's taper weight on kept volumes",
                "WindowsTotal": int(plan.starts.size),
                "WindowsKept": plan.n_valid,
                "WindowsDropped": int(plan.starts.size - plan.n_valid),
                "WindowEstimator": self.inputs.window_estimator,
                "Correlation": (
                    "Pearson (taper-weighted), Fisher z (arctanh)"
                    if self.inputs.window_estimator == "weighted"
                    else "Pearson of the tapered series (series x taper, then r), Fisher z (arctanh)"
                ),
                "SummaryOverWindows": {"dfcsd": "SD (ddof=1)", "dfcmean": "mean"},
                "Warnings": window_warnings(length, tr, self.inputs.high_pass),
                **null_info,
            },
        )
        return runtime
