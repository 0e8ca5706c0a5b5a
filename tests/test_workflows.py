"""Graph-only tests: every init_*_wf is built on a generated dataset and checked without running a node."""

import networkx as nx
import pytest
from nipype.interfaces.base import isdefined

from bids_app.console import interface_modules, preload_modules
from bids_app.queries import collect_runs
from workflows import outputs as output_workflows
from workflows import participant as participant_workflows
from workflows.group import init_group_wf
from workflows.interfaces.predict import PredictSubject
from workflows.params import CVParams, DenoiseParams, GroupParams, SeedParams, WindowParams
from workflows.participant import RUN_INPUTS, init_dfc_wf, init_participant_wf
from workflows.utils.bids import RunInputs, run_name, run_prefix


def _unsatisfied(wf) -> list[str]:
    """Mandatory inputs of the flat graph that are neither set nor connected (the graph must be a DAG)."""
    flat = wf._create_flat_graph()
    assert nx.is_directed_acyclic_graph(flat), "the workflow graph has a cycle"
    missing = []
    for node in flat.nodes():
        connected = {dest for _, _, data in flat.in_edges(node, data=True) for _, dest in data["connect"]}
        for name in node.inputs.traits(mandatory=True):
            if name not in connected and not isdefined(getattr(node.inputs, name)):
                missing.append(f"{node.fullname}.{name}")
    return missing


def _edges(wf) -> set[tuple[str, str, str, str]]:
    flat = wf._create_flat_graph()
    return {
        (u.name, src, v.name, dest) for u, v, data in flat.edges(data=True) for src, dest in data["connect"]
    }


def _full_edges(wf) -> set[tuple[str, str, str, str]]:
    """:func:`_edges` with node names relative to ``wf`` (``ds_dfc_wf.ds_fc``)."""
    flat = wf._create_flat_graph()
    strip = len(wf.name) + 1
    return {
        (u.fullname[strip:], src, v.fullname[strip:], dest)
        for u, v, data in flat.edges(data=True)
        for src, dest in data["connect"]
    }


@pytest.fixture(scope="module")
def two_run_cohort(tmp_path_factory):
    from helpers import simulate

    return simulate(tmp_path_factory.mktemp("graph"), n_subjects=2, n_runs=2, n_volumes=40)


def test_participant_graph_is_complete_without_running(two_run_cohort, tmp_path):
    fmriprep = two_run_cohort / "derivatives" / "fmriprep"
    runs = collect_runs(fmriprep, "01")
    assert len(runs) == 2
    (tmp_path / "model").mkdir()
    wf = init_participant_wf(
        subject="01",
        runs=runs,
        denoise=DenoiseParams(),
        seed=SeedParams(),
        window=WindowParams(save_windows=True),
        lesion_side="L",
        lesion_source="test",
        output_dir=tmp_path / "out",
        fmriprep_dir=fmriprep,
        model_dir=tmp_path / "model",
    )
    names = set(wf.list_node_names())
    for run in runs:
        prefix = f"dfc_{run.name.replace('-', '_')}_wf"
        for node in (
            "denoise",
            "seed",
            "dfc",
            "metadata",
            "reportlets",
            "ds_dfc_wf.ds_dfcsd",
            "ds_dfc_wf.ds_windows",
            "ds_figures_wf.ds_report_carpet",
        ):
            assert f"{prefix}.{node}" in names
    assert {
        "aggregate",
        "ds_subject_wf.ds_subject_dfcsd",
        "predict",
        "ds_prediction_wf.ds_prediction",
    } <= names
    assert "The variability maps of several runs of one session were averaged" in wf.visit_desc()
    assert _unsatisfied(wf) == []
    assert not (tmp_path / "out").exists()  # nothing ran
    # the forkserver started before planning imports every module this graph's workers need
    early = interface_modules(participant_workflows, output_workflows)
    needed = preload_modules(wf._create_flat_graph())
    assert [m for m in needed if not any(m == e or m.startswith(f"{e}.") for e in early)] == []
    assert "workflows.prediction" in needed  # a model: the prediction is in the graph ...
    without = interface_modules(participant_workflows, output_workflows, without=(PredictSubject,))
    assert "workflows.prediction" not in without  # ... and left out of runs without one


def test_other_window_lengths_are_written_per_run_and_per_session(two_run_cohort, tmp_path):
    """--window-lengths: each run writes the maps of every other length; the session mean averages
    every map (dfcmean, fc, dfcexcess and the other lengths'), not only the variability map."""
    runs = collect_runs(two_run_cohort / "derivatives" / "fmriprep", "01")
    wf = init_participant_wf(
        subject="01",
        runs=runs,
        denoise=DenoiseParams(),
        seed=SeedParams(),
        window=WindowParams(extra_window_lengths=("60s",)),
        lesion_side="L",
        lesion_source="test",
        output_dir=tmp_path / "out",
        fmriprep_dir=two_run_cohort / "derivatives" / "fmriprep",
    )
    names = set(wf.list_node_names())
    prefix = f"dfc_{runs[0].name.replace('-', '_')}_wf.ds_dfc_wf"
    for stat in ("dfcsd", "dfcmean", "dfcexcess"):
        assert f"{prefix}.ds_{stat}_win60s" in names
        assert f"ds_subject_wf.ds_subject_{stat}_win60s" in names
    assert {f"ds_subject_wf.ds_subject_{s}" for s in ("dfcsd", "dfcmean", "fc", "dfcexcess")} <= names
    assert "ds_subject_wf.ds_subject_fc_win60s" not in names  # static FC has no window
    assert ("aggregate", "out_maps", "ds_subject_wf.inputnode", "maps") in _full_edges(wf)
    assert _unsatisfied(wf) == []


def test_dfc_graph_takes_every_file_from_its_inputnode(tmp_path):
    wf = init_dfc_wf(
        tr=2.0,
        denoise=DenoiseParams(),
        seed=SeedParams(),
        window=WindowParams(),
        lesion_side="R",
        output_dir=tmp_path,
        fmriprep_dir=tmp_path,
        static_meta={},
    )
    edges = _edges(wf)
    full = _full_edges(wf)
    sinks = [n for n in wf.list_node_names() if n.split(".")[-1].startswith("ds_")]
    assert len(sinks) == 5 + 5 + 6  # maps (dfcexcess and lag included), seed mask, four tables, figures
    for sink in sinks:  # outputs are named after the run given to the inputnode, not at build time
        ds_wf = sink.split(".")[0]
        assert (f"{ds_wf}.inputnode", "source_file", sink, "source_file") in full
        assert ("inputnode", "bold_file", f"{ds_wf}.inputnode", "source_file") in full
    # the BOLD is read once: the report's carpet takes the denoising step's voxel sample
    assert ("denoise", "carpet_bold", "reportlets", "carpet_bold") in edges
    # ... and the same sample of the denoised series: the report's node neither hashes nor reads the run
    assert ("denoise", "carpet_denoised", "reportlets", "carpet_denoised") in edges
    assert not any(e[0] == "denoise" and e[1] == "denoised" and e[2] == "reportlets" for e in edges)
    assert not any(e[0] == "inputnode" and e[1] == "bold_file" and e[2] == "reportlets" for e in edges)
    # the report shows the lag and dFC-excess maps it writes (stat-lag, stat-dfcexcess)
    assert ("denoise", "lag_map", "reportlets", "lag_map") in edges
    assert ("dfc", "dfcexcess", "reportlets", "dfcexcess") in edges
    for field in RUN_INPUTS[:3]:
        assert ("inputnode", field, "denoise", field) in edges
    assert _unsatisfied(wf) == []
    wf.remove_nodes([wf.get_node("inputnode")])  # the check fails when the run files have no source
    assert "dfc_wf.denoise.bold_file" in _unsatisfied(wf)


def test_group_graph(tmp_path):
    subjects = [
        {
            "label": f"{i:02d}",
            "map_file": str(tmp_path / f"{i}.nii.gz"),
            "windows_file": "",
            "lesion_side": "LR"[i % 2],
            "score": 10.0 if i % 2 else 40.0,
        }
        for i in range(8)
    ]
    params = GroupParams(cv=CVParams(cv_folds=4, cv_repeats=2))
    wf = init_group_wf(subjects=subjects, params=params, shared_params={}, output_dir=tmp_path)
    names = set(wf.list_node_names())
    assert {"prepare", "cv_fold", "summarise_cv", "train_final", "export", "explain"} <= names
    assert {"ds_group", "ds_cv", "ds_model", "ds_explain"} <= names
    assert "permutation" not in names
    assert len(wf.get_node("cv_fold").inputs.fold) == 8
    for fold in wf.get_node("cv_fold").inputs.fold:  # test subjects are whole subjects of both classes
        assert {int(s) % 2 for s in fold["test"]} == {0, 1}
    for writer in ("ds_group", "ds_cv", "ds_model", "ds_explain"):
        assert wf.get_node(writer).interface.always_run
    assert _unsatisfied(wf) == []
    with_null = init_group_wf(
        subjects=subjects,
        params=GroupParams(cv=CVParams(cv_folds=4, n_permutations=3)),
        shared_params={},
        output_dir=tmp_path,
        draws_dir=tmp_path / "work" / "permutation_draws",
    )
    assert with_null.get_node("permutation").inputs.index == [0, 1, 2]
    assert with_null.get_node("permutation").inputs.draws_dir == str(tmp_path / "work" / "permutation_draws")
    # the jobs that a cluster plugin submits: every fold, draw and the final training apart; writers local
    for node in ("cv_fold", "permutation", "train_final"):
        assert not with_null.get_node(node).run_without_submitting


def test_run_names_keep_every_distinguishing_entity():
    a = {"subject": "01", "session": "1", "task": "rest", "acquisition": "mb", "run": 1, "space": "X"}
    b = {**a, "acquisition": "sb"}
    assert run_name(a) == "ses-1_task-rest_acq-mb_run-1" != run_name(b)
    assert run_prefix(a) == "sub-01_ses-1_task-rest_acq-mb_run-1"
    assert RunInputs(bold=None, mask=None, confounds=None, boldref=None, tr=2.0, entities=b).name == run_name(
        b
    )


def test_progress_prints_one_line_per_subject_when_its_last_node_ends(two_run_cohort, tmp_path):
    import networkx as nx
    from nipype.interfaces.utility import IdentityInterface
    from nipype.pipeline import engine as pe

    from bids_app.progress import SubjectProgress

    fmriprep = two_run_cohort / "derivatives" / "fmriprep"
    top = pe.Workflow(name="strokefc_participant_wf")
    for subject in ("01", "02"):
        top.add_nodes(
            [
                init_participant_wf(
                    subject=subject,
                    runs=collect_runs(fmriprep, subject),
                    denoise=DenoiseParams(),
                    seed=SeedParams(),
                    window=WindowParams(),
                    lesion_side="L",
                    lesion_source="test",
                    output_dir=tmp_path,
                    fmriprep_dir=fmriprep,
                )
            ]
        )
    lines = []
    progress = SubjectProgress(top, printer=lambda text, **_: lines.append(text))
    flat = top._create_flat_graph()
    nodes = [n for n in nx.topological_sort(flat) if not isinstance(n.interface, IdentityInterface)]
    sub01 = [n for n in nodes if ".sub_01_wf." in n.fullname]
    for node in sub01[:-1]:
        progress(node, "start")
        progress(node, "end")
    assert lines == []
    progress(sub01[-1], "end")
    assert len(lines) == 1
    assert lines[0].startswith("  sub-01 done (1/2,")
    sub02 = next(n for n in nodes if ".sub_02_wf." in n.fullname)
    progress(sub02, "exception")
    assert lines[1].startswith("  sub-02 failed")
    assert lines[1].endswith("min elapsed)")
    assert "left" not in lines[0]  # no node has run (no result says how long): no time left yet
    # what depends on the failed node (through identity nodes too) will not run: no work left there
    skipped = {n.fullname for n in nx.descendants(flat, sub02)} | {sub02.fullname}
    assert len(skipped) > 5
    assert progress.pending == {n.fullname for n in nodes if ".sub_02_wf." in n.fullname} - skipped


def test_ready_jobs_run_subject_by_subject():
    """MultiProc takes the ready jobs of the earliest subject first, so subjects finish in turn."""
    from types import SimpleNamespace

    from bids_app.console import StrokefcMultiProcPlugin
    from bids_app.progress import subject_priority

    plugin = StrokefcMultiProcPlugin(
        plugin_args={"n_procs": 1}, priority=subject_priority(["01", "02", "03"])
    )
    names = ["sub_03_wf.a", "sub_01_wf.a", "sub_02_wf.a", "sub_01_wf.b", "report"]
    plugin.procs = [SimpleNamespace(fullname=f"strokefc_participant_wf.{n}") for n in names]
    assert list(plugin._sort_jobs([0, 1, 2, 3, 4])) == [4, 1, 3, 2, 0]
    plugin.pool.shutdown()


def test_sinks_hash_their_source_by_path_and_their_input_by_content(tmp_path):
    """A sink's source only names the output: rewriting the (large) BOLD must not make it re-read."""
    from workflows.interfaces.bids import DerivativesDataSink

    source = tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"
    in_file = tmp_path / "map.nii.gz"
    source.write_bytes(b"a" * 1000)
    in_file.write_bytes(b"x")
    sink = DerivativesDataSink(base_directory=str(tmp_path), source_file=str(source), in_file=str(in_file))
    first = sink.inputs.get_hashval(hash_method="content")[1]
    source.write_bytes(b"b" * 1000)
    assert sink.inputs.get_hashval(hash_method="content")[1] == first
    in_file.write_bytes(b"y")
    assert sink.inputs.get_hashval(hash_method="content")[1] != first


@pytest.mark.parametrize(("save_windows", "null"), [(False, False), (True, True)])
def test_ds_dfc_wf_writes_the_maps_its_options_ask_for(tmp_path, save_windows, null):
    from workflows.outputs import DFC_OUTPUTS, init_ds_dfc_wf

    wf = init_ds_dfc_wf(output_dir=tmp_path, save_windows=save_windows, null=null)
    names = set(wf.list_node_names())
    maps = {"ds_dfcsd", "ds_dfcmean", "ds_fc"}
    maps |= {"ds_windows"} if save_windows else set()
    maps |= {"ds_dfcexcess"} if null else set()
    assert {n for n in names if n.startswith("ds_")} == maps | {
        "ds_seed_mask",
        "ds_seed_tsv",
        "ds_windows_tsv",
    }
    edges = _edges(wf)
    for stat in maps:
        assert ("inputnode", stat.removeprefix("ds_"), stat, "in_file") in edges
        assert ("inputnode", "meta", stat, "meta_dict") in edges
        assert wf.get_node(stat).inputs.base_directory == str(tmp_path)
    for table in ("seed_tsv", "windows_tsv"):  # the sidecar describes the columns, from the table itself
        assert ("inputnode", table, f"{table}_sidecar", "in_file") in edges
        assert (f"{table}_sidecar", "meta", f"ds_{table}", "meta_dict") in edges
    assert set(DFC_OUTPUTS) <= set(wf.get_node("inputnode").inputs.copyable_trait_names())


def test_ds_qc_and_figures_wfs(tmp_path):
    from workflows.interfaces.reportlets import FIGURES
    from workflows.outputs import QC_TABLE, init_ds_figures_wf, init_ds_qc_wf

    qc = init_ds_qc_wf(output_dir=tmp_path)
    assert {"ds_lag", "ds_qc", "ds_design_tsv"} <= set(qc.list_node_names())
    sink = qc.get_node("ds_qc").inputs
    assert (sink.suffix, sink.extension, sink.dismiss_entities) == (
        QC_TABLE["suffix"],
        QC_TABLE["extension"],
        QC_TABLE["dismiss_entities"],
    )
    figures = init_ds_figures_wf(output_dir=tmp_path)
    assert {f"ds_report_{fig}" for fig in FIGURES} == set(figures.list_node_names()) - {"inputnode"}
    for fig in FIGURES:
        assert ("inputnode", fig, f"ds_report_{fig}", "in_file") in _edges(figures)


def _group_subjects(tmp_path, n=8):
    return [
        {
            "label": f"{i:02d}",
            "map_file": str(tmp_path / f"{i}.nii.gz"),
            "windows_file": "",
            "lesion_side": "LR"[i % 2],
            "score": 10.0 if i % 2 else 40.0,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("change", "present", "absent"),
    [
        ({}, ["5-fold cross-validation repeated 5 times", "No permutation test", "classify severity"], []),
        (
            {"cv": CVParams(cv_folds=4, cv_repeats=3)},
            ["4-fold cross-validation repeated 3 times"],
            ["5-fold"],
        ),
        (
            {"target": "regression", "cv": CVParams(n_permutations=20)},
            [
                "predict the UL-FMA score itself",
                "ridge regressions",
                "without stratification",
                "MAE",
                "the training subjects' mean score",
                "Significance of the MAE was assessed with 20 permutations of the UL-FMA scores",
                "the CNN not permuted",
            ],
            ["label permutations", "recalibrated", "logistic", "No permutation test"],
        ),
        (
            {"calibration": "isotonic"},
            ["recalibrated by isotonic regression"],
            ["not recalibrated", "Platt"],
        ),
        ({"calibration": "sigmoid"}, ["recalibrated by Platt scaling"], ["not recalibrated"]),
        (
            {"cv": CVParams(n_permutations=30)},
            ["30 label permutations", "the primary parcel model", "the CNN not permuted"],
            ["No permutation test"],
        ),
        (
            {"cv": CVParams(n_permutations=30, permute_cnn=True)},
            [
                "30 label permutations",
                "of the primary parcel model, the motor-prior model, the CNN, the sparse parcel model, "
                "the elastic-net parcel model, the PCA baseline",
            ],
            ["not permuted"],
        ),
    ],
)
def test_group_methods_text_follows_every_option_and_is_the_graphs(tmp_path, change, present, absent):
    """The methods paragraph is the workflow's own ``__desc__``: it names every model and control run, the
    CV scheme, the statistics, calibration, target and exported model, and follows each option."""
    from bids_app.reports.boilerplate import _group_paragraph
    from workflows.group import describe_group
    from workflows.models import models_for

    params = GroupParams(**change)
    wf = init_group_wf(
        subjects=_group_subjects(tmp_path), params=params, shared_params={}, output_dir=tmp_path
    )
    text = wf.visit_desc()
    assert text == describe_group(params) == _group_paragraph(params)
    for needle in present:
        assert needle in text, needle
    for needle in absent:
        assert needle not in text, needle
    for spec in models_for(params.target):  # every model of the target, by the registry's words
        assert spec.methods in text, spec.name
    for needle in (
        "primary model",
        "stratified by class and split by subject",
        "paired subject-level bootstrap",
        "corrected resampled t-test",
        "The exported (deployed) model is the primary parcel model",
        "static-FC",
        "mean-dFC",
    ):
        assert needle in text, needle
    # the text says a permutation test ran exactly when the graph has the permutation node
    ran = "label permutations" in text or "permutations of the UL-FMA scores" in text
    assert ran == ("permutation" in wf.list_node_names())
