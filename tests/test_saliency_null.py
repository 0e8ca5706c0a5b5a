"""The region table's stability over the fold models and its permuted-label null (hand-computable inputs),
and the permutation draws that give the null its saliency."""

import math

import numpy as np
import pytest
from helpers import save_group_inputs

from workflows import explain, permutation
from workflows.grid import grid_to_dict
from workflows.params import CVParams, GroupParams

SHAPE = (6, 4, 2)  # 48 voxels, unequal axes


def _grid(mask=None):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-5.0, 0.0, 0.0]  # voxel centres at x = -5, -3, -1, 1, 3, 5
    mask = np.ones(SHAPE, bool) if mask is None else mask
    return grid_to_dict(aff, SHAPE, mask, source_shape=SHAPE, source_affine=aff, resolution=2.0)


def _parcels():
    """Label 1: x columns 0-1 (16 voxels), 2: columns 2-3 (16), 3: column 4 (8), 9: one voxel of column 5."""
    labels = np.zeros(SHAPE, np.int32)
    labels[0:2], labels[2:4], labels[4] = 1, 2, 3
    labels[5, 0, 0] = 9
    return labels


def test_regions_keep_those_with_enough_voxels_inside_the_mask_and_average_over_them():
    mask = np.ones(SHAPE, bool)
    mask[4, :, 1] = False  # half of region 3 outside the CNN mask
    regions = explain.grid_regions(_grid(mask), _parcels(), min_voxels=2)
    assert regions.labels.tolist() == [1, 2, 3]  # 9 has a single voxel
    assert regions.counts.tolist() == [16, 16, 4]
    sal = np.zeros(SHAPE)
    sal[0] = 1.0  # half of region 1
    sal[4, :, 0] = 3.0  # region 3 inside the mask
    sal[4, :, 1] = 100.0  # outside the mask: ignored
    assert explain.region_means(sal, regions).tolist() == [0.5, 0.0, 3.0]
    means = {"all": sal, "severe": 2 * sal, "mild": sal}
    assert explain.region_statistic(means, regions).tolist() == [0.5, 0.0, 3.0]  # severe - mild
    assert explain.region_statistic({"all": sal}, regions).tolist() == [0.5, 0.0, 3.0]  # a class missing


def test_top_share_counts_the_folds_that_rank_a_region_in_the_top_k():
    profiles = np.array(
        [
            [3.0, -1.0, 0.5],  # order by |value|: regions 0, 1, 2
            [-4.0, 0.2, 1.0],  # 0, 2, 1
            [0.1, 2.0, -1.0],  # 1, 2, 0
            [np.nan, np.nan, np.nan],  # a fold without both classes: left out
        ]
    )
    assert explain.top_share(profiles, 1).tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert explain.top_share(profiles, 2).tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert explain.top_share(profiles, 3).tolist() == [1.0, 1.0, 1.0]
    assert np.isnan(explain.top_share(np.full((2, 3), np.nan), 1)).all()


def test_sign_agreement_and_the_profile_correlation_between_folds():
    profiles = np.array([[3.0, -1.0, 0.5], [2.0, 1.0, 0.4], [1.0, -2.0, -0.1]])
    assert explain.sign_agreement(profiles, np.array([2.0, -0.7, 0.3])).tolist() == pytest.approx(
        [1.0, 2 / 3, 2 / 3]
    )
    same = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])  # the same ranking
    assert explain.profile_correlation(same) == pytest.approx(1.0)
    assert explain.profile_correlation(np.vstack([same[0], -same[0]])) == pytest.approx(-1.0)
    # three folds: rho(0,1) = 1, rho(0,2) = rho(1,2) = -1 -> mean -1/3
    assert explain.profile_correlation(np.vstack([same, -same[0]])) == pytest.approx(-1 / 3)
    assert math.isnan(explain.profile_correlation(same[:1]))


def test_null_p_values_region_wise_and_against_the_maximum_over_regions():
    observed = np.array([5.0, -1.0])
    null = np.array([[1.0, 2.0], [-6.0, 0.5], [0.1, -0.2]])  # absolute values compared
    p, p_fwe = explain.null_p_values(observed, null)
    assert p.tolist() == pytest.approx([2 / 4, 2 / 4])  # |5|: one draw (6); |1|: one draw (2)
    assert p_fwe.tolist() == pytest.approx([2 / 4, 3 / 4])  # maxima 2, 6, 0.2
    assert (p_fwe >= p).all()
    p, p_fwe = explain.null_p_values(observed, np.zeros((0, 2)))
    assert np.isnan(p).all()
    assert np.isnan(p_fwe).all()


def _fold_parts(effects, n_severe=2, n_mild=2):
    """One fold's class sums per row of ``effects`` (region -> severe - mild of its held-out subjects)."""
    parcels = _parcels()
    parts = []
    for effect in effects:
        severe = np.zeros(SHAPE, np.float32)
        for label, value in effect.items():
            severe[parcels == label] = value
        parts.append(
            {
                "sum_severe": n_severe * severe,
                "sum_mild": np.zeros(SHAPE, np.float32),
                "n_severe": np.array(n_severe),
                "n_mild": np.array(n_mild),
            }
        )
    return parts


def test_a_planted_region_stable_over_folds_and_above_the_null_is_marked_and_noise_is_not(rng):
    """Planted: region 3 pushes the classes apart in every fold model, far more than any permuted-label
    draw; region 1 is as large in the pooled table but only in one fold; region 2 is noise."""
    parts = _fold_parts(
        [{3: 2.0, 1: 4.0, 2: 0.3}, {3: 1.8, 1: 0.0, 2: -0.2}, {3: 2.2, 1: 0.1, 2: 0.25}, {3: 2.0, 1: 0.0}]
    )
    means = explain.held_out_means(parts)
    null = [{"1": float(a), "2": float(b), "3": float(c)} for a, b, c in rng.normal(0, 0.3, (39, 3))]
    names = {1: "A_L", 2: "B_L", 3: "C_R"}
    rows = explain.region_table(means, _grid(), _parcels(), names, top=1, folds=parts, null=null)
    assert len(rows) == 1
    rows = {
        r["region"]: r
        for r in explain.region_table(means, _grid(), _parcels(), names, folds=parts, null=null)
    }
    planted, single, noise = rows["C"], rows["A"], rows["B"]
    assert planted["class_difference"] == pytest.approx(2.0)
    assert single["class_difference"] == pytest.approx(1.025)
    assert planted["fold_top_share"] == 1.0  # every fold ranks it among the top 20 (of 3 regions)...
    assert explain.top_share(explain.fold_profiles(parts, explain.grid_regions(_grid(), _parcels())), 1)[
        2
    ] == pytest.approx(3 / 4)  # ...and first in 3 of 4 folds
    assert planted["fold_sign_agreement"] == 1.0
    assert planted["null_p"] == pytest.approx(1 / 40)  # no draw reaches 2.0 at SD 0.3
    assert planted["null_p_fwe"] == pytest.approx(1 / 40)
    assert planted["stable_above_null"] == "yes"
    assert noise["null_p_fwe"] > 0.05
    assert noise["stable_above_null"] == "no"
    assert noise["fold_sign_agreement"] < 1.0
    # without a null nothing is marked; stability needs no null
    bare = explain.region_table(means, _grid(), _parcels(), names, folds=parts)
    assert {r["stable_above_null"] for r in bare} == {"n/a"}
    assert all(math.isnan(r["null_p"]) for r in bare)
    assert bare[0]["fold_top_share"] == 1.0


def test_a_region_large_in_one_fold_only_is_unstable_though_above_the_null(rng):
    parts = _fold_parts(
        [{1: 8.0}, {1: 0.0, 2: 0.1, 3: 0.2}, {1: 0.0, 2: 0.2, 3: 0.1}, {1: 0.0, 2: 0.1, 3: 0.3}]
    )
    means = explain.held_out_means(parts)
    null = [{"1": float(a), "2": float(b), "3": float(c)} for a, b, c in rng.normal(0, 0.1, (39, 3))]
    row = explain.region_table(means, _grid(), _parcels(), {1: "A_L"}, top=1, folds=parts, null=null)[0]
    assert row["region"] == "A"
    assert row["null_p_fwe"] < 0.05  # pooled, it is far above the null...
    assert row["fold_top_share"] == pytest.approx(1 / 4)  # ...but only one fold model ranks it first
    assert row["stable_above_null"] == "no"


def test_the_null_draw_explains_each_fold_by_the_permuted_classes(monkeypatch):
    """FoldExplainer gives each fold's test units the class their permuted labels give them."""
    groups = np.array(["a", "b", "c", "d"])
    data = {
        "groups": groups,
        "subjects": groups,
        "sides": np.array(["L"] * 4),
        "y_subject": np.array([1, 1, 0, 0]),
    }
    monkeypatch.setattr(
        explain,
        "subject_saliency",
        lambda model, x, g, n_steps=16: (
            np.unique(g),
            np.stack([np.full(SHAPE, 1.0, np.float32) for _ in g]),
        ),
    )
    folds = explain.FoldExplainer(data, GroupParams())
    with pytest.raises(RuntimeError, match="no fold started"):
        folds(None, np.zeros((2, *SHAPE), np.float32))
    permuted = np.array([0, 1, 1, 0])
    folds.start({"test": np.array([0, 2])}, permuted)
    folds(None, np.zeros((2, *SHAPE), np.float32))
    folds.start({"test": np.array([1, 3])}, permuted)
    folds(None, np.zeros((2, *SHAPE), np.float32))
    assert [(int(p["n_severe"]), int(p["n_mild"])) for p in folds.parts] == [(1, 1), (1, 1)]
    assert [sorted(p["units"]) for p in folds.parts] == [["a", "c"], ["b", "d"]]
    # own labels would have made fold 1 all severe
    own: dict = {}
    explain.held_out_explainer(data, np.array([0, 1]), GroupParams(), own)(None, np.zeros((2, *SHAPE)))
    assert (int(own["n_severe"]), int(own["n_mild"])) == (2, 0)


def test_fold_by_fold_permutation_draws_score_as_the_whole_cross_validation(rng):
    """``on_fold`` sees every fold before it runs, with the permuted classes, and changes no score."""
    y = np.repeat([0, 1], 8)
    x = rng.normal(size=(16, 3)) + y[:, None]
    groups = np.array([f"s{i:02d}" for i in range(16)])

    def nearest_mean(train, y_train, g_train, test, seed=0):
        d0 = ((x[test] - x[train][y_train == 0].mean(0)) ** 2).sum(1)
        d1 = ((x[test] - x[train][y_train == 1].mean(0)) ** 2).sum(1)
        return 1 / (1 + np.exp(d1 - d0)), []

    seen = []
    kwargs = {"n_folds": 4, "n_repeats": 2, "seed": 0, "index": 3}
    plain = permutation.permutation_nulls(np.arange(16), y, groups, {"m": nearest_mean}, **kwargs)
    stepped = permutation.permutation_nulls(
        np.arange(16), y, groups, {"m": nearest_mean}, on_fold=lambda f, c: seen.append((f, c)), **kwargs
    )
    assert stepped == plain
    assert len(seen) == 8  # 4 folds x 2 repeats
    classes = seen[0][1]
    assert sorted(classes.tolist()) == sorted(y.tolist())  # a permutation of the labels...
    assert not np.array_equal(classes, y)  # ...not the labels


def test_a_draw_without_a_grid_or_a_permuted_cnn_has_no_saliency(tmp_path, monkeypatch):
    data_file = tmp_path / "data.npz"
    np.savez(data_file, y=np.array([0, 1, 0, 1]), groups=np.array(["a", "b", "c", "d"]))
    monkeypatch.setattr(permutation, "fold_models", lambda data, params, explain=None: {"parcel": None})
    monkeypatch.setattr(permutation, "permutation_nulls", lambda *a, **k: {"parcel": 0.5})
    params = GroupParams(cv=CVParams(n_permutations=1, permute_cnn=True))
    assert permutation.permutation_draw(data_file, 0, params) == ({"parcel": 0.5}, {})
    assert permutation.run_permutation(data_file, 0, params) == {"parcel": 0.5}


@pytest.mark.integration  # a tiny group run with 20 CNN permutations
def test_on_a_null_cohort_the_region_table_carries_its_null_and_the_report_withholds_it(
    tmp_path, rng, monkeypatch
):
    """Labels unrelated to the maps (the blob is in half of each class): the group level with the CNN
    permuted gives every region a fold stability and a permutation p, the CNN does not beat chance, and
    the report withholds the table and says why. 20 draws, so that p < 0.05 is reachable (1/21).

    The draws permute the CNN and the primary model (whose patterns the report shows or withholds by its
    p) only: the other linear models' draws (the elastic net's inner search most of all) were three
    quarters of this test's time; which models a draw permutes is tested in tests/test_evaluation.py, and
    group runs with every linear model permuted in tests/test_console.py and tests/test_slurm.py."""
    import json
    from dataclasses import replace

    import pandas as pd
    from helpers import tiny_group_maps

    import workflows.group
    from bids_app.config import build_config
    from bids_app.reports.group import write_group_report
    from workflows.group import init_group_wf
    from workflows.models import CNN_MODEL, PRIMARY_MODEL

    for module in (workflows.group, permutation):  # the plan of the workflow and of each draw
        monkeypatch.setattr(
            module,
            "permuted_models",
            lambda params: [PRIMARY_MODEL, CNN_MODEL] * (params.cv.n_permutations > 0),
        )

    # the blob is in the even subjects; severe are 0, 1, 4, 5, 8, 9: three with the blob, three without
    subjects = [
        replace(s, ul_fma=10.0 if (i // 2) % 2 == 0 else 40.0)
        for i, s in enumerate(tiny_group_maps(tmp_path, rng))
    ]
    n_draws = 20
    config = build_config(
        bids_dir=tmp_path / "bids",
        output_dir=tmp_path / "out",
        analysis_level="group",
        fmriprep_dir=tmp_path / "fmriprep",
        work_dir=tmp_path / "work",
        model=None,
        values={
            "cnn_resolution": 8.0,
            "cv_folds": 2,
            "cv_repeats": 1,
            "epochs": 2,
            "device": "cpu",
            "n_permutations": n_draws,
            "permute_cnn": True,
        },
    )
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects],
        params=config.group,
        output_dir=config.output_dir,
        shared_params={"Space": "MNI152NLin2009cAsym"},
    )
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")
    group = config.output_dir / "group"
    summary = json.loads((group / "cv_summary.json").read_text())
    cnn = summary["permutation"]["models"]["cnn"]
    assert len(cnn["null_balanced_accuracy"]) == n_draws
    assert cnn["p_value"] > 0.05, cnn  # a null cohort

    regions = pd.read_csv(group / "saliency_regions.tsv", sep="\t")
    assert list(regions.columns) == list(explain.REGION_COLUMNS)
    assert len(regions) == explain.TOP_REGIONS
    assert regions["fold_top_share"].between(0, 1).all()
    assert regions["fold_sign_agreement"].isin([0.0, 0.5, 1.0]).all()  # two fold models
    # every region has its null (the TSV keeps 6 digits); the top regions' own p are small, as regions
    # picked for their size among hundreds would be: hence the correction over regions
    assert regions["null_p"].between(1 / (n_draws + 1) - 1e-6, 1).all()
    assert (regions["null_p_fwe"] >= regions["null_p"]).all()
    assert regions["null_p_fwe"].min() > 0.05  # no region stands out from the permuted-label CNNs
    assert set(regions["stable_above_null"]) == {"no"}
    sidecar = json.loads((group / "saliency_regions.json").read_text())
    assert sidecar["Null"]["Draws"] == n_draws
    assert sidecar["Stability"]["FoldModels"] == 2
    assert -1 <= sidecar["Stability"]["FoldProfileSpearman"] <= 1

    assert set(summary["permutation"]["models"]) == {PRIMARY_MODEL, CNN_MODEL}

    # the primary model explained too (its activation patterns), shown only when it beats chance
    from workflows.activation_patterns import PATTERN_COLUMNS

    patterns = pd.read_csv(group / "parcel_patterns.tsv", sep="\t")
    assert list(patterns.columns) == list(PATTERN_COLUMNS)
    assert patterns["fold_top_share"].between(0, 1).all()

    page = write_group_report(config, subjects, {}).read_text()
    assert "Region table withheld: the CNN does not beat chance (permutation p = " in page
    assert "<th>null_p_fwe</th>" not in page  # the table itself is not shown
    primary_p = summary["permutation"]["models"][PRIMARY_MODEL]["p_value"]
    assert ("Pattern table withheld" in page) == (primary_p >= 0.05)


def test_a_cnn_permutation_draw_keeps_its_region_saliency_and_stores_it(tmp_path, monkeypatch):
    """A real (tiny) draw: the permuted CNNs of both folds explain their own test subjects, the draw
    keeps one value per region and stores it with its scores; a rerun reads both back."""
    import json

    from workflows.params import TrainSettings

    gen = np.random.default_rng(0)
    n = 8
    y = np.arange(n) % 2
    x = gen.normal(size=(n, *SHAPE)).astype(np.float32)
    data_file = tmp_path / "group_inputs.npz"
    save_group_inputs(data_file, x, y, _parcels(), gen.normal(size=(n, 3)))
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(_grid()))
    params = GroupParams(
        cv=CVParams(cv_folds=2, cv_repeats=1, n_permutations=1, permute_cnn=True),
        train=TrainSettings(device="cpu", epochs=1, min_epochs=1, channels=(2, 2, 2, 2)),
    )
    monkeypatch.setattr(permutation, "permuted_models", lambda params: ["cnn"])  # the linear models: cost
    seen = []
    real = explain.held_out_explainer
    monkeypatch.setattr(explain, "held_out_explainer", lambda *a, **k: seen.append(a[1]) or real(*a, **k))
    draws = tmp_path / "draws"
    draw = permutation.permutation_draw(data_file, 0, params, draws, grid_file)
    assert set(draw.null) == {"cnn"}
    assert set(draw.saliency) == {"1", "2", "3"}  # label 9 has one voxel
    assert all(np.isfinite(v) for v in draw.saliency.values())
    assert sorted(np.concatenate(seen).tolist()) == list(range(n))  # each subject by the fold testing it
    stored = json.loads(next(draws.rglob("draw-*.json")).read_text())
    assert stored["saliency"] == draw.saliency
    seen.clear()
    assert permutation.permutation_draw(data_file, 0, params, draws, grid_file) == draw
    assert seen == []  # read back, not computed
    # a draw stored without saliency (an earlier run without the grid) is computed again when asked
    assert permutation.permutation_draw(data_file, 1, params, draws).saliency == {}
    assert permutation.permutation_draw(data_file, 1, params, draws, grid_file).saliency
    assert seen
