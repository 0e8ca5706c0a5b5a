"""Participant level as Nipype graphs: fMRIPrep derivatives -> ipsilesional-M1 dFC maps (and a prediction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from workflows.interfaces.denoise import DenoiseBold
from workflows.interfaces.dfc import ComputeDFC
from workflows.interfaces.lesion import LesionOnGrid
from workflows.interfaces.metadata import MergeMetadata
from workflows.interfaces.predict import PredictSubject
from workflows.interfaces.qc import RunQC
from workflows.interfaces.reportlets import FIGURES, RunReportlets
from workflows.interfaces.seeds import MakeSeed
from workflows.interfaces.subject import AggregateRuns
from workflows.metadata import software_versions
from workflows.methods import (
    describe_denoise,
    describe_null,
    describe_qc,
    describe_seed,
    describe_sessions,
    describe_windows,
)
from workflows.outputs import (
    init_ds_dfc_wf,
    init_ds_figures_wf,
    init_ds_lesion_wf,
    init_ds_prediction_wf,
    init_ds_qc_wf,
    init_ds_subject_map_wf,
)
from workflows.params import DenoiseParams, LesionParams, QCParams, SeedParams, WindowParams, timescale_label
from workflows.utils.bids import RunInputs, bids_uri, safe_name

#: Fields of ``init_dfc_wf``'s inputnode.
RUN_INPUTS = ("bold_file", "mask_file", "confounds_file", "boldref_file")


def init_dfc_wf(
    *,
    tr: float,
    denoise: DenoiseParams,
    seed: SeedParams,
    window: WindowParams,
    lesion_side: str,
    output_dir: str | Path,
    fmriprep_dir: str | Path,
    static_meta: dict,
    has_lesion: bool = False,
    qc: QCParams | None = None,
    run_label: str = "",
    lesion_confounds: str | Path | None = None,
    external_lag_map: str | Path | None = None,
    omp_nthreads: int = 1,
    notes: Sequence[str] = (),
    name: str = "dfc_wf",
) -> Workflow:
    """Denoise one BOLD run, build the seed, compute and write its dFC maps and figures.

    Workflow graph::

        inputnode -> denoise -> seed -> dfc -> metadata -> ds_dfc_wf (maps, seed mask, seed/window tables)
                        |         |      \\-> qc -> ds_qc_wf (qc table, lag map, design table)
                        |         \\-> reportlets (seed, confounds, carpet, seedts, maps) -> ds_figures_wf
                        \\-> (lag map, design) -> ds_qc_wf
        inputnode.bold_file names every output (sinks' source_file); the BOLD is read once, by denoise.
        ``__desc__``: the methods text of these parameters (:mod:`workflows.methods`).

    Parameters
    ----------
    tr : float
        Repetition time (s).
    denoise, seed, window : DenoiseParams, SeedParams, WindowParams
        Parameters of the three steps.
    qc : QCParams, optional
        Hemodynamic-lag QC (``stat-lag`` map); the defaults when not given.
    lesion_confounds, external_lag_map : path, optional
        fMRIStroke's lesion-aware confounds (``desc-confounds2``) and rapidtide lag map
        (``desc-maxtime_map``) of the run.
    lesion_side : {'L', 'R'}
    output_dir, fmriprep_dir : path
        The output dataset, and the fMRIPrep dataset the inputs come from (sidecar ``Sources``).
    static_meta : dict
        Sidecar fields known before running (lesion side and its source, software versions).
    notes : list of str
        Input problems that changed what was applied (a TR conflict): the QC table's ``reason``.
    has_lesion : bool
        The subject has a lesion mask: the inputnode takes it on the run grid (``LesionOnGrid``); the
        lesion leaves the seed, the dilated lesion leaves the analysis mask, and ``+lesion``
        strategies regress its signal.

    Inputs
    ------
    bold_file, mask_file, confounds_file, boldref_file
        fMRIPrep outputs of the run (``boldref_file`` may be None).
    lesion_mask, exclude_mask, lesion_info
        With ``has_lesion``: the outputs of ``LesionOnGrid``.

    Outputs
    -------
    dfcsd, dfcmean, fc
        The run's maps (in the working directory).
    dfc_info, meta, warnings
        Window counts (weights of the subject-level mean), the sidecar content, its warnings.
    seed_mask, denoised, volumes_tsv, windows_tsv, seed_tsv, mask_file
        Intermediate files, for reuse.
    """
    qc = qc or QCParams()
    wf = Workflow(name=name)
    wf.__desc__ = (
        f"{describe_denoise(denoise)} {describe_qc(qc)}\n\n"
        f"{describe_seed(seed)} {describe_windows(window)} {describe_null(window)}"
    )
    lesion_fields = ["lesion_mask", "exclude_mask", "lesion_info"] if has_lesion else []
    inputnode = pe.Node(niu.IdentityInterface(fields=list(RUN_INPUTS) + lesion_fields), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[
                "dfcsd",
                "dfcmean",
                "fc",
                "meta",
                "warnings",
                "seed_mask",
                "denoised",
                "volumes_tsv",
                "windows_tsv",
                "seed_tsv",
                "mask_file",
                "dfc_info",
                "maps",
            ]
        ),
        name="outputnode",
    )

    denoise_node = pe.Node(
        DenoiseBold(
            tr=tr,
            denoise=asdict(denoise),
            lesion_side=lesion_side,
            qc=asdict(qc),
            lesion_confounds=str(lesion_confounds) if lesion_confounds else None,
            external_lag_map=str(external_lag_map) if external_lag_map else None,
        ),
        name="denoise",
        mem_gb=2.0,
    )
    seed_node = pe.Node(
        MakeSeed(
            lesion_side=lesion_side,
            seed_radius=seed.seed_radius,
            atlas=seed.seed_atlas,
            seed_mask=str(seed.seed_mask) if seed.seed_mask else None,
            seed_coords=tuple(seed.seed_coords) if seed.seed_coords else None,
        ),
        name="seed",
    )
    dfc = pe.Node(
        ComputeDFC(
            lesion_side=lesion_side,
            tr=tr,
            window=asdict(window),
            high_pass=denoise.high_pass,
            n_threads=omp_nthreads,
        ),
        name="dfc",
        mem_gb=1.5,
        n_procs=omp_nthreads,
    )
    sources = pe.Node(niu.Merge(3), name="sources", run_without_submitting=True)
    metadata = pe.Node(
        MergeMetadata(static={**static_meta, "RepetitionTime": tr}, dataset_root=str(fmriprep_dir)),
        name="metadata",
        run_without_submitting=True,
    )
    figures = pe.Node(RunReportlets(tr=tr), name="reportlets", mem_gb=1.0)
    run_qc = pe.Node(RunQC(run=run_label), name="qc", run_without_submitting=True)
    if notes:
        run_qc.inputs.notes = list(notes)
    ds_dfc = init_ds_dfc_wf(
        output_dir=output_dir,
        save_windows=window.save_windows,
        null=window.null_surrogates > 0,
        timescales=[timescale_label(x) for x in window.extra_window_lengths],
    )
    ds_qc = init_ds_qc_wf(output_dir=output_dir)
    ds_figures = init_ds_figures_wf(output_dir=output_dir)
    wf.connect(
        [
            (
                denoise_node,
                run_qc,
                [("info", "denoise_info"), ("lag_info", "lag_info"), ("tsnr_file", "tsnr_file")],
            ),
            (seed_node, run_qc, [("seed_mask", "seed_mask")]),
            (dfc, run_qc, [("info", "dfc_info")]),
            (denoise_node, metadata, [("lag_info", "lag_info")]),
            (inputnode, ds_qc, [("bold_file", "inputnode.source_file")]),
            (run_qc, ds_qc, [("qc_tsv", "inputnode.qc_tsv")]),
            (denoise_node, ds_qc, [("lag_map", "inputnode.lag_map"), ("design_tsv", "inputnode.design_tsv")]),
            (inputnode, ds_dfc, [("bold_file", "inputnode.source_file")]),
            (metadata, ds_dfc, [("meta", "inputnode.meta")]),
            (seed_node, ds_dfc, [("seed_mask", "inputnode.seed_mask")]),
            (
                dfc,
                ds_dfc,
                [
                    (field, f"inputnode.{field}")
                    for field in ("dfcsd", "dfcmean", "fc", "seed_tsv", "windows_tsv", "maps")
                    + (("windows",) if window.save_windows else ())
                    + (("dfcexcess",) if window.null_surrogates > 0 else ())
                ],
            ),
            (inputnode, ds_figures, [("bold_file", "inputnode.source_file")]),
            (figures, ds_figures, [(fig, f"inputnode.{fig}") for fig in FIGURES]),
        ]
    )
    if has_lesion:
        wf.connect(
            [
                (inputnode, denoise_node, [("lesion_mask", "lesion_mask"), ("exclude_mask", "exclude_mask")]),
                (inputnode, seed_node, [("lesion_mask", "lesion_mask")]),
                (inputnode, figures, [("lesion_mask", "lesion_mask")]),
                (inputnode, metadata, [("lesion_info", "lesion_info")]),
                (inputnode, run_qc, [("lesion_info", "lesion_info")]),
            ]
        )

    wf.connect(
        [
            (
                inputnode,
                denoise_node,
                [
                    ("bold_file", "bold_file"),
                    ("mask_file", "mask_file"),
                    ("confounds_file", "confounds_file"),
                ],
            ),
            (inputnode, sources, [("bold_file", "in1"), ("mask_file", "in2"), ("confounds_file", "in3")]),
            (sources, metadata, [("out", "source_files")]),
            (denoise_node, seed_node, [("mask_file", "mask_file")]),
            (
                denoise_node,
                dfc,
                [
                    ("denoised", "denoised"),
                    ("censored_values", "censored_values"),
                    ("volumes_tsv", "volumes_tsv"),
                    ("mask_file", "mask_file"),
                ],
            ),
            (seed_node, dfc, [("seed_mask", "seed_mask")]),
            (denoise_node, metadata, [("info", "denoise_info")]),
            (seed_node, metadata, [("info", "seed_info")]),
            (dfc, metadata, [("info", "dfc_info")]),
            (
                denoise_node,
                figures,
                [
                    ("mask_file", "mask_file"),
                    ("carpet_denoised", "carpet_denoised"),
                    ("carpet_bold", "carpet_bold"),
                    ("volumes_tsv", "volumes_tsv"),
                    ("info", "denoise_info"),
                    ("lag_map", "lag_map"),
                ],
            ),
            (seed_node, figures, [("seed_mask", "seed_mask")]),
            (
                dfc,
                figures,
                [
                    ("seed_tsv", "seed_tsv"),
                    ("windows_tsv", "windows_tsv"),
                    ("dfcsd", "dfcsd"),
                    ("dfcmean", "dfcmean"),
                    ("fc", "fc"),
                    *((("dfcexcess", "dfcexcess"),) if window.null_surrogates > 0 else ()),
                ],
            ),
            (
                dfc,
                outputnode,
                [
                    ("dfcsd", "dfcsd"),
                    ("dfcmean", "dfcmean"),
                    ("fc", "fc"),
                    ("windows_tsv", "windows_tsv"),
                    ("seed_tsv", "seed_tsv"),
                    ("info", "dfc_info"),
                    ("maps", "maps"),
                ],
            ),
            (
                denoise_node,
                outputnode,
                [("denoised", "denoised"), ("volumes_tsv", "volumes_tsv"), ("mask_file", "mask_file")],
            ),
            (seed_node, outputnode, [("seed_mask", "seed_mask")]),
            (metadata, outputnode, [("meta", "meta"), ("warnings", "warnings")]),
        ]
    )

    return wf


def init_participant_wf(
    *,
    subject: str,
    runs: Sequence[RunInputs],
    denoise: DenoiseParams,
    seed: SeedParams,
    window: WindowParams,
    lesion_side: str,
    lesion_source: str,
    output_dir: str | Path,
    fmriprep_dir: str | Path,
    lesion_masks: Mapping[str | None, str | Path] | None = None,
    lesion_sources: Mapping[str | None, Sequence[str]] | None = None,
    qc: QCParams | None = None,
    model_dir: str | Path | None = None,
    combine_sessions: bool = False,
    omp_nthreads: int = 1,
    lesion: LesionParams | None = None,
    name: str | None = None,
) -> Workflow:
    """All runs of one participant, a map per session (or per subject), and predictions with a model.

    Workflow graph::

        inputnode.run_files -> dfc_<run>_wf (one per run) -> [aggregate_<ses> -> ds_subject_<ses>_wf]
                                                          -> [predict_<ses> -> ds_prediction_<ses>_wf]
                                                          -> outputnode
        (one aggregate per session with several runs; no _<ses> suffix without sessions)

    Parameters
    ----------
    subject : str
        Label without ``sub-``.
    runs : list of RunInputs
        The runs' fMRIPrep files, repetition times and entities.
    denoise, seed, window : DenoiseParams, SeedParams, WindowParams
    lesion_side : {'L', 'R'}
    lesion_source : str
        Where the side came from ('participants.tsv', 'lesion mask', ...).
    output_dir, fmriprep_dir : path
    lesion_masks : dict, optional
        Session (None: no session entity) -> the lesion mask in the template space (any grid): put on
        the BOLD grid once per session (``lesion_<ses>`` node), written as ``desc-lesion_mask`` and
        given to that session's runs. Runs of a session without a mask keep the lesion in their maps.
    lesion_sources : dict, optional
        Session -> ``Sources`` of the lesion derivative (URIs of the original mask and transform).
    qc : QCParams, optional
        Quality-control parameters of every run.
    model_dir : path, optional
        A trained model (``output_dir/model`` of a group run): predict this subject (each session).
    combine_sessions : bool
        Average every run of the subject into one map (today's cross-sectional behaviour); by default
        runs are averaged within a session only, and each session gets its own ``ses-`` map.
    omp_nthreads : int
        Threads of each run's dFC node (its stationary null); the node books as many MultiProc slots.
    lesion : LesionParams, optional
        How a lesion mask's values become the lesion (the threshold); the defaults when not given.

    Inputs
    ------
    run_files
        One dict per run with the ``init_dfc_wf`` inputs (set from ``runs``).

    Outputs
    -------
    dfcsd
        The variability map of each session (the single run's, or the window-weighted mean of its runs);
        a list when there are several sessions.
    prediction
        The prediction JSON of each session (with ``model_dir``).
    """
    wf = Workflow(name=name or f"sub_{subject}_wf")
    wf.__postdesc__ = "\n\n" + describe_sessions(combine_sessions)
    inputnode = pe.Node(niu.IdentityInterface(fields=["run_files"]), name="inputnode")
    inputnode.inputs.run_files = [
        {
            "bold_file": str(r.bold),
            "mask_file": str(r.mask),
            "confounds_file": str(r.confounds),
            "boldref_file": str(r.boldref) if r.boldref else None,
        }
        for r in runs
    ]
    outputnode = pe.Node(niu.IdentityInterface(fields=["dfcsd", "prediction"]), name="outputnode")
    space = runs[0].entities.get("space")
    static = {
        "LesionHemisphere": lesion_side,
        "LesionHemisphereSource": lesion_source,
        "SeedName": "ipsiM1",
        "Space": space,
        # BIDS defines SoftwareVersions as a string
        "SoftwareVersions": "; ".join(f"{k} {v}" for k, v in software_versions().items()),
    }
    lesion = lesion or LesionParams()
    lesion_nodes = {}
    for session, mask in (lesion_masks or {}).items():
        first = next(r for r in runs if r.entities.get("session") == session)
        suffix = f"_ses_{safe_name(session)}" if session else ""
        lesion_nodes[session] = node = pe.Node(
            LesionOnGrid(lesion_file=str(mask), mask_file=str(first.mask), threshold=lesion.threshold),
            name=f"lesion{suffix}",
        )
        ds_lesion = init_ds_lesion_wf(
            output_dir=output_dir,
            source_file=str(first.bold),
            sources=(lesion_sources or {}).get(session) or [str(mask)],
            threshold=lesion.threshold,
            name=f"ds_lesion{suffix}_wf",
        )
        wf.connect(node, "lesion_mask", ds_lesion, "inputnode.lesion_mask")
    run_wfs = []
    for index, run in enumerate(runs):
        run_wf = init_dfc_wf(
            tr=run.tr,
            denoise=denoise,
            seed=seed,
            window=window,
            lesion_side=lesion_side,
            output_dir=output_dir,
            fmriprep_dir=fmriprep_dir,
            static_meta={**static, "RepetitionTimeNIfTIHeader": run.tr_header} if run.tr_note else static,
            notes=[run.tr_note] if run.tr_note else [],
            has_lesion=run.entities.get("session") in lesion_nodes,
            qc=qc,
            run_label=run.name,
            lesion_confounds=run.lesion_confounds,
            external_lag_map=run.lag_map,
            omp_nthreads=omp_nthreads,
            name=f"dfc_{safe_name(run.name)}_wf",
        )
        if run.entities.get("session") in lesion_nodes:
            wf.connect(
                [
                    (
                        lesion_nodes[run.entities.get("session")],
                        run_wf,
                        [
                            ("lesion_mask", "inputnode.lesion_mask"),
                            ("exclude_mask", "inputnode.exclude_mask"),
                            ("info", "inputnode.lesion_info"),
                        ],
                    )
                ]
            )
        split = pe.Node(
            niu.Function(
                function=_run_fields, input_names=["run_files", "index"], output_names=list(RUN_INPUTS)
            ),
            name=f"fields_{safe_name(run.name)}",
            run_without_submitting=True,
        )
        split.inputs.index = index
        wf.connect(
            [
                (inputnode, split, [("run_files", "run_files")]),
                (split, run_wf, [(f, f"inputnode.{f}") for f in RUN_INPUTS]),
            ]
        )
        run_wfs.append(run_wf)
    units = session_units(runs, combine_sessions)
    maps, predictions = [], []
    for key, indices in units.items():
        suffix = f"_ses_{safe_name(key)}" if key and not combine_sessions else ""
        dismissed = ["desc", "session"] if combine_sessions else ["desc"]
        sources = [str(runs[i].bold) for i in indices]
        if len(indices) == 1:
            unit_map: tuple[pe.Node | pe.Workflow, str] = (run_wfs[indices[0]], "outputnode.dfcsd")
            written = (run_wfs[indices[0]], "ds_dfc_wf.ds_dfcsd.out_file")
        else:
            join = pe.Node(niu.Merge(len(indices)), name=f"merge_dfcsd{suffix}", run_without_submitting=True)
            join_info = pe.Node(
                niu.Merge(len(indices)), name=f"merge_info{suffix}", run_without_submitting=True
            )
            join_meta = pe.Node(
                niu.Merge(len(indices)), name=f"merge_meta{suffix}", run_without_submitting=True
            )
            join_maps = pe.Node(
                niu.Merge(len(indices)), name=f"merge_maps{suffix}", run_without_submitting=True
            )
            aggregate = pe.Node(AggregateRuns(static=static), name=f"aggregate{suffix}")
            for i, index in enumerate(indices, start=1):
                rwf = run_wfs[index]
                wf.connect(
                    [
                        (rwf, join, [("outputnode.dfcsd", f"in{i}")]),
                        (rwf, join_info, [("outputnode.dfc_info", f"in{i}")]),
                        (rwf, join_meta, [("outputnode.meta", f"in{i}")]),
                        (rwf, join_maps, [("outputnode.maps", f"in{i}")]),
                    ]
                )
            ds_subject = init_ds_subject_map_wf(
                output_dir=output_dir,
                source_files=sources,
                dismiss=dismissed,
                name=f"ds_subject{suffix}_wf",
                stats=("dfcsd", "dfcmean", "fc") + (("dfcexcess",) if window.null_surrogates > 0 else ()),
                timescales=[timescale_label(x) for x in window.extra_window_lengths],
            )
            wf.connect(
                [
                    (join, aggregate, [("out", "in_files")]),
                    (join_info, aggregate, [("out", "dfc_infos")]),
                    (join_meta, aggregate, [("out", "run_metas")]),
                    (join_maps, aggregate, [("out", "run_maps")]),
                    (
                        aggregate,
                        ds_subject,
                        [
                            ("out_file", "inputnode.in_file"),
                            ("meta", "inputnode.meta"),
                            ("out_maps", "inputnode.maps"),
                        ],
                    ),
                ]
            )
            unit_map = (aggregate, "out_file")
            written = (ds_subject, "ds_subject_dfcsd.out_file")
        maps.append(unit_map)
        if not model_dir:
            continue
        predict = pe.Node(
            PredictSubject(
                model_dir=str(model_dir),
                lesion_side=lesion_side,
                subject=subject,
                space=space,
                output_dir=str(output_dir),
                # "model" is the group-level dataset holding the model (DatasetLinks of the outputs)
                model_uri=bids_uri(model_dir, Path(model_dir).resolve().parent, "model"),
            ),
            name=f"predict{suffix}",
        )
        ds_pred = init_ds_prediction_wf(
            output_dir=output_dir, source_files=sources, dismiss=dismissed, name=f"ds_prediction{suffix}_wf"
        )
        wf.connect(
            [
                (unit_map[0], predict, [(unit_map[1], "in_file")]),
                (written[0], predict, [(written[1], "derivative_file")]),
                (run_wfs[indices[0]], predict, [("outputnode.meta", "meta")]),
                (predict, ds_pred, [("out_file", "inputnode.in_file")]),
            ]
        )
        predictions.append((predict, "out_file"))
        # the lesion and its mirror leave the model's input, as in training
        unit_lesions = [lesion_nodes[k] for k in lesion_nodes if combine_sessions or k == key]
        if unit_lesions:
            join_lesions = pe.Node(
                niu.Merge(len(unit_lesions)), name=f"merge_lesions{suffix}", run_without_submitting=True
            )
            for i, node in enumerate(unit_lesions, 1):
                wf.connect(node, "lesion_mask", join_lesions, f"in{i}")
            wf.connect(join_lesions, "out", predict, "lesion_masks")
    for field, outputs in (("dfcsd", maps), ("prediction", predictions)):
        if len(outputs) == 1:
            wf.connect(*outputs[0], outputnode, field)
        elif outputs:
            gather = pe.Node(niu.Merge(len(outputs)), name=f"gather_{field}", run_without_submitting=True)
            for i, (node, port) in enumerate(outputs, 1):
                wf.connect(node, port, gather, f"in{i}")
            wf.connect(gather, "out", outputnode, field)
    return wf


def session_units(runs: Sequence[RunInputs], combine_sessions: bool = False) -> dict[str | None, list[int]]:
    """Run indices combined into one map: per session (None: no session entity), or all together.

    Sessions are never averaged together unless ``combine_sessions`` (cross-sectional designs with
    repeated baseline scans).
    """
    units: dict[str | None, list[int]] = {}
    for index, run in enumerate(runs):
        key = "all" if combine_sessions else run.entities.get("session")
        units.setdefault(key, []).append(index)
    return units


def _run_fields(run_files: list, index: int) -> tuple:
    """The ``init_dfc_wf`` inputs of run ``index`` of ``inputnode.run_files`` (a Nipype Function node)."""
    run = run_files[index]
    return run["bold_file"], run["mask_file"], run["confounds_file"], run["boldref_file"]


def describe_participant(
    *,
    denoise: DenoiseParams,
    seed: SeedParams,
    window: WindowParams,
    qc: QCParams | None = None,
    combine_sessions: bool = False,
) -> str:
    """The methods text of the participant level with these parameters, read from its graph.

    Builds :func:`init_participant_wf` for one placeholder run (cheap: no file is read, and the text
    depends on no property of the run) and returns its ``visit_desc()``.
    """
    run = RunInputs(
        bold=Path("sub-x_task-rest_bold.nii.gz"),
        mask=Path("sub-x_task-rest_desc-brain_mask.nii.gz"),
        confounds=Path("sub-x_task-rest_desc-confounds_timeseries.tsv"),
        boldref=None,
        tr=1.0,
        entities={"subject": "x", "task": "rest"},
    )
    wf = init_participant_wf(
        subject="x",
        runs=[run],
        denoise=denoise,
        seed=seed,
        window=window,
        lesion_side="L",
        lesion_source="",
        output_dir=".",
        fmriprep_dir=".",
        qc=qc,
        combine_sessions=combine_sessions,
        name="methods_wf",
    )
    return wf.visit_desc()
