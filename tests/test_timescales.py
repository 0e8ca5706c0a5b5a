"""Group level on the map and window length a user chooses (``--map``, ``--timescale``), and the window
length chosen inside each training fold (``--timescale auto``), never seeing the fold's test subjects."""

import json

import nibabel as nb
import numpy as np
import pytest
from helpers import fewer_group_bootstrap_draws

from bids_app.group_level import choose_timescale, matches_timescale, timescale_name
from workflows import models
from workflows.cross_validation import cross_validate, subject_folds
from workflows.models import TIMESCALE_MAPS, TIMESCALE_NAMES, select_timescale, timescale_model
from workflows.params import GroupParams, TrainSettings, timescale_label
from workflows.utils.errors import InputError

SHAPE = (8, 8, 8)


def _parcels():
    """8 box parcels (the octants of SHAPE)."""
    ijk = np.indices(SHAPE) >= 4
    return (1 + ijk[0] + 2 * ijk[1] + 4 * ijk[2]).astype(np.int32)


def _inputs(n=24, effect=(0.0, 2.0, 0.0), seed=0):
    """Group inputs as prepare_inputs writes them, with the map at three window lengths; the severe
    subjects' parcel 3 is raised by ``effect[i]`` SD at the i-th length only."""
    gen = np.random.default_rng(seed)
    parcels = _parcels()
    y = (np.arange(n) % 2).astype(int)
    labels = np.array([f"{i:02d}" for i in range(n)])
    maps = gen.normal(size=(len(effect), n, *SHAPE)).astype(np.float32)
    for i, e in enumerate(effect):
        maps[i][y == 1] += e * (parcels == 3)
    return {
        "x": maps[0],
        "y": y,
        "groups": labels,
        "split_groups": labels,
        "subjects": labels,
        "y_subject": y,
        "maps": maps[0],
        "sides": np.array(["L"] * n),
        "parcels": parcels,
        "confounds": gen.normal(size=(n, 6)),
        TIMESCALE_MAPS: maps,
        TIMESCALE_NAMES: np.array(["44s", "60s", "100s"]),
    }


def test_timescale_labels_are_bids_labels():
    assert timescale_label("60s") == "win60s"
    assert timescale_label("30vol") == "win30vol"
    assert timescale_label("44.5s") == "win44p5s"
    assert timescale_label(100) == "win100s"


def test_group_parameters_refuse_unknown_maps_and_timescales():
    assert GroupParams().map == "dfcsd"
    assert GroupParams().timescale is None
    GroupParams(map="dfcexcess", timescale="auto")
    GroupParams(timescale="60s")
    with pytest.raises(InputError, match=r"map 'dfcsdd' is unknown"):
        GroupParams(map="dfcsdd")
    with pytest.raises(InputError, match=r"GroupParams.timescale 'long' is not a duration"):
        GroupParams(timescale="long")
    with pytest.raises(InputError, match="window maps"):
        GroupParams(samples="windows", map="dfcexcess")


def test_map_and_timescale_options_reach_the_group_parameters(tmp_path):
    from bids_app import parser
    from bids_app.config import read_toml, to_toml

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    args = [str(tmp_path), str(tmp_path / "out"), "group"]
    default = parser.parse_args(args)
    assert (default.group.map, default.group.timescale) == ("dfcsd", None)
    config = parser.parse_args([*args, "--map", "dfcexcess", "--timescale", "auto"])
    assert (config.group.map, config.group.timescale) == ("dfcexcess", "auto")
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(config))
    assert read_toml(saved)["options"]["group_map"] == "dfcexcess"
    again = parser.parse_args([*args, "--config-file", str(saved)])
    assert (again.group.map, again.group.timescale) == ("dfcexcess", "auto")
    with pytest.raises(SystemExit):
        parser.parse_args([*args, "--map", "sd"])


def test_a_timescale_is_matched_by_its_window_length_in_whole_volumes():
    metas = {
        None: {"WindowLength_s": 44.0, "WindowLength_vol": 22, "RepetitionTime": 2.0},
        "win60s": {"WindowLength_s": 60.0, "WindowLength_vol": 30, "RepetitionTime": 2.0},
    }
    assert timescale_name(metas["win60s"]) == "60s"
    assert matches_timescale(metas[None], "45s")  # 45 s at TR 2 s is 22 volumes, as the windows were
    assert not matches_timescale(metas[None], "60s")
    assert matches_timescale(metas["win60s"], "30vol")
    assert choose_timescale(metas, None, "here") is None
    assert choose_timescale(metas, "auto", "here") is None
    assert choose_timescale(metas, "60s", "here") == "win60s"
    assert choose_timescale(metas, "44s", "here") is None
    with pytest.raises(InputError, match=r"no map at the window length 100s .*wrote 44s, 60s"):
        choose_timescale(metas, "100s", "here")


def test_select_timescale_finds_the_window_length_that_carries_the_effect():
    data = _inputs(effect=(0.0, 2.0, 0.0))
    operator, _ = models.parcel_matrix(data["parcels"])
    candidates = dict(zip(data[TIMESCALE_NAMES], data[TIMESCALE_MAPS]))
    chosen = select_timescale(
        candidates, data["y"], data["groups"], operator=operator, target="classification", seed=0
    )
    assert chosen == "60s"
    scores = np.linspace(10, 50, 24)
    assert select_timescale(
        candidates, scores, data["groups"], operator=operator, target="regression", seed=0
    )


def test_auto_timescale_is_chosen_on_training_subjects_only(monkeypatch):
    """A spy records the subjects every selection saw: never one of the outer fold's test subjects; the
    informative window length wins in most folds, and each length's primary model runs on the same folds."""
    data = _inputs(effect=(0.0, 2.0, 0.0))
    seen: list[set] = []
    original = models.select_timescale

    def spy(candidates, y, groups, **kwargs):
        seen.append(set(np.asarray(groups).tolist()))
        assert all(len(x) == len(groups) for x in candidates.values())
        return original(candidates, y, groups, **kwargs)

    monkeypatch.setattr(models, "select_timescale", spy)
    params = GroupParams(timescale="auto", train=TrainSettings(epochs=1))
    record: list[dict] = []
    fitted = models.fold_models(data, params, record=record)
    assert {timescale_model(t) for t in ("44s", "60s", "100s")} <= set(fitted)
    # the baseline (PCA) also reads the fold's choice; the CNN, and the models of one length, cost time here
    fitted = {k: v for k, v in fitted.items() if k in ("parcel", "baseline")}
    folds = subject_folds(data["y"], data["groups"], 3, 1, seed=0)
    idx = np.arange(len(data["y"]))
    predictions, _, _ = cross_validate(idx, data["y"], data["groups"], folds, fitted)
    assert len(seen) == len(folds)  # once per fold, shared by every map model of the fold
    for fold, subjects in zip(folds, seen):
        test = set(data["groups"][fold["test"]].tolist())
        assert subjects == set(data["groups"][fold["train"]].tolist())
        assert not subjects & test
    chosen = [r["timescale"] for r in record]
    assert chosen.count("60s") >= 2
    assert {r["model"] for r in predictions} == set(fitted)


def test_auto_timescale_needs_several_window_lengths():
    data = _inputs()
    del data[TIMESCALE_MAPS], data[TIMESCALE_NAMES]
    with pytest.raises(ValueError, match="several window lengths"):
        models.fold_models(data, GroupParams(timescale="auto"))


def _run(tmp_path, rng, **window):
    """run_dfc on a 4x4x4 brain of white noise, 150 volumes at TR 2 s (the seed: 8 voxels)."""
    from workflows.dfc_run import run_dfc
    from workflows.params import WindowParams

    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    mask = nb.Nifti1Image(np.ones((4, 4, 4), np.uint8), affine)
    seed = np.zeros((4, 4, 4), np.uint8)
    seed[:2, :2, :2] = 1
    data = rng.normal(size=(150, 64)).astype(np.float32)
    data[:, 8:16] += data[:, :8].mean(1, keepdims=True)  # some static coupling to the seed
    return run_dfc(
        data,
        np.ones(150, bool),
        mask,
        nb.Nifti1Image(seed, affine),
        WindowParams(**window),
        tr=2.0,
        high_pass=0.01,
        out_dir=tmp_path,
    )


def test_other_window_lengths_get_their_own_maps_null_and_record(tmp_path, rng):
    from bids_app.reports.participant import dynamics_rows
    from workflows.outputs import map_output

    res = _run(tmp_path, rng, extra_window_lengths=("60s", "100s"), null_surrogates=5)
    assert set(res["maps"]) == {
        "dfcsd",
        "dfcmean",
        "fc",
        "dfcexcess",
        *(f"{s}_{t}" for s in ("dfcsd", "dfcmean", "dfcexcess") for t in ("win60s", "win100s")),
    }
    info = res["info"]
    assert (info["WindowLength_s"], info["WindowsKept"]) == (44.0, 150 - 22 + 1)
    other = info["OtherTimescales"]["win60s"]
    assert (other["WindowLength_vol"], other["WindowsKept"], other["WindowLengthOption"]) == (30, 121, "60s")
    sds = {t: nb.load(res["maps"][f"dfcsd_{t}"]).get_fdata() for t in ("win60s", "win100s")}
    assert not np.allclose(sds["win60s"], sds["win100s"])
    assert sds["win100s"].mean() < sds["win60s"].mean() < nb.load(res["dfcsd"]).get_fdata().mean()
    for rec in (info, other):
        null = rec["StationaryNull"]
        assert null["TopTargetsMeanExcess"] == pytest.approx(
            null["TopTargetsObservedSD"] - null["TopTargetsNullMeanSD"], abs=2e-4
        )
    # the sidecar of a map at another length carries that length's record, not the default's
    meta = {**info, "Space": "MNI152NLin2009cAsym", "Description": "run"}
    path, sidecar = map_output(res["maps"], meta, "dfcexcess", "win60s")
    assert path == res["maps"]["dfcexcess_win60s"]
    assert (sidecar["WindowLength_s"], sidecar["Space"]) == (60.0, "MNI152NLin2009cAsym")
    assert sidecar["StationaryNull"] == other["StationaryNull"]
    assert "OtherTimescales" not in sidecar
    assert "Description" not in sidecar  # the sink writes the map's own
    rows = dynamics_rows(info)
    assert [r["timescale"] for r in rows] == ["44 s", "60 s", "100 s"]
    assert rows[1]["p"] == other["StationaryNull"]["TopTargetsPValue"]


def test_the_default_run_writes_no_other_timescale(tmp_path, rng):
    res = _run(tmp_path, rng, null_surrogates=0)
    assert set(res["maps"]) == {"dfcsd", "dfcmean", "fc"}
    assert "OtherTimescales" not in res["info"]
    assert sorted(p.name for p in tmp_path.glob("*.nii.gz")) == [
        "dfcmean.nii.gz",
        "dfcsd.nii.gz",
        "fc.nii.gz",
    ]


def test_window_lengths_option(tmp_path):
    from bids_app import parser

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    args = [str(tmp_path), str(tmp_path / "out"), "participant"]
    assert parser.parse_args(args).window.extra_window_lengths == ()
    config = parser.parse_args([*args, "--window-lengths", "44s", "60s", "100s"])
    assert (config.window.window_length, config.window.extra_window_lengths) == ("44s", ("60s", "100s"))
    for bad in (["--window-lengths", "44s", "44s"], ["--window-lengths", "44s", "long"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*args, *bad])
    with pytest.raises(SystemExit):
        parser.parse_args([*args, "--window-length", "60s", "--window-lengths", "44s", "60s"])


def _derivatives(root, rng, n=12):
    """A strokefc output dataset of tiny maps (8 mm) at 44 s and 60 s windows, and its participants.tsv:
    the even (severe) subjects' blob is in the 60 s excess maps only."""
    import shutil

    from helpers import tiny_group_maps

    bids, out = root / "bids", root / "out"
    bids.mkdir()
    (out).mkdir()
    (out / "dataset_description.json").write_text('{"Name": "strokefc", "BIDSVersion": "1.9.0"}')
    subjects = (
        tiny_group_maps(root / "maps60", rng, n_subjects=n) if (root / "maps60").mkdir() is None else []
    )
    noise = tiny_group_maps(root / "maps44", rng, n_subjects=n) if (root / "maps44").mkdir() is None else []
    rows = ["participant_id\tul_fma\tlesion_hemisphere"]
    for s, flat in zip(subjects, noise):
        rows.append(f"sub-{s.subject}\t{s.ul_fma:g}\t{s.lesion_side}")
        func = out / f"sub-{s.subject}" / "func"
        func.mkdir(parents=True)
        stem = f"sub-{s.subject}_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1"
        flat_map = nb.load(flat.map_file).get_fdata()
        blob = nb.load(s.map_file)
        for desc, length, source in (("", 44.0, flat.map_file), ("_desc-win60s", 60.0, s.map_file)):
            meta = {
                "LesionHemisphere": s.lesion_side,
                "Space": "MNI152NLin2009cAsym",
                "RepetitionTime": 2.0,
                "WindowLength_s": length,
                "WindowLength_vol": int(length / 2),
            }
            for stat in ("dfcexcess", "dfcmean", "dfcsd"):
                shutil.copy(source, func / f"{stem}{desc}_stat-{stat}_boldmap.nii.gz")
                (func / f"{stem}{desc}_stat-{stat}_boldmap.json").write_text(json.dumps(meta))
            if not desc:  # static FC: no window; half the blob, so that it is a weaker control
                fc = nb.Nifti1Image((flat_map + blob.get_fdata()) / 2, blob.affine)
                nb.save(fc, func / f"{stem}_stat-fc_boldmap.nii.gz")
                (func / f"{stem}_stat-fc_boldmap.json").write_text(json.dumps(meta))
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    (bids / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.9.0"}')
    return bids, out


@pytest.mark.integration
def test_group_level_on_the_chosen_map_and_timescale(tmp_path, rng, monkeypatch):
    """A tiny group run with --map dfcexcess --timescale auto: the maps flow from the derivatives to the
    models, the window length carrying the effect is chosen in the folds, each length's primary model is
    compared with static FC on the same folds, and the report and card say so."""
    from bids_app.config import build_config
    from bids_app.group_level import collect_group_inputs
    from bids_app.reports.group import result_sentences, timescale_sentences
    from workflows.comparisons import effect_kind
    from workflows.group import init_group_wf
    from workflows.model_io import load_arrays

    bids, out = _derivatives(tmp_path, rng)
    values = {
        "group_map": "dfcexcess",
        "timescale": "auto",
        "cnn_resolution": 8.0,
        "cv_folds": 2,
        "cv_repeats": 1,
        "epochs": 2,
        "device": "cpu",
    }
    common = {
        "bids_dir": bids,
        "output_dir": out,
        "analysis_level": "group",
        "fmriprep_dir": bids,
        "work_dir": tmp_path / "work",
        "model": None,
    }
    fixed = build_config(**common, values={**values, "timescale": "60s"})
    subjects, excluded, _ = collect_group_inputs(fixed)
    assert not excluded
    assert all("desc-win60s_stat-dfcexcess" in s.map_file.name for s in subjects)
    assert all(s.dfcmean_file.name.endswith("desc-win60s_stat-dfcmean_boldmap.nii.gz") for s in subjects)
    assert all("_stat-fc_" in s.fc_file.name for s in subjects)
    with pytest.raises(InputError, match="no map at the window length 100s"):
        collect_group_inputs(build_config(**common, values={**values, "timescale": "100s"}))

    config = build_config(**common, values=values)
    subjects, _, shared = collect_group_inputs(config)
    assert subjects[0].map_file.name.endswith("_seed-ipsiM1_stat-dfcexcess_boldmap.nii.gz")
    assert set(subjects[0].timescale_files) == {"44s", "60s"}
    assert shared["Timescales"] == ["44s", "60s"]
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects],
        params=config.group,
        output_dir=out,
        shared_params=shared,
    )
    assert "chosen inside each training fold" in wf.__desc__
    assert "`stat-dfcexcess` map" in wf.__desc__
    fewer_group_bootstrap_draws(monkeypatch)  # the records are checked, not the intervals
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")
    summary = json.loads((out / "group" / "cv_summary.json").read_text())
    assert summary["map"]["stat"] == "dfcexcess"
    ts = summary["timescales"]
    assert ts["available"] == ["44s", "60s"]
    assert sum(ts["chosen_counts"].values()) == 2  # one choice per fold
    assert ts["chosen_counts"].get("60s", 0) >= 1
    assert {"parcel_ts44s", "parcel_ts60s", "parcel_fc", "parcel_dfcmean"} <= set(summary["models"])
    assert "difference_from_parcel_fc" in summary["bootstrap"]["parcel_ts60s"]
    sentences = timescale_sentences(summary)
    assert any(s.startswith("At 60s windows,") for s in sentences)
    kind = effect_kind(summary)  # the primary (on the chosen timescale) against static FC, no permutation
    assert kind["reason"] in ("untested", "no_difference", "at_chance")
    assert result_sentences(summary)[-1] == kind["sentence"]
    assert any("stat-dfcexcess" in s for s in sentences)
    assert (out / "group" / "desc-difference_dfcexcess.nii.gz").exists()
    _, card = load_arrays(out / "model")  # the primary parcel model, exported by default
    assert card["input"]["stat"] == "dfcexcess"
    assert card["training"]["timescale_chosen"] in ("44s", "60s")
    assert card["dfc_parameters"]["WindowLength_s"] == float(card["training"]["timescale_chosen"][:-1])


def test_session_mean_averages_every_map_by_its_own_window_counts(tmp_path):
    from workflows.interfaces.subject import AggregateRuns

    affine = np.eye(4)
    maps = []
    for run, value in enumerate((1.0, 4.0)):
        files = {}
        for key in ("dfcsd", "fc", "dfcsd_win60s"):
            path = tmp_path / f"run{run}_{key}.nii.gz"
            nb.save(nb.Nifti1Image(np.full((2, 2, 2), value, np.float32), affine), path)
            files[key] = str(path)
        maps.append(files)
    infos = [
        {"WindowsKept": 10, "OtherTimescales": {"win60s": {"WindowsKept": 30}}},
        {"WindowsKept": 30, "OtherTimescales": {"win60s": {"WindowsKept": 10}}},
    ]
    metas = [
        {"Space": "x", "OtherTimescales": {"win60s": {"WindowLength_s": 60.0, "WindowsKept": n}}}
        for n in (30, 10)
    ]
    node = AggregateRuns(
        in_files=[m["dfcsd"] for m in maps], dfc_infos=infos, run_metas=metas, run_maps=maps, static={}
    )
    node.base_dir = str(tmp_path)
    result = node.run(cwd=str(tmp_path))
    out = result.outputs.out_maps
    assert set(out) == {"dfcsd", "fc", "dfcsd_win60s"}
    mean = {k: float(nb.load(v).get_fdata().mean()) for k, v in out.items()}
    assert mean["dfcsd"] == pytest.approx((10 * 1 + 30 * 4) / 40)
    assert mean["fc"] == pytest.approx((10 * 1 + 30 * 4) / 40)
    assert mean["dfcsd_win60s"] == pytest.approx((30 * 1 + 10 * 4) / 40)
    assert result.outputs.meta["OtherTimescales"] == {"win60s": {"WindowLength_s": 60.0}}
