"""Group level on the map and window length a user chooses (``--map``, ``--timescale``), and the window
length chosen inside each training fold (``--timescale auto``), never seeing the fold's test subjects."""

import numpy as np
import pytest

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
