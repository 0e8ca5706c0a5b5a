"""Participant level: fMRIPrep derivatives -> ipsilesional-M1 dFC maps (and a prediction), as Nipype graphs."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows.interfaces.bids import DerivativesDataSink
from workflows.interfaces.denoise import DenoiseBold
from workflows.interfaces.dfc import ComputeDFC
from workflows.interfaces.metadata import MergeMetadata
from workflows.interfaces.seeds import MakeSeed

#: stat- entity of each map, with its description for the sidecar.
MAP_STATS = {
    "dfcsd": "SD over sliding windows of the Fisher-z seed correlation (dFC variability)",
    "dfcmean": "Mean over sliding windows of the Fisher-z seed correlation",
    "fc": "Static (whole-run) Fisher-z seed correlation",
}


def init_dfc_wf(*, run, config, lesion_side, static_meta, lesion_mask=None, name=None):
    """Denoise one BOLD run, build the seed, compute and write its dFC maps.

    Workflow graph::

        inputnode -> denoise -> seed -> dfc -> metadata -> ds_* (DerivativesDataSink)

    Parameters
    ----------
    run : bids_app.queries.RunInputs
        The run's fMRIPrep files and entities.
    config : bids_app.config.RunConfig
        Run options.
    lesion_side : {'L', 'R'}
    static_meta : dict
        Sidecar fields known before running (lesion side and its source, software versions).
    lesion_mask : path, optional
        Lesion mask in template space; lesioned voxels leave the seed.

    Inputs
    ------
    bold_file, mask_file, confounds_file
        fMRIPrep outputs of the run.

    Outputs
    -------
    dfcsd, dfcmean, fc
        The run's maps (in the working directory).
    n_windows
        Valid windows (weights of the subject-level mean).
    meta, warnings, seed_mask, denoised, volumes_tsv, windows_tsv, seed_tsv, mask_file
        For the subject level and the report.
    """
    wf = pe.Workflow(name=name or f"dfc_{_safe(run.label)}_wf")
    inputnode = pe.Node(niu.IdentityInterface(fields=["bold_file", "mask_file", "confounds_file"]),
                        name="inputnode")
    inputnode.inputs.bold_file = str(run.bold)
    inputnode.inputs.mask_file = str(run.mask)
    inputnode.inputs.confounds_file = str(run.confounds)
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "dfcsd", "dfcmean", "fc", "meta", "warnings", "seed_mask", "denoised", "volumes_tsv",
        "windows_tsv", "seed_tsv", "mask_file", "dfc_info"]), name="outputnode")

    denoise = pe.Node(DenoiseBold(
        tr=run.tr, strategy=config.denoise, high_pass=config.high_pass, low_pass=config.low_pass,
        smoothing_fwhm=config.smoothing, fd_thresh=config.fd_thresh,
        std_dvars_thresh=config.std_dvars_thresh, n_compcor=config.n_compcor,
        dummy_scans=config.dummy_scans), name="denoise", mem_gb=2.0)
    seed = pe.Node(MakeSeed(
        lesion_side=lesion_side, seed_radius=config.seed_radius, atlas=config.seed_atlas,
        seed_mask=str(config.seed_mask) if config.seed_mask else None,
        seed_coords=tuple(config.seed_coords) if config.seed_coords else None,
        lesion_mask=str(lesion_mask) if lesion_mask else None), name="seed")
    dfc = pe.Node(ComputeDFC(
        lesion_side=lesion_side, tr=run.tr, window_length=str(config.window_length),
        window_step=config.window_step, window_shape=config.window_shape,
        min_coverage=config.min_window_coverage, high_pass=config.high_pass,
        save_windows=config.save_windows), name="dfc", mem_gb=1.5)
    sources = [_bids_uri(run.bold, config.fmriprep_dir), _bids_uri(run.mask, config.fmriprep_dir),
               _bids_uri(run.confounds, config.fmriprep_dir)]
    metadata = pe.Node(MergeMetadata(static={**static_meta, "Sources": sources,
                                             "RepetitionTime": run.tr}),
                       name="metadata", run_without_submitting=True)

    wf.connect([
        (inputnode, denoise, [("bold_file", "bold_file"), ("mask_file", "mask_file"),
                              ("confounds_file", "confounds_file")]),
        (denoise, seed, [("mask_file", "mask_file")]),
        (denoise, dfc, [("denoised", "denoised"), ("volumes_tsv", "volumes_tsv"),
                        ("mask_file", "mask_file")]),
        (seed, dfc, [("seed_mask", "seed_mask")]),
        (denoise, metadata, [("info", "denoise_info")]),
        (seed, metadata, [("info", "seed_info")]),
        (dfc, metadata, [("info", "dfc_info")]),
        (dfc, outputnode, [("dfcsd", "dfcsd"), ("dfcmean", "dfcmean"), ("fc", "fc"),
                           ("windows_tsv", "windows_tsv"), ("seed_tsv", "seed_tsv"),
                           ("info", "dfc_info")]),
        (denoise, outputnode, [("denoised", "denoised"), ("volumes_tsv", "volumes_tsv"),
                               ("mask_file", "mask_file")]),
        (seed, outputnode, [("seed_mask", "seed_mask")]),
        (metadata, outputnode, [("meta", "meta"), ("warnings", "warnings")]),
    ])

    source = str(run.bold)
    outdir = str(config.output_dir)
    _connect_reportlets(wf, run=run, config=config, lesion_mask=lesion_mask, denoise=denoise,
                        seed=seed, dfc=dfc)
    maps = ["dfcsd", "dfcmean", "fc"] + (["windows"] if config.save_windows else [])
    for stat in maps:
        ds = pe.Node(DerivativesDataSink(
            base_directory=outdir, source_file=source, seed="ipsiM1", stat=stat,
            suffix="boldmap", dismiss_entities=["desc"], compress=True,
            Description=MAP_STATS.get(stat, "Fisher-z seed correlation of every valid window (4D)"),
            Units="Fisher z"), name=f"ds_{stat}", run_without_submitting=True)
        wf.connect([(dfc, ds, [(stat, "in_file")]), (metadata, ds, [("meta", "meta_dict")])])
    ds_seed = pe.Node(DerivativesDataSink(
        base_directory=outdir, source_file=source, desc="ipsiM1", suffix="mask", compress=True,
        Type="ROI", Description="Ipsilesional primary motor cortex seed"), name="ds_seed_mask",
        run_without_submitting=True)
    ds_seed_ts = pe.Node(DerivativesDataSink(
        base_directory=outdir, source_file=source, seed="ipsiM1", desc="seed", suffix="timeseries",
        dismiss_entities=["space", "res"],
        Description="Mean denoised signal of the seed; kept = 0 marks censored volumes"),
        name="ds_seed_tsv", run_without_submitting=True)
    ds_windows_ts = pe.Node(DerivativesDataSink(
        base_directory=outdir, source_file=source, seed="ipsiM1", desc="windows", suffix="timeseries",
        dismiss_entities=["space", "res"],
        Description="One row per sliding window: volumes, coverage, validity and the Fisher-z "
                    "seed correlation with report regions"), name="ds_windows_tsv",
        run_without_submitting=True)
    wf.connect([
        (seed, ds_seed, [("seed_mask", "in_file")]), (metadata, ds_seed, [("meta", "meta_dict")]),
        (dfc, ds_seed_ts, [("seed_tsv", "in_file")]),
        (dfc, ds_windows_ts, [("windows_tsv", "in_file")]),
    ])
    return wf


def _connect_reportlets(wf, *, run, config, lesion_mask, denoise, seed, dfc):
    """Figures of the run, drawn during the run and written to ``sub-<label>/figures/``."""
    from workflows.interfaces.reportlets import RunReportlets

    figures = pe.Node(RunReportlets(
        bold_file=str(run.bold), boldref=str(run.boldref) if run.boldref else None, tr=run.tr,
        fd_thresh=config.fd_thresh, lesion_mask=str(lesion_mask) if lesion_mask else None),
        name="reportlets", mem_gb=1.0)
    wf.connect([
        (denoise, figures, [("mask_file", "mask_file"), ("denoised", "denoised"),
                            ("volumes_tsv", "volumes_tsv"), ("info", "denoise_info")]),
        (seed, figures, [("seed_mask", "seed_mask")]),
        (dfc, figures, [("seed_tsv", "seed_tsv"), ("windows_tsv", "windows_tsv"),
                        ("dfcsd", "dfcsd"), ("dfcmean", "dfcmean"), ("fc", "fc")]),
    ])
    for fig in ("seed", "confounds", "carpet", "seedts", "maps"):
        ds = pe.Node(DerivativesDataSink(
            base_directory=str(config.output_dir), source_file=str(run.bold), desc=fig,
            datatype="figures", suffix="bold", dismiss_entities=["space", "res"]),
            name=f"ds_report_{fig}", run_without_submitting=True)
        wf.connect(figures, fig, ds, "in_file")


def init_participant_wf(*, subject, runs, config, lesion_side, lesion_source, label=None,
                        lesion_mask=None, name=None):
    """All runs of one participant, the subject-level map, and the prediction when a model is given.

    Parameters
    ----------
    subject : str
        Label without ``sub-``.
    runs : list of bids_app.queries.RunInputs
    config : bids_app.config.RunConfig
    lesion_side : {'L', 'R'}
    lesion_source : str
        Where the side came from ('participants.tsv', 'lesion mask', ...).
    label : float, optional
        UL-FMA score when known (recorded, never used to process).
    lesion_mask : path, optional

    Outputs
    -------
    dfcsd
        The subject-level variability map (the single run's, or the window-weighted mean).
    """
    from workflows.interfaces.subject import AggregateRuns
    from workflows.metadata import software_versions

    wf = pe.Workflow(name=name or f"sub_{subject}_wf")
    outputnode = pe.Node(niu.IdentityInterface(fields=["dfcsd", "prediction"]), name="outputnode")
    static = {"LesionHemisphere": lesion_side, "LesionHemisphereSource": lesion_source,
              "SeedName": "ipsiM1", "Space": runs[0].entities.get("space"),
              # BIDS defines SoftwareVersions as a string
              "SoftwareVersions": "; ".join(f"{k} {v}" for k, v in software_versions().items())}
    run_wfs = [init_dfc_wf(run=run, config=config, lesion_side=lesion_side, static_meta=static,
                           lesion_mask=lesion_mask) for run in runs]
    wf.add_nodes(run_wfs)

    if len(runs) == 1:
        wf.connect(run_wfs[0], "outputnode.dfcsd", outputnode, "dfcsd")
        subject_map_src = run_wfs[0]
        subject_map_field = "outputnode.dfcsd"
    else:
        join = pe.Node(niu.Merge(len(runs)), name="merge_dfcsd", run_without_submitting=True)
        join_info = pe.Node(niu.Merge(len(runs)), name="merge_info", run_without_submitting=True)
        join_meta = pe.Node(niu.Merge(len(runs)), name="merge_meta", run_without_submitting=True)
        aggregate = pe.Node(AggregateRuns(static=static), name="aggregate")
        for i, rwf in enumerate(run_wfs, start=1):
            wf.connect([(rwf, join, [("outputnode.dfcsd", f"in{i}")]),
                        (rwf, join_info, [("outputnode.dfc_info", f"in{i}")]),
                        (rwf, join_meta, [("outputnode.meta", f"in{i}")])])
        wf.connect([(join, aggregate, [("out", "in_files")]),
                    (join_info, aggregate, [("out", "dfc_infos")]),
                    (join_meta, aggregate, [("out", "run_metas")]),
                    (aggregate, outputnode, [("out_file", "dfcsd")])])
        ds_subject = pe.Node(DerivativesDataSink(
            base_directory=str(config.output_dir), source_file=[str(r.bold) for r in runs],
            seed="ipsiM1", stat="dfcsd", suffix="boldmap", dismiss_entities=["desc", "session"],
            compress=True, Units="Fisher z"), name="ds_subject_dfcsd", run_without_submitting=True)
        wf.connect([(aggregate, ds_subject, [("out_file", "in_file"), ("meta", "meta_dict")])])
        subject_map_src, subject_map_field = aggregate, "out_file"

    if config.model:
        from workflows.interfaces.predict import PredictSubject

        predict = pe.Node(PredictSubject(model_dir=str(config.model), lesion_side=lesion_side,
                                         subject=subject, space=static["Space"],
                                         dfc_params=_dfc_params(config)), name="predict")
        ds_pred = pe.Node(DerivativesDataSink(
            base_directory=str(config.output_dir), source_file=[str(r.bold) for r in runs],
            desc="ulfma", suffix="prediction", dismiss_entities=["space", "res", "desc", "session"]),
            name="ds_prediction", run_without_submitting=True)
        wf.connect([(subject_map_src, predict, [(subject_map_field, "in_file")]),
                    (run_wfs[0], predict, [("outputnode.meta", "meta")]),
                    (predict, ds_pred, [("out_file", "in_file")]),
                    (predict, outputnode, [("out_file", "prediction")])])
    return wf


def _dfc_params(config) -> dict:
    """dFC and denoising parameters a model must have been trained with (checked at prediction)."""
    return {"window_length": str(config.window_length), "window_step": config.window_step,
            "window_shape": config.window_shape, "denoise": config.denoise,
            "high_pass": config.high_pass, "low_pass": config.low_pass,
            "smoothing": config.smoothing}


def _bids_uri(path, fmriprep_dir) -> str:
    """``bids:fmriprep:<relative path>`` (the link is declared in dataset_description.json)."""
    try:
        return f"bids:fmriprep:{Path(path).resolve().relative_to(Path(fmriprep_dir).resolve())}"
    except ValueError:
        return Path(path).resolve().as_uri()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
