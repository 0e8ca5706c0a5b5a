"""Nipype interface over :func:`workflows.denoise.denoise_run`."""

import json
import os

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, isdefined, traits

from workflows.denoise import carpet_sample, denoise_run
from workflows.interfaces.base import StrokefcInterface
from workflows.params import DenoiseParams, QCParams
from workflows.qc import run_lag_qc
from workflows.utils.images import load_nifti


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="fMRIPrep preprocessed BOLD (4D)")
    mask_file = File(exists=True, mandatory=True, desc="fMRIPrep brain mask on the BOLD grid")
    confounds_file = File(exists=True, mandatory=True, desc="fMRIPrep confounds TSV")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    denoise = traits.Dict(mandatory=True, desc="DenoiseParams as a dict (workflows.params.DenoiseParams)")
    lesion_mask = traits.Either(
        None, File(exists=True), default=None, usedefault=True, desc="lesion on the BOLD grid (uint8)"
    )
    lesion_side = traits.Enum("L", "R", mandatory=True, desc="lesion hemisphere (lag QC)")
    qc = traits.Dict(mandatory=True, desc="QCParams as a dict (lag search and flag threshold)")
    lesion_confounds = traits.Either(
        None, File(exists=True), default=None, usedefault=True, desc="fMRIStroke's desc-confounds2 table"
    )
    external_lag_map = traits.Either(
        None, File(exists=True), default=None, usedefault=True, desc="fMRIStroke's desc-maxtime_map (s)"
    )
    exclude_mask = traits.Either(
        None,
        File(exists=True),
        default=None,
        usedefault=True,
        desc="voxels leaving the analysis mask (the dilated lesion), on the BOLD grid",
    )


class _DenoiseOutputSpec(TraitedSpec):
    denoised = File(exists=True, desc="denoised series (T, V) float32 .npy, zeros where censored")
    censored_values = File(
        exists=True, desc="the cleaned series at the censored volumes (censored, V) .npy, for the null"
    )
    volumes_tsv = File(exists=True, desc="per-volume table: kept flag and framewise displacement")
    mask_file = File(exists=True, desc="brain mask actually used (non-finite voxels removed)")
    info = traits.Dict(desc="denoising parameters and counts, for sidecars")
    design_tsv = File(exists=True, desc="the confound regressors actually used (after dummy scans)")
    lag_map = File(exists=True, desc="hemodynamic lag of each voxel (s), see workflows.qc")
    tsnr_file = File(exists=True, desc="temporal SNR before smoothing and denoising (3D)")
    carpet_bold = File(exists=True, desc="raw BOLD (T, n) .npy of the carpet plot's voxel sample")
    carpet_denoised = File(
        exists=True, desc="denoised series (T, n) .npy of the same voxel sample (the report reads no more)"
    )
    lag_info = traits.Dict(desc="lag QC record, for sidecars and the report")


class DenoiseBold(StrokefcInterface):
    """Regress confounds and band-pass together; drop dummy scans; flag censored volumes."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        params = DenoiseParams(**self.inputs.denoise)
        run = denoise_run(
            self.inputs.bold_file,
            self.inputs.mask_file,
            self.inputs.tr,
            params,
            confounds_file=self.inputs.confounds_file,
            lesion_mask=_mask_or_none(self.inputs.lesion_mask),
            exclude_mask=_mask_or_none(self.inputs.exclude_mask),
            keep_bandpassed=self.inputs.external_lag_map is None,
            lesion_confounds=self.inputs.lesion_confounds,
        )
        # the lag QC needs the series before confound regression, which only this node holds in memory
        external = self.inputs.external_lag_map
        lag_img, lag_info = run_lag_qc(
            run.bandpassed,
            run.kept,
            run.mask_img,
            self.inputs.lesion_side,
            self.inputs.tr,
            QCParams(**self.inputs.qc),
            external=load_nifti(external) if external else None,
        )
        run.bandpassed = None
        lag_path = os.path.join(runtime.cwd, "lag.nii.gz")
        lag_img.to_filename(lag_path)
        tsnr_path = os.path.join(runtime.cwd, "tsnr.nii.gz")
        nb.Nifti1Image(run.tsnr, run.mask_img.affine).to_filename(tsnr_path)
        carpet = os.path.join(runtime.cwd, "carpet_bold.npy")
        np.save(carpet, run.carpet if run.carpet is not None else np.zeros((0, 0), np.float32))
        out = os.path.join(runtime.cwd, "denoised.npy")
        np.save(out, run.data)
        # the carpet's columns of the denoised series: the report's node neither hashes nor reads the run
        carpet_denoised = os.path.join(runtime.cwd, "carpet_denoised.npy")
        np.save(carpet_denoised, run.data[:, carpet_sample(run.data.shape[1])])
        censored = os.path.join(runtime.cwd, "censored_values.npy")
        fill = run.censored_values
        np.save(censored, fill if fill is not None else np.zeros((0, run.data.shape[1]), np.float32))
        vols = os.path.join(runtime.cwd, "volumes.tsv")
        pd.DataFrame({"kept": run.kept.astype(int), "framewise_displacement": run.fd}).to_csv(
            vols, sep="\t", index_label="volume", na_rep="n/a"
        )
        mask = os.path.join(runtime.cwd, "brain_mask.nii.gz")
        run.mask_img.to_filename(mask)
        design = os.path.join(runtime.cwd, "design.tsv")
        if run.design is not None:
            run.design.round(8).to_csv(design, sep="\t", index=False)
        self._results.update(
            tsnr_file=tsnr_path,
            carpet_bold=carpet,
            carpet_denoised=carpet_denoised,
            lag_map=lag_path,
            lag_info=json.loads(json.dumps(lag_info, default=float)),
            design_tsv=design,
            denoised=out,
            censored_values=censored,
            volumes_tsv=vols,
            mask_file=mask,
            info=json.loads(json.dumps(run.info, default=float)),
        )
        return runtime


def _mask_or_none(path):
    """A mask file as a bool array, or None when not given."""
    if path is None or not isdefined(path):
        return None
    return np.asanyarray(load_nifti(path).dataobj) > 0
