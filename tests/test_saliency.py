"""Held-out saliency (each fold's CNN explains only its own test subjects), permutation nulls, calibration."""

import json
from functools import partial

import nibabel as nb
import numpy as np
import pytest
import torch
from helpers import save_group_inputs

from workflows import cross_validation as xv
from workflows import explain, permutation, stats
from workflows.cnn import StrokeCNN
from workflows.grid import grid_to_dict
from workflows.models import CNN_MODEL, PRIMARY_MODEL
from workflows.params import CVParams, GroupParams, TrainSettings

SHAPE = (12, 13, 14)  # deliberately unequal, to catch axis mix-ups


def _grid(shape=SHAPE, vox=4.0):
    """A fully masked grid of ``shape`` whose voxel centres are symmetric about world x = 0."""
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = [-(shape[0] - 1) * vox / 2, -30.0, -20.0]
    return grid_to_dict(
        aff, shape, np.ones(shape, bool), source_shape=shape, source_affine=aff, resolution=vox
    )


def _box_parcels(shape=SHAPE):
    """8 box parcels: x halves (left 1-4, right 5-8) x y halves x z halves; parcel 3 is left."""
    parcels = np.zeros(shape, np.int32)
    hx, hy, hz = (s // 2 for s in shape)
    k = 1
    for xs in (slice(0, hx), slice(hx, None)):
        for ys in (slice(0, hy), slice(hy, None)):
            for zs in (slice(0, hz), slice(hz, None)):
                parcels[xs, ys, zs] = k
                k += 1
    return parcels


def test_integrated_gradients_are_signed_and_sum_to_the_log_odds_difference(rng):
    torch.manual_seed(0)
    model = StrokeCNN(SHAPE, TrainSettings(channels=(2, 4, 4, 4)))
    model.in_mean.copy_(torch.from_numpy(rng.normal(size=SHAPE).astype(np.float32)))
    model.eval()
    x = rng.normal(size=(3, *SHAPE)).astype(np.float32)
    attr = explain.integrated_gradients(model, x, n_steps=64)
    assert attr.shape == x.shape
    assert (attr > 0).any()
    assert (attr < 0).any()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        base = model(model.in_mean[None])
    log_odds = (logits[:, 1] - logits[:, 0]).numpy()
    base_odds = float(base[0, 1] - base[0, 0])
    # completeness: the attributions of a sample add up to its log-odds minus the baseline's
    np.testing.assert_allclose(attr.reshape(3, -1).sum(1), log_odds - base_odds, atol=0.02)


def test_held_out_means_average_subjects_then_classes():
    maps = np.stack([np.full(SHAPE, v, np.float32) for v in (1.0, 3.0, -2.0, 0.0)])
    parts = [explain.class_sums(maps[:2], np.array([1, 0])), explain.class_sums(maps[2:], np.array([1, 0]))]
    means = explain.held_out_means(parts)
    assert means["all"][0, 0, 0] == pytest.approx(0.5)
    assert means["severe"][0, 0, 0] == pytest.approx(-0.5)
    assert means["mild"][0, 0, 0] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no held-out saliency"):
        explain.held_out_means([])


def test_region_sides_relative_to_the_lesion_and_midline_parcels_bilateral():
    assert explain.region_side("Primary_Motor_Cortex_L", np.array([-30.0, -20.0])) == (
        "Primary_Motor_Cortex",
        "ipsilesional",
    )
    assert explain.region_side("Insula_R", np.array([30.0, 40.0, 35.0]))[1] == "contralesional"
    # a medial parcel whose grid voxels straddle x = 0 mixes both hemispheres
    assert explain.region_side("Anterior_Cingulate_L", np.array([-6.0, -2.0, 2.0, 6.0])) == (
        "Anterior_Cingulate",
        "bilateral (midline)",
    )
    assert explain.region_side("Vermis_1_2", np.array([-2.0, -6.0]))[1] == "bilateral (midline)"
    grid = _grid()
    parcels = _box_parcels()
    sal = np.zeros(SHAPE, np.float32)
    sal[parcels == 3] = 2.0
    sal[parcels == 6] = -1.0
    rows = explain.region_table(
        {"all": 0.5 * sal, "severe": sal, "mild": 0 * sal}, grid, parcels, {3: "A_L", 6: "B_R"}, top=3
    )
    assert [(r["region"], r["side"], r["class_difference"]) for r in rows[:2]] == [
        ("A", "ipsilesional", 2.0),
        ("B", "contralesional", -1.0),
    ]
    assert (rows[0]["mean_saliency_mild"], rows[0]["mean_saliency"]) == (0.0, 1.0)
    assert len(rows) == 3
    assert rows[2]["class_difference"] == 0.0


def _planted_inputs(path, effect, n=32, seed=0):
    """A group_inputs.npz as prepare_inputs writes it: i.i.d. maps, +effect SD in parcel 3 if severe."""
    gen = np.random.default_rng(seed)
    parcels = _box_parcels()
    x = gen.normal(size=(n, *SHAPE)).astype(np.float32)
    y = (np.arange(n) % 2).astype(int)
    gen.shuffle(y)
    x[y == 1] += effect * (parcels == 3)
    labels = save_group_inputs(path, x, y, parcels, gen.normal(size=(n, 6)))
    return x, y, labels, parcels


def test_each_fold_explains_only_its_test_subjects_and_finds_the_planted_region(tmp_path, monkeypatch):
    """A planted +3 SD parcel: every fold's CNN explains its own test subjects only (never one it was
    trained on), and the held-out saliency is positive and concentrated in the planted parcel."""
    torch.set_num_threads(1)
    data_file = tmp_path / "group_inputs.npz"
    x, y, labels, parcels = _planted_inputs(data_file, 3.0)
    seen: list[np.ndarray] = []
    original = explain.subject_saliency

    def spy(model, xs, groups, n_steps=16):
        seen.append(np.asarray(groups))
        for g, sample in zip(groups, xs):  # the very test maps, nothing from training
            np.testing.assert_array_equal(sample, x[labels == g][0])
        return original(model, xs, groups, n_steps)

    monkeypatch.setattr(explain, "subject_saliency", spy)
    # each fold fits the CNN (explained) and the primary model (the fold's conformal sets and learning
    # curve need it); the other models' fits explain nothing and are left out
    fold_models = xv.fold_models
    monkeypatch.setattr(
        xv,
        "fold_models",
        lambda *a, **k: {n: f for n, f in fold_models(*a, **k).items() if n in (CNN_MODEL, PRIMARY_MODEL)},
    )
    params = GroupParams(
        cv=CVParams(cv_folds=4, cv_repeats=1), train=TrainSettings(device="cpu", channels=(4, 8, 8, 8))
    )
    subjects = [{"label": s, "score": 10.0 if t else 40.0} for s, t in zip(labels, y)]
    folds = xv.plan_folds(subjects, params)
    outputs = [xv.run_fold(data_file, fold, params, tmp_path) for fold in folds]
    with open(outputs[0].out_file) as f:
        assert {m["model"] for m in json.load(f)["metrics"]} == {CNN_MODEL, PRIMARY_MODEL}
    assert len(seen) == len(folds)
    for fold, tested, out in zip(folds, seen, outputs):
        assert sorted(tested) == sorted(fold["test"])  # the fold's test units, all of them, only them
        with np.load(out.saliency_file) as part:
            assert sorted(part["units"]) == sorted(fold["test"])
            assert int(part["n_severe"]) + int(part["n_mild"]) == len(fold["test"])
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps(_grid()))
    files = explain.summarise_saliency(
        [o.saliency_file for o in outputs],
        data_file,
        grid_file,
        params,
        tmp_path / "out",
        "MNI152NLin2009cAsym",
    )
    out = tmp_path / "out"
    severe = np.asarray(nb.load(out / "desc-heldoutsaliencysevere_map.nii.gz").dataobj)
    mild = np.asarray(nb.load(out / "desc-heldoutsaliencymild_map.nii.gz").dataobj)
    assert files.saliency_file == str(out / "desc-heldoutsaliency_map.nii.gz")
    planted = parcels == 3
    # the planted region pushes the held-out severe subjects toward severe, the mild ones toward mild
    assert severe[planted].mean() > 0 > mild[planted].mean()
    difference = severe - mild
    assert difference[planted].mean() > 5 * np.abs(difference[~planted]).mean()  # and little else does
    meta = json.loads((tmp_path / "out" / "desc-heldoutsaliency_map.json").read_text())
    assert meta["SubjectMapsAveraged"] == len(labels)
    assert meta["HeldOut"] is True
    header, top = (
        line.split("\t") for line in (tmp_path / "out" / "saliency_regions.tsv").read_text().splitlines()[:2]
    )
    top = dict(zip(header, top))
    from workflows.seeds import atlas_labels

    name = {v: k for k, v in atlas_labels("HCPEx").items()}[3]
    assert top["region"] == name[:-2]
    assert float(top["class_difference"]) > 0
    # stable: every fold's CNN, on its own test subjects, agrees on its sign and ranks it first of 8
    assert float(top["fold_sign_agreement"]) == 1.0
    assert float(top["fold_top_share"]) == 1.0  # top 20 of 8 regions: trivially; the top 1 is not
    parts = []
    for o in outputs:
        with np.load(o.saliency_file) as part:
            parts.append({k: part[k] for k in ("sum_severe", "sum_mild", "n_severe", "n_mild")})
    regions = explain.grid_regions(_grid(), parcels)
    first = explain.top_share(explain.fold_profiles(parts, regions), 1)
    assert first[list(regions.labels).index(3)] == 1.0
    assert (top["null_p"], top["stable_above_null"]) == ("n/a", "n/a")  # no permutation here
    stability = json.loads((out / "saliency_regions.json").read_text())["Stability"]
    assert stability["FoldModels"] == len(folds)


def _indexed(fit_predict, data):
    """A model of sample indices that looks its inputs up in ``data`` (as the group level's models)."""

    def fit(idx_train, y_train, g_train, idx_test, seed=0):
        return fit_predict(data[idx_train], y_train, g_train, data[idx_test], seed=seed)

    return fit


@pytest.mark.integration  # full nested cross-validations under permutation (about 16 CPU s)
def test_parcel_model_permutation_p_is_small_on_a_planted_effect_and_large_on_a_null():
    from workflows.models import confound_fit_predict, parcel_fit_predict, parcel_matrix

    parcels = _box_parcels()
    operator, _ = parcel_matrix(parcels)
    for effect, seed, small, n_draws in ((1.0, 0, True, 19), (0.0, 4, False, 9)):
        gen = np.random.default_rng(seed)
        x = gen.normal(size=(40, *SHAPE)).astype(np.float32)
        y = (np.arange(40) % 2).astype(int)
        gen.shuffle(y)
        x[y == 1] += effect * (parcels == 3)
        qc = gen.normal(size=(40, 2))
        groups = np.arange(40).astype(str)
        # models of sample indices, as the group level's fold_models: the parcel model and a cheap one
        models = {
            "parcel": _indexed(partial(parcel_fit_predict, operator=operator), x),
            "qc": _indexed(confound_fit_predict, qc),
        }
        # 2 folds on both sides of the test: the p-value compares like with like (4 cost twice as much)
        folds = xv.subject_folds(y, groups, 2, 1, seed=0)
        _, metrics, _ = xv.cross_validate(np.arange(40), y, groups, folds, {"parcel": models["parcel"]})
        observed = float(np.mean([m["balanced_accuracy"] for m in metrics]))
        # every draw cross-validates both models with 1 repeat, as the observed score (the same number of
        # folds on both sides is what matters; 2 repeats doubled the cost for the same p-values)
        draws = [
            permutation.permutation_nulls(
                np.arange(40), y, groups, models, n_folds=2, n_repeats=1, seed=0, index=i
            )
            for i in range(n_draws)
        ]
        assert all(set(d) == {"parcel", "qc"} for d in draws)
        assert len({d["qc"] for d in draws}) > 1  # each draw is a different permutation
        p = stats.permutation_p_value(observed, [d["parcel"] for d in draws])
        # small: the observed score beats all 19 draws (p = 1/20); large: at least one of the 9 draws
        # reaches it (p > 1/10, the smallest p that 9 draws can give; p > 0.05 could not fail)
        assert (p <= 0.05) if small else (p > 1 / (n_draws + 1)), (effect, observed, p)


def test_permutation_summary_covers_every_model_with_the_observed_repeats():
    from workflows.permutation import permutation_summary

    models = {
        "parcel": {"balanced_accuracy": {"mean": 0.9}},
        "cnn": {"balanced_accuracy": {"mean": 0.5}},
    }
    null = [{"parcel": 0.5 + 0.01 * i, "cnn": 0.45 + 0.02 * i} for i in range(9)]
    out = permutation_summary(models, null, GroupParams(cv=CVParams(cv_repeats=3)))
    assert out["model"] == "parcel"
    assert out["repeats"] == 3
    assert out["n"] == 9
    assert out["p_value"] == pytest.approx(0.1)  # no null draw reaches 0.9: 1 / (1 + 9)
    assert out["models"]["cnn"]["p_value"] == pytest.approx(7 / 10)  # 0.51..0.61: 6 draws >= 0.5, +1
    assert out["models"]["parcel"]["null_balanced_accuracy"] == [d["parcel"] for d in null]


def test_calibration_points_follow_the_diagonal_only_for_calibrated_probabilities():
    from workflows.plotting import calibration_points

    gen = np.random.default_rng(0)
    p = gen.uniform(size=20_000)
    y = gen.uniform(size=p.size) < p  # outcomes drawn with the stated probabilities
    xs, ys, ns = calibration_points(p, y, n_bins=5)
    assert ns.sum() == p.size
    assert len(xs) == 5
    np.testing.assert_allclose(ys, xs, atol=0.02)
    # over-confident probabilities (pushed toward 0 and 1) leave the diagonal
    sharp = 1 / (1 + np.exp(-4 * np.log(p / (1 - p))))
    xs2, ys2, _ = calibration_points(sharp, y, n_bins=5)
    assert np.abs(ys2 - xs2).max() > 0.1


def test_in_fold_calibration_fixes_overconfident_probabilities_from_training_subjects_only():
    from workflows.calibration import calibrated, fit_calibrator

    gen = np.random.default_rng(1)
    n = 400
    score = gen.normal(size=n)
    y = (gen.uniform(size=n) < 1 / (1 + np.exp(-score))).astype(int)  # true risk: sigmoid(score)
    groups = np.arange(n).astype(str)
    x = score[:, None]
    seen_test: list[np.ndarray] = []

    def overconfident(x_train, y_train, g_train, x_test, seed=0):
        """A 'model' whose probabilities are far too sharp (sigmoid of 4 x the true log-odds)."""
        seen_test.append(np.asarray(x_test))
        return 1 / (1 + np.exp(-4 * x_test[:, 0])), []

    train, test = np.arange(300), np.arange(300, n)
    raw, _ = overconfident(x[train], y[train], groups[train], x[test])
    seen_test.clear()
    fixed, _ = calibrated(overconfident, "sigmoid")(x[train], y[train], groups[train], x[test], seed=0)
    # the inner refits predicted training subjects only; the test subjects went through the outer fit once
    assert sum(len(s) for s in seen_test) == len(test) + len(train)
    assert sum(np.isin(s, x[test]).all() and len(s) == len(test) for s in seen_test) == 1
    truth = 1 / (1 + np.exp(-score[test]))
    assert np.mean((fixed - truth) ** 2) < 0.2 * np.mean((raw - truth) ** 2)
    assert np.mean((fixed - y[test]) ** 2) < np.mean((raw - y[test]) ** 2)  # Brier score improves
    # the Platt map of a sharp model undoes the sharpening: about sigmoid(logit / 4)
    p = np.array([0.1, 0.5, 0.9])
    mapped = fit_calibrator(1 / (1 + np.exp(-4 * score)), y)(p)
    np.testing.assert_allclose(mapped, 1 / (1 + np.exp(-np.log(p / (1 - p)) / 4)), atol=0.06)
    iso = fit_calibrator(1 / (1 + np.exp(-4 * score)), y, "isotonic")(p)
    assert iso[0] < iso[1] < iso[2]
    assert calibrated(overconfident, "none") is overconfident
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_calibrator(p, np.array([0, 1, 1]), "beta")


def test_calibration_option_recalibrates_every_model_but_the_cnn(tmp_path, monkeypatch):
    from bids_app import parser
    from workflows import models
    from workflows.calibration import calibration_text

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    cfg = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "group", "--calibration", "isotonic"])
    assert cfg.group.calibration == "isotonic"
    data_file = tmp_path / "group_inputs.npz"
    _planted_inputs(data_file, 1.0, n=24)
    data = dict(np.load(data_file))
    plain = models.fold_models(data, GroupParams())
    recal = models.fold_models(data, GroupParams(calibration="isotonic"))
    idx, y, groups = np.arange(24), data["y"], data["groups"]
    train, test = idx[:16], idx[16:]
    for name in ("parcel", "confounds"):
        p0, _ = plain[name](train, y[train], groups[train], test, seed=0)
        p1, _ = recal[name](train, y[train], groups[train], test, seed=0)
        assert not np.allclose(p0, p1)
        assert ((p1 >= 0) & (p1 <= 1)).all()
    wrapped: list[str] = []

    def spy(model, method):
        wrapped.append(method)
        return model

    monkeypatch.setattr(models, "calibrated", spy)
    fitted = models.fold_models(data, GroupParams(calibration="isotonic"))
    assert wrapped == ["isotonic"] * (len(fitted) - 1)  # every model but the CNN
    assert "isotonic" in calibration_text(GroupParams(calibration="isotonic"))
    assert calibration_text(GroupParams()).startswith("none")
    with pytest.raises(Exception, match="calibration 'beta' is unknown"):
        GroupParams(calibration="beta")


def test_held_out_explainer_takes_a_few_windows_per_subject_and_mirrors_right_lesions(monkeypatch):
    """Window samples: at most SALIENCY_WINDOWS per test subject; without lesion alignment, right-lesion
    subjects' saliency is mirrored onto the left before the class sums."""

    groups = np.repeat(["a", "b", "c"], [10, 2, 6])
    assert explain.saliency_samples(groups, 4).tolist() == [0, 3, 6, 9, 10, 11, 12, 14, 15, 17]
    data = {
        "groups": groups,
        "subjects": np.array(["a", "b", "c"]),
        "sides": np.array(["L", "R", "L"]),
        "y_subject": np.array([1, 1, 0]),
    }
    test = np.flatnonzero(groups != "a")  # subjects b and c are this fold's test subjects
    left = np.zeros(SHAPE, np.float32)
    left[:3] = 1.0  # saliency on world-left voxels only
    calls = []

    def fake_saliency(model, x, g, n_steps=16):
        calls.append(list(g))
        units = np.unique(g)
        return units, np.stack([left.copy() for _ in units])

    monkeypatch.setattr(explain, "subject_saliency", fake_saliency)
    out: dict = {}
    params = GroupParams(samples="windows", align_lesion=False)
    explain.held_out_explainer(data, test, params, out)(None, np.zeros((len(test), *SHAPE), np.float32))
    assert calls == [["b", "b", "c", "c", "c", "c"]]  # 2 of b's windows, 4 of c's 6
    assert sorted(out["units"]) == ["b", "c"]
    assert (int(out["n_severe"]), int(out["n_mild"])) == (1, 1)
    np.testing.assert_array_equal(out["sum_severe"], left[::-1])  # b (right lesion) mirrored
    np.testing.assert_array_equal(out["sum_mild"], left)
    with pytest.raises(RuntimeError, match="not the fold's test units"):
        explain.held_out_explainer(data, test, params, {})(None, np.zeros((3, *SHAPE), np.float32))
