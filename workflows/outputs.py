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
DFC_OUTPUTS = (
    "dfcsd",
    "dfcmean",
    "fc",
    "windows",
    "dfcexcess",
    "seed_mask",
    "seed_tsv",
    "windows_tsv",
    "maps",
)


def map_output(maps: dict, meta: dict, stat: str, label: str) -> tuple:
    """The ``stat`` map at another window length (``label``: ``win60s``; ``''``: the default one) and its
    sidecar: the run's (or the subject's), with that window length's record (window counts, its
    stationary null) in place of the default's. The sink writes the map's Description.

    A Nipype Function node runs it (nothing imported).
    """
    if not label:
        return maps[stat], {k: v for k, v in meta.items() if k != "Description"}
    other = dict(meta.get("OtherTimescales", {}).get(label, {}))
    warnings = list(meta.get("Warnings", []))
    warnings += [w for w in other.pop("Warnings", []) if w not in warnings]
    dropped = ("OtherTimescales", "StationaryNull", "Warnings", "Description")
    sidecar = {k: v for k, v in meta.items() if k not in dropped}
    sidecar.update(other)
    if warnings:
        sidecar["Warnings"] = warnings
    return maps[f"{stat}_{label}"], sidecar


def _add_map_sinks(
    wf: pe.Workflow,
    labels: Sequence[str],
    stats: Sequence[str],
    subject: bool = False,
    **sink_args: Any,
) -> None:
    """A sink per ``stat`` map at each window length of ``labels`` (``''``: the default, no ``desc-``;
    ``win60s``: ``desc-win60s``), the maps and sidecar from ``inputnode.maps`` and ``inputnode.meta``,
    named from ``inputnode.source_file`` (run maps) or the ``source_file`` in ``sink_args`` (subject)."""
    inputnode = wf.get_node("inputnode")
    for label in labels:
        for stat in stats:
            suffix = f"_{label}" if label else ""
            pick = pe.Node(
                niu.Function(
                    function=map_output,
                    input_names=["maps", "meta", "stat", "label"],
                    output_names=["in_file", "meta"],
                ),
                name=f"pick_{stat}{suffix}",
                run_without_submitting=True,
            )
            pick.inputs.stat, pick.inputs.label = stat, label
            what = MAP_STATS[stat]
            ds = pe.Node(
                DerivativesDataSink(
                    seed="ipsiM1",
                    stat=stat,
                    suffix="boldmap",
                    compress=True,
                    Description=(
                        f"Subject-level mean of the run maps weighted by their valid windows: {what}"
                        if subject
                        else what
                    ),
                    Units="Fisher z",
                    **({"desc": label} if label else {}),
                    **sink_args,
                ),
                name=f"ds_{'subject_' if subject else ''}{stat}{suffix}",
                run_without_submitting=True,
            )
            wf.connect(
                [
                    (inputnode, pick, [("maps", "maps"), ("meta", "meta")]),
                    (pick, ds, [("in_file", "in_file"), ("meta", "meta_dict")]),
                ]
            )
            if not subject:
                wf.connect(inputnode, "source_file", ds, "source_file")


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
    *,
    output_dir: str | Path,
    save_windows: bool,
    null: bool,
    timescales: Sequence[str] = (),
    name: str = "ds_dfc_wf",
) -> pe.Workflow:
    """The dFC maps (``stat-<stat>_boldmap``: dfcsd, dfcmean, fc, [windows], [dfcexcess]), the seed mask,
    and the seed and window tables of one run; with ``timescales`` (labels, ``win60s``) the dfcsd,
    dfcmean [and dfcexcess] maps at each other window length (``desc-<label>_stat-<stat>_boldmap``).

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
    _add_map_sinks(
        wf,
        timescales,
        ["dfcsd", "dfcmean"] + (["dfcexcess"] if null else []),
        base_directory=outdir,
        dismiss_entities=["desc"],
    )
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
    *,
    output_dir: str | Path,
    source_files: Sequence[str],
    dismiss: Sequence[str],
    name: str,
    stats: Sequence[str] = (),
    timescales: Sequence[str] = (),
) -> pe.Workflow:
    """The maps of several runs (one session, or the subject): the variability map, and the other
    ``stats`` (dfcmean, fc, dfcexcess) and the maps at the other window lengths (``timescales``).

    Inputs: ``in_file`` (dfcsd), ``meta``, ``maps`` (AggregateRuns' ``out_maps``).
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file", "meta", "maps"]), name="inputnode")
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
    sink_args = {
        "base_directory": str(output_dir),
        "source_file": list(source_files),
        "dismiss_entities": list(dismiss),
    }
    _add_map_sinks(wf, [""], [s for s in stats if s != "dfcsd"], subject=True, **sink_args)
    _add_map_sinks(wf, timescales, [s for s in stats if s != "fc"] or ["dfcsd"], subject=True, **sink_args)
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
