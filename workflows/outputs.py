"""Writing the participant-level derivatives: small keyword-only ``init_ds_*_wf`` builders, as fMRIPrep's.

Each builder takes the output dataset and what decides its file set, and returns a workflow whose
``inputnode`` takes ``source_file`` (the BOLD run, or the runs, that name every output) and the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows.interfaces.bids import DerivativesDataSink
from workflows.interfaces.dfc import REPORT_REGIONS
from workflows.interfaces.metadata import TSVSidecar
from workflows.interfaces.reportlets import FIGURES
from workflows.params import LesionParams
from workflows.qc import QC_SIDECAR
from workflows.seeds import atlas_record

#: stat- entity of each map, with its description for the sidecar.
MAP_STATS = {
    "dfcsd": "SD over sliding windows of the Fisher-z seed correlation (dFC variability)",
    "dfcmean": "Mean over sliding windows of the Fisher-z seed correlation",
    "fc": "Static (whole-run) Fisher-z seed correlation",
    "dfcexcess": "Excess dFC variability over a stationary null (phase-randomised surrogates keeping the "
    "spectra and static FC, made from the continuous cleaned series): observed SD - surrogate mean SD "
    "(Fisher z units)",
}
WINDOWS_DESCRIPTION = "Fisher-z seed correlation of every valid window (4D)"
#: Entities of a run's QC table (also named by hand for excluded runs: ``bids_app.exclusions``).
QC_TABLE: dict[str, Any] = {"suffix": "qc", "extension": ".tsv", "dismiss_entities": ["space", "res", "desc"]}
#: Fields of :func:`init_ds_dfc_wf`'s inputnode.
DFC_OUTPUTS = ("dfcsd", "dfcmean", "fc", "windows", "dfcexcess", "seed_mask", "seed_tsv", "windows_tsv")


def _tsv_sink(
    wf: pe.Workflow,
    name: str,
    field: str,
    description: str,
    extra: dict | None = None,
    **sink_args: Any,
) -> pe.Node:
    """A sink for the TSV ``inputnode.<field>`` whose JSON sidecar describes every column
    (``workflows.columns``), from its header, plus the ``extra`` entries.

    The column descriptions go through ``meta_dict``: as sink keywords a column named like an entity
    (``run``) would become part of the file name.
    """
    inputnode = wf.get_node("inputnode")
    sidecar = pe.Node(
        TSVSidecar(description=description, extra=extra or {}),
        name=f"{name}_sidecar",
        run_without_submitting=True,
    )
    sink = pe.Node(DerivativesDataSink(**sink_args), name=f"ds_{name}", run_without_submitting=True)
    wf.connect(
        [
            (inputnode, sidecar, [(field, "in_file")]),
            (inputnode, sink, [(field, "in_file"), ("source_file", "source_file")]),
            (sidecar, sink, [("meta", "meta_dict")]),
        ]
    )
    return sink


def init_ds_dfc_wf(
    *, output_dir: str | Path, save_windows: bool, null: bool, name: str = "ds_dfc_wf"
) -> pe.Workflow:
    """The dFC maps (``stat-<stat>_boldmap``: dfcsd, dfcmean, fc, [windows], [dfcexcess]), the seed mask,
    and the seed and window tables of one run.

    Inputs: ``source_file``, ``meta`` (the maps' and seed mask's sidecar), and :data:`DFC_OUTPUTS`.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["source_file", "meta", *DFC_OUTPUTS]), name="inputnode")
    outdir = str(output_dir)
    maps = (
        ["dfcsd", "dfcmean", "fc"] + (["windows"] if save_windows else []) + (["dfcexcess"] if null else [])
    )
    for stat in maps:
        ds = pe.Node(
            DerivativesDataSink(
                base_directory=outdir,
                seed="ipsiM1",
                stat=stat,
                suffix="boldmap",
                dismiss_entities=["desc"],
                compress=True,
                Description=MAP_STATS.get(stat, WINDOWS_DESCRIPTION),
                Units="Fisher z",
            ),
            name=f"ds_{stat}",
            run_without_submitting=True,
        )
        wf.connect(inputnode, stat, ds, "in_file")
        wf.connect([(inputnode, ds, [("meta", "meta_dict"), ("source_file", "source_file")])])
    ds_seed = pe.Node(
        DerivativesDataSink(
            base_directory=outdir,
            desc="ipsiM1",
            suffix="mask",
            compress=True,
            Type="ROI",
            Description="Ipsilesional primary motor cortex seed",
        ),
        name="ds_seed_mask",
        run_without_submitting=True,
    )
    wf.connect(
        [
            (
                inputnode,
                ds_seed,
                [("seed_mask", "in_file"), ("meta", "meta_dict"), ("source_file", "source_file")],
            )
        ]
    )
    _tsv_sink(
        wf,
        "seed_tsv",
        "seed_tsv",
        "Mean denoised signal of the seed; kept = 0 marks censored volumes",
        base_directory=outdir,
        seed="ipsiM1",
        desc="seed",
        suffix="timeseries",
        dismiss_entities=["space", "res"],
    )
    _tsv_sink(
        wf,
        "windows_tsv",
        "windows_tsv",
        "One row per sliding window: volumes, coverage, validity and the Fisher-z seed correlation "
        "with report regions",
        extra={
            "RegionAtlases": {
                name: {"Region": region, **atlas_record(atlas)}
                for name, (atlas, region) in REPORT_REGIONS.items()
            }
        },
        base_directory=outdir,
        seed="ipsiM1",
        desc="windows",
        suffix="timeseries",
        dismiss_entities=["space", "res"],
    )
    return wf


def init_ds_qc_wf(*, output_dir: str | Path, name: str = "ds_qc_wf") -> pe.Workflow:
    """The run's QC table, its hemodynamic-lag map and the confound regressors as regressed.

    Inputs: ``source_file``, ``qc_tsv``, ``lag_map``, ``design_tsv``.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["source_file", "qc_tsv", "lag_map", "design_tsv"]), name="inputnode"
    )
    outdir = str(output_dir)
    ds_lag = pe.Node(
        DerivativesDataSink(
            base_directory=outdir,
            stat="lag",
            suffix="boldmap",
            dismiss_entities=["desc"],
            compress=True,
            Description="Hemodynamic lag of each voxel behind the mean signal of the analysis mask (positive "
            "= later), by cross-correlation over +/- the search range with sub-TR peak interpolation",
            Units="s",
        ),
        name="ds_lag",
        run_without_submitting=True,
    )
    wf.connect([(inputnode, ds_lag, [("lag_map", "in_file"), ("source_file", "source_file")])])
    _tsv_sink(wf, "qc", "qc_tsv", QC_SIDECAR["Description"], base_directory=outdir, **QC_TABLE)
    _tsv_sink(
        wf,
        "design_tsv",
        "design_tsv",
        "Confound regressors of the denoising, as regressed (after dummy scans); lesion_* columns are "
        "the lesion's mean signal and principal components (+lesion strategies)",
        base_directory=outdir,
        desc="design",
        suffix="timeseries",
        dismiss_entities=["space", "res"],
    )
    return wf


def init_ds_figures_wf(
    *, output_dir: str | Path, figures: Sequence[str] = FIGURES, name: str = "ds_figures_wf"
) -> pe.Workflow:
    """The run's report figures (``figures/..._desc-<figure>_bold.svg``).

    Inputs: ``source_file`` and one field per figure.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["source_file", *figures]), name="inputnode")
    for fig in figures:
        ds = pe.Node(
            DerivativesDataSink(
                base_directory=str(output_dir),
                desc=fig,
                datatype="figures",
                suffix="bold",
                dismiss_entities=["space", "res"],
            ),
            name=f"ds_report_{fig}",
            run_without_submitting=True,
        )
        wf.connect([(inputnode, ds, [(fig, "in_file"), ("source_file", "source_file")])])
    return wf


def init_ds_lesion_wf(
    *,
    output_dir: str | Path,
    source_file: str,
    sources: Sequence[str],
    threshold: float = LesionParams.threshold,
    name: str = "ds_lesion_wf",
) -> pe.Workflow:
    """The lesion mask on the BOLD grid (``anat/..._desc-lesion_mask``). Input: ``lesion_mask``."""
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["lesion_mask"]), name="inputnode")
    ds = pe.Node(
        DerivativesDataSink(
            base_directory=str(output_dir),
            source_file=source_file,
            datatype="anat",
            desc="lesion",
            suffix="mask",
            dismiss_entities=["task", "run", "acquisition"],
            compress=True,
            Type="Lesion",
            Description="The lesion mask used, on the BOLD grid (voxels at least half covered); "
            "dilated by one voxel it leaves every map and the analysis mask",
            Sources=list(sources),
            Threshold=float(threshold),  # mask values >= Threshold are the lesion (LesionParams)
        ),
        name="ds_lesion_mask",
        run_without_submitting=True,
    )
    wf.connect(inputnode, "lesion_mask", ds, "in_file")
    return wf


def init_ds_subject_map_wf(
    *, output_dir: str | Path, source_files: Sequence[str], dismiss: Sequence[str], name: str
) -> pe.Workflow:
    """The variability map of several runs (one session, or the subject). Inputs: ``in_file``, ``meta``."""
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file", "meta"]), name="inputnode")
    ds = pe.Node(
        DerivativesDataSink(
            base_directory=str(output_dir),
            source_file=list(source_files),
            seed="ipsiM1",
            stat="dfcsd",
            suffix="boldmap",
            dismiss_entities=list(dismiss),
            compress=True,
            Units="Fisher z",
        ),
        name="ds_subject_dfcsd",
        run_without_submitting=True,
    )
    wf.connect([(inputnode, ds, [("in_file", "in_file"), ("meta", "meta_dict")])])
    return wf


def init_ds_prediction_wf(
    *, output_dir: str | Path, source_files: Sequence[str], dismiss: Sequence[str], name: str
) -> pe.Workflow:
    """The prediction JSON of one session (or the subject). Input: ``in_file``."""
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    ds = pe.Node(
        DerivativesDataSink(
            base_directory=str(output_dir),
            source_file=list(source_files),
            desc="ulfma",
            suffix="prediction",
            dismiss_entities=["space", "res", *dismiss],
        ),
        name="ds_prediction",
        run_without_submitting=True,
    )
    wf.connect(inputnode, "in_file", ds, "in_file")
    return wf
