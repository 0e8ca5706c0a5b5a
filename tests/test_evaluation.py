"""Subject-level cross-validation: no leakage, in-fold fitting, metrics, baseline, a group run."""

import json
import math
from dataclasses import replace
from functools import partial

import nibabel as nb
import numpy as np
import pytest
from helpers import fewer_group_bootstrap_draws

from workflows import cross_validation as xv
from workflows import models, permutation, stats
from workflows.params import CVParams, GroupParams, TrainSettings


def _null(x, y, groups, fit_predict, **kwargs):
    """One permutation draw of a single model's mean balanced accuracy."""
    return permutation.permutation_nulls(x, y, groups, {"m": fit_predict}, **kwargs)["m"]


def _cohort(rng, n_subjects=20, per_subject=1, shape=(6, 7, 8), effect=0.0):
    """Samples whose values encode their subject (value = subject id + small noise) and labels."""
    groups = np.repeat(np.arange(n_subjects), per_subject)
    y = (groups % 2).astype(int)
    x = rng.normal(size=(len(groups), *shape)).astype(np.float32)
    x[y == 1, 1:4, 1:4, 1:4] += effect
    return x, y, groups


@pytest.mark.parametrize("per_subject", [1, 4])
def test_folds_never_put_a_subject_on_both_sides(rng, per_subject):
    _, y, groups = _cohort(rng, n_subjects=17, per_subject=per_subject)
    folds = xv.subject_folds(y, groups, n_folds=5, n_repeats=3, seed=1)
    assert len(folds) == 15
    for repeat in range(3):
        tested = []
        for fold in [f for f in folds if f["repeat"] == repeat]:
            train, test = set(groups[fold["train"]]), set(groups[fold["test"]])
            assert train.isdisjoint(test)
            assert set(fold["train"]).isdisjoint(fold["test"])
            # every sample of a test subject is in the test set
            assert len(fold["test"]) == per_subject * len(test)
            assert set(y[fold["test"]]) == {0, 1}  # stratified: both classes tested
            tested += list(test)
        assert sorted(tested) == list(range(17))  # each subject tested exactly once per repeat
    # repeats are different shuffles
    assert not np.array_equal(folds[0]["test"], folds[5]["test"])


def test_check_folds_refuses_a_leaky_split():
    groups = np.array([0, 0, 1, 1])
    with pytest.raises(RuntimeError, match="both training and test"):
        xv.check_folds(
            [{"repeat": 0, "fold": 0, "train": np.array([0, 2]), "test": np.array([1, 3])}], groups
        )


def test_folds_are_lowered_to_the_smaller_class():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert xv.effective_folds(y, np.arange(10), 5) == 3
    with pytest.raises(ValueError, match="at least 2 per class"):
        xv.effective_folds(np.array([1, 0, 0, 0]), np.arange(4), 2)


def test_models_and_normalisers_never_see_test_subjects(rng, monkeypatch):
    """Spy on what reaches the fit of each model, the CNN's normaliser and the baseline's scaler."""
    from sklearn.preprocessing import StandardScaler

    from workflows import cnn
    from workflows.models import baseline_fit_predict, cnn_fit_predict

    n, per = 8, 2
    groups = np.repeat(np.arange(n), per)
    y = (groups % 2).astype(int)
    x = (groups[:, None, None, None] * 100.0 + rng.normal(size=(len(groups), 5, 6, 7))).astype(np.float32)

    def subject_of(arr):
        return set(np.round(np.asarray(arr).reshape(len(arr), -1).mean(1) / 100).astype(int))

    seen = {"normaliser": [], "scaler": [], "fit": []}
    fit_normaliser, scaler_fit = cnn.fit_normaliser, StandardScaler.fit

    def spy_normaliser(model, x_train, **kw):
        seen["normaliser"].append(subject_of(x_train))
        return fit_normaliser(model, x_train, **kw)

    def spy_scaler(self, X, *args, **kw):
        seen["scaler"].append(subject_of(X))
        return scaler_fit(self, X, *args, **kw)

    monkeypatch.setattr(cnn, "fit_normaliser", spy_normaliser)
    monkeypatch.setattr(StandardScaler, "fit", spy_scaler)
    params = GroupParams(train=TrainSettings(epochs=1, device="cpu"))

    def spy_model(fit_predict):
        def wrapped(x_train, y_train, groups_train, x_test, **kw):
            seen["fit"].append(set(groups_train))
            return fit_predict(x_train, y_train, groups_train, x_test, **kw)

        return wrapped

    folds = xv.subject_folds(y, groups, n_folds=2, n_repeats=1, seed=0)
    models = {
        "cnn": spy_model(partial(cnn_fit_predict, params=params)),
        "baseline": spy_model(baseline_fit_predict),
    }
    predictions, metrics, _ = xv.cross_validate(x, y, groups, folds, models)
    assert len(seen["normaliser"]) == len(seen["scaler"]) == 2
    assert len(seen["fit"]) == 4
    for i, fold in enumerate(folds):
        test = set(groups[fold["test"]])
        assert seen["normaliser"][i]
        assert seen["normaliser"][i].isdisjoint(test)
        assert seen["scaler"][i]
        assert seen["scaler"][i].isdisjoint(test)
        assert seen["fit"][2 * i].isdisjoint(test)
        assert seen["fit"][2 * i + 1].isdisjoint(test)
    # predictions are per subject (windows averaged), each subject once per model and repeat
    assert len(predictions) == 2 * n
    assert {p["participant_id"] for p in predictions} == {str(g) for g in range(n)}
    assert len(metrics) == 4


def test_baseline_learns_a_planted_signal_and_not_noise(rng):
    x, y, groups = _cohort(rng, n_subjects=30, effect=1.5)
    folds = xv.subject_folds(y, groups, 5, 2, seed=0)
    _, metrics, _ = xv.cross_validate(x, y, groups, folds, {"baseline": models.baseline_fit_predict})
    summary = stats.summarise_models(metrics)["baseline"]
    assert summary["balanced_accuracy"]["mean"] > 0.85
    assert summary["roc_auc"]["mean"] > 0.9
    x0, y0, g0 = _cohort(rng, n_subjects=30, effect=0.0)
    _, metrics0, _ = xv.cross_validate(
        x0, y0, g0, xv.subject_folds(y0, g0, 5, 2, seed=0), {"baseline": models.baseline_fit_predict}
    )
    assert stats.summarise_models(metrics0)["baseline"]["balanced_accuracy"]["mean"] < 0.75


def test_permutation_keeps_subjects_whole_and_gives_a_small_p_for_a_real_effect(rng):
    x, y, groups = _cohort(rng, n_subjects=20, per_subject=3, effect=2.0)
    y_perm = permutation.permute_subject_labels(y, groups, np.random.default_rng(0))
    assert np.bincount(y_perm).tolist() == np.bincount(y).tolist()
    for g in np.unique(groups):
        assert len(set(y_perm[groups == g])) == 1
    # the null is drawn as the group workflow draws it: one permutation_null per index
    null = [_null(x, y, groups, models.baseline_fit_predict, n_folds=4, seed=0, index=i) for i in range(9)]
    assert stats.permutation_p_value(1.0, null) == pytest.approx(0.1)
    assert max(null) < 0.9
    assert stats.permutation_p_value(0.5, [0.6, 0.4, 0.5]) == pytest.approx(3 / 4)


def test_metrics_and_summary():
    m = stats.classification_metrics([1, 1, 0, 0], [0.9, 0.4, 0.2, 0.6])
    assert m["sensitivity"] == 0.5
    assert m["specificity"] == 0.5
    assert m["balanced_accuracy"] == 0.5
    assert m["roc_auc"] == 0.75
    assert math.isnan(stats.classification_metrics([1, 1], [0.9, 0.8])["roc_auc"])
    s = stats.summarise([0.6, 0.8, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.75)
    assert s["ci95"][0] < 0.75 < s["ci95"][1] <= 1.0
    assert stats.summarise([1.0, 1.0])["ci95"] == [1.0, 1.0]
    subjects, prob = xv.subject_mean(np.array([0.2, 0.4, 0.9]), np.array(["a", "a", "b"]))
    assert list(subjects) == ["a", "b"]
    assert prob.tolist() == pytest.approx([0.3, 0.9])


@pytest.mark.integration
def test_group_workflow_writes_the_contract(tmp_path, rng, monkeypatch):
    """A tiny group run (12 subjects, 8 mm, 2 folds, 2 epochs): every contract output, a loadable model."""
    from helpers import tiny_group_maps

    from workflows.group import init_group_wf
    from workflows.model_io import load_arrays
    from workflows.prediction import predict_subject

    subjects = [  # ages for the clinical baseline (one unknown: imputed in-fold)
        replace(s, clinical={"age": float("nan") if i == 3 else 50.0 + 2 * i})
        for i, s in enumerate(tiny_group_maps(tmp_path, rng))
    ]
    out = tmp_path / "out"
    params = GroupParams(
        cnn_resolution=8.0,
        cv=CVParams(cv_folds=2, cv_repeats=1),
        train=TrainSettings(epochs=2, device="cpu"),
    )
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects],
        params=params,
        output_dir=out,
        shared_params={"Space": "MNI152NLin2009cAsym"},
    )
    fewer_group_bootstrap_draws(monkeypatch)  # the records are checked, not the intervals
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")
    group = out / "group"
    summary = json.loads((group / "cv_summary.json").read_text())
    # no static-FC or mean-dFC maps were given: those two controls are left out, the rest run
    assert set(summary["models"]) == {
        "cnn",
        "baseline",
        "parcel",
        "parcel_l1",
        "parcel_enet",
        "motor_prior",  # the maps are lesion-aligned
        "confounds",
        "clinical",
    }
    assert summary["primary_model"] == "parcel"
    assert set(summary["bootstrap"]) == set(summary["models"])
    assert "difference_from_parcel" in summary["bootstrap"]["cnn"]
    assert set(summary["paired_tests"]) == {
        "cnn",
        "baseline",
        "parcel_l1",
        "parcel_enet",
        "motor_prior",
        "confounds",
        "clinical",
    }
    clinical = summary["clinical_value"]  # the primary model's value over the clinical baseline
    assert clinical["covariates"] == ["age"]  # no lesion mask: no lesion volume
    assert 0.0 <= clinical["test_result"]["p_value"] <= 1.0
    assert clinical["test_result"]["n_units"] == 12
    conformal = summary["conformal"]  # every held-out prediction of the primary model got a set
    assert conformal["n_predictions"] == 12
    assert 0.0 <= conformal["empirical_coverage"] <= 1.0
    assert len(conformal["folds"]) == 2
    for model in ("cnn", "baseline"):
        assert set(summary["models"][model]) == set(stats.METRICS)
        assert len(summary["models"][model]["balanced_accuracy"]["ci95"]) == 2
    assert summary["n_subjects"] == 12
    assert summary["class_counts"] == {"severe": 6, "mild-to-moderate": 6}
    assert (summary["cv"]["folds"], summary["cv"]["repeats"], summary["cv"]["grouped_by"]) == (
        2,
        1,
        "subject",
    )
    assert summary["permutation"] is None
    assert summary["samples"] == "maps"
    assert summary["cnn_parameters"] > 0
    rows = (group / "cv_predictions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == [
        "participant_id",
        "repeat",
        "fold",
        "model",
        "y_true",
        "prob_severe",
        "prediction_set",
        "conformal_threshold",
        "conformal_covered",
    ]
    assert len(rows) == 1 + len(summary["models"]) * 12  # every model predicts every subject once
    sets = [r.split("\t")[6] for r in rows[1:]]
    assert sum(s != "n/a" for s in sets) == 12  # the primary model's rows only
    assert not any("None" in r.split("\t") for r in rows)  # an infinite threshold is n/a
    assert (group / "training_curves.tsv").read_text().startswith("repeat\tfold\tepoch\ttrain_loss\tval_loss")
    cohort = (group / "cohort.tsv").read_text().splitlines()
    assert cohort[0].split("\t")[:7] == [
        "participant_id",
        "session",
        "ul_fma",
        "class",
        "lesion_side",
        "included",
        "reason",
    ]
    quality = [
        "mean_fd_mm",
        "censored_fraction",
        "volumes_kept",
        "windows_kept",
        "dof_remaining",
        "lesion_volume_ml",
    ]
    assert cohort[0].split("\t")[7:] == quality
    assert set(summary["quality_by_class"]) <= set(quality)
    for name in ("severe", "mild", "difference"):
        assert nb.load(group / f"desc-{name}_dfcsd.nii.gz").ndim == 3
        sidecar = json.loads((group / f"desc-{name}_dfcsd.json").read_text())
        assert sidecar["LesionAligned"] is True
        assert sidecar["Grid"]["Shape"] == list(nb.load(group / f"desc-{name}_dfcsd.nii.gz").shape)
    sal = nb.load(group / "desc-heldoutsaliency_map.nii.gz")
    values = np.asarray(sal.dataobj)
    assert values.max() > 0 > values.min()  # signed
    sal_meta = json.loads((group / "desc-heldoutsaliency_map.json").read_text())
    assert sal_meta["HeldOut"] is True
    assert sal_meta["SubjectMapsAveraged"] == 12  # 12 subjects x 1 repeat, each by the fold that tested it
    assert sal_meta["Space"] == "MNI152NLin2009cAsym"
    for cls in ("severe", "mild"):
        assert nb.load(group / f"desc-heldoutsaliency{cls}_map.nii.gz").shape == sal.shape
        assert (group / f"desc-heldoutsaliency{cls}_map.json").is_file()
    regions = (group / "saliency_regions.tsv").read_text().splitlines()
    assert regions[0].split("\t") == [
        "region",
        "side",
        "class_difference",
        "mean_saliency_severe",
        "mean_saliency_mild",
        "mean_saliency",
        "n_voxels",
        "fold_top_share",
        "fold_sign_agreement",
        "null_p",
        "null_p_fwe",
        "stable_above_null",
    ]
    assert 1 < len(regions) <= 21
    # no CNN permutation here: stability, but no null
    assert {r.split("\t")[-1] for r in regions[1:]} == {"n/a"}
    assert (group / "parcel_patterns.tsv").is_file()  # the primary model explained too
    sides = {"ipsilesional", "contralesional", "bilateral (midline)"}
    assert {r.split("\t")[1] for r in regions[1:]} <= sides
    assert "mean_saliency" in json.loads((group / "saliency_regions.json").read_text())
    assert not (group / "desc-saliency_map.nii.gz").exists()  # the final model explains nobody
    arrays, card = load_arrays(out / "model")  # the primary parcel model, exported by default
    assert card["ModelType"] == "parcel_linear"
    assert arrays["parcels"].shape == sal.shape
    assert card["DeployedModel"]["model"] == "parcel"
    assert (
        card["DeployedModel"]["balanced_accuracy"]["value"]
        == (summary["bootstrap"]["parcel"]["balanced_accuracy"]["value"])
    )
    calibration = card["DeployedModel"]["calibration"]  # in-CV, from the out-of-fold predictions
    assert calibration == summary["calibration_metrics"]
    assert calibration["model"] == "parcel"
    assert {"calibration_intercept", "calibration_slope", "brier", "scaled_brier"} <= set(calibration)
    assert card["TrainingCohort"]["Participants"]["N"] == 12
    assert card["input"]["grid"]["shape"] == list(sal.shape)
    assert card["label"]["severe_threshold"] == 20.0
    assert card["input"]["align_lesion"] is True
    assert isinstance(card["cross_validation"]["cnn"]["balanced_accuracy"], float)
    assert (summary["n_subjects"], summary["n_sessions"]) == (12, 12)
    # provenance: every table's columns described, atlases cited by checksum, the training cohort
    for table in ("cohort", "cv_predictions", "training_curves", "saliency_regions"):
        sidecar = json.loads((group / f"{table}.json").read_text())
        header = (group / f"{table}.tsv").read_text().splitlines()[0].split("\t")
        assert all(sidecar[c]["Description"] != "undocumented column" for c in header), table
    assert json.loads((group / "cohort.json").read_text())["ul_fma"]["Units"] == "points"
    regions_atlas = json.loads((group / "saliency_regions.json").read_text())["Atlas"]
    assert regions_atlas["Name"] == "HCPEx"
    assert card["Atlases"]["saliency_regions"]["SHA256"] == regions_atlas["SHA256"]
    assert card["Atlases"]["parcels"]["Name"] == "HCPEx"
    assert card["TrainingCohort"]["ClassCounts"] == {"severe": 6, "mild-to-moderate": 6}
    assert card["TrainingCohort"]["LesionSidesByClass"]["severe"] == {"L": 4, "R": 2}
    assert card["TrainingCohort"]["VoxelSize_mm"] == [8.0]
    assert card["IntendedUse"].startswith("Research only")
    # the exported model's conformal calibration: one score per CV prediction of the primary model
    assert card["conformal"]["coverage"] == 0.9
    assert card["conformal"]["n_calibration"] == 12
    assert len(card["conformal"]["scores"]) == 12
    result = predict_subject(
        subjects[1].map_file,
        out / "model",
        subject="01",
        lesion_side="L",
        space="",
        meta={"Space": "MNI152NLin2009cAsym"},
    )
    assert result["prediction_set"] in ("severe", "mild-to-moderate", "mild-to-moderate|severe", "none")
    assert result["conformal_coverage"] == 0.9


# ------------------------------------------------------------ the parcel model and the controls
def _parcel_cohort(effect, n=48, shape=(12, 13, 14), seed=0, confound_shift=0.0):
    """i.i.d. voxel maps in 8 box parcels; the severe half gets +effect SD in parcel 3 only."""
    gen = np.random.default_rng(seed)
    parcels = np.zeros(shape, int)
    for k, (i, j) in enumerate([(a, b) for a in (0, 6) for b in (0, 6)], start=1):
        parcels[i : i + 6, j : j + 6, :7] = k
        parcels[i : i + 6, j : j + 6, 7:] = k + 4
    x = gen.normal(size=(n, *shape)).astype(np.float32)
    y = (np.arange(n) % 2).astype(int)
    gen.shuffle(y)
    x[y == 1] += effect * (parcels == 3)
    qc = gen.normal(size=(n, 4)) + confound_shift * y[:, None]
    return x, y, np.arange(n).astype(str), parcels, qc


def _cv(x, y, groups, fit_predict, repeats=1, n_folds=5):
    folds = xv.subject_folds(y, groups, n_folds, repeats, seed=0)
    _, metrics, _ = xv.cross_validate(x, y, groups, folds, {"m": fit_predict})
    return float(np.mean([m["balanced_accuracy"] for m in metrics]))


@pytest.mark.integration  # 65 nested cross-validated fits (about 20 CPU s)
def test_parcel_model_finds_a_parcel_effect_and_not_a_null():
    from functools import partial

    from workflows.models import parcel_fit_predict, parcel_matrix

    x, y, groups, parcels, _ = _parcel_cohort(0.5)
    operator, ids = parcel_matrix(parcels)
    assert ids.tolist() == list(range(1, 9))
    model = partial(parcel_fit_predict, operator=operator)
    assert _cv(x, y, groups, model) >= 0.8
    x0, y0, g0, _, _ = _parcel_cohort(0.0, seed=3)
    # the null: 19 draws (the fewest for which p > 0.05 can fail), 3 folds on both sides of the test
    null = [_null(x0, y0, g0, model, n_folds=3, seed=0, index=i) for i in range(19)]
    observed = _cv(x0, y0, g0, model, n_folds=3)
    assert 0.3 <= observed <= 0.7
    assert stats.permutation_p_value(observed, null) > 0.05


def test_confound_model_flags_a_class_difference_in_motion_only():
    from workflows.models import confound_fit_predict

    _x, y, groups, _, qc = _parcel_cohort(0.0, confound_shift=1.5)
    assert _cv(qc, y, groups, confound_fit_predict) >= 0.75
    _, y0, g0, _, qc0 = _parcel_cohort(0.0, seed=5)
    assert 0.3 <= _cv(qc0, y0, g0, confound_fit_predict) <= 0.7


def test_bootstrap_comparison_and_corrected_ttest():
    from workflows.stats import bootstrap_comparison, corrected_resampled_ttest

    gen = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    rows = []
    for model, noise in (("good", 0.2), ("chance", 5.0)):
        p = 1 / (1 + np.exp(-((y - 0.5) * 4 + gen.normal(scale=noise, size=y.size))))
        rows += [
            {"participant_id": f"sub-{i}", "repeat": 0, "model": model, "y_true": int(t), "prob_severe": v}
            for i, (t, v) in enumerate(zip(y, p))
        ]
    out = bootstrap_comparison(rows, "good", n_boot=300)
    assert out["good"]["balanced_accuracy"]["ci95"][0] > 0.8
    assert out["chance"]["balanced_accuracy"]["ci95"][0] < 0.5 < out["chance"]["balanced_accuracy"]["ci95"][1]
    diff = out["chance"]["difference_from_good"]["balanced_accuracy"]
    assert diff["ci95"][1] < 0
    assert diff["p_two_sided"] < 0.05
    # the corrected test is more conservative than the naive paired t-test on the same differences
    d = [0.05, 0.1, 0.0, 0.08, 0.12, 0.02, 0.07, 0.04, 0.09, 0.03]
    corrected = corrected_resampled_ttest(d, test_fraction=0.25)
    from scipy import stats

    naive = stats.ttest_1samp(d, 0.0).pvalue
    assert corrected["p_two_sided"] > naive
    assert corrected["mean_difference"] == pytest.approx(np.mean(d))


@pytest.mark.parametrize(
    ("n_subjects", "repeats", "sessions"), [(12, 1, 1), (9, 3, 1), (10, 2, 3), (7, 1, 2)]
)
def test_bootstrap_of_all_draws_at_once_equals_draw_by_draw(n_subjects, repeats, sessions):
    """The default scores of equal-length draws are computed for every draw at once: the same numbers,
    bit for bit, as the draw-by-draw path (a scores callable of one's own), with tied probabilities,
    draws of one class (NaN), a missing prediction, repeats and subjects with several sessions."""
    from workflows.stats import bootstrap_comparison, classification_scores

    gen = np.random.default_rng(n_subjects)
    rows, clusters = [], {}
    for model in ("a", "b", "c"):
        for repeat in range(repeats):
            for i in range(n_subjects):
                for k in range(sessions):
                    unit = f"sub-{i:02d}" + (f"_ses-{k}" if sessions > 1 else "")
                    clusters[unit] = f"sub-{i:02d}"
                    prob = round(float(gen.random()), 1)  # ties
                    if (model, repeat, i, k) == ("c", 0, 2, 0):
                        prob = float("nan")
                    row = {"participant_id": unit, "repeat": repeat, "model": model, "prob_severe": prob}
                    rows.append({**row, "y_true": int(i % 3 == 0)})
    kwargs = {"n_boot": 200, "clusters": clusters if sessions > 1 else None}
    at_once = bootstrap_comparison(rows, ["a", "b"], **kwargs)
    one_by_one = bootstrap_comparison(
        rows, ["a", "b"], scores=lambda y, p: classification_scores(y, p), **kwargs
    )
    assert json.dumps(at_once, sort_keys=True) == json.dumps(one_by_one, sort_keys=True)


def test_parcel_model_copes_with_one_training_subject_in_a_class():
    from workflows.models import parcel_fit_predict, parcel_matrix

    x, y, groups, parcels, _ = _parcel_cohort(1.0, n=6)
    y[:] = [1, 0, 0, 0, 0, 1]
    operator, _ = parcel_matrix(parcels)
    train = np.array([0, 1, 2, 3])  # one severe subject
    prob, curve = parcel_fit_predict(x[train], y[train], groups[train], x[4:], operator=operator)
    assert prob.shape == (2,)
    assert curve == []


def test_permutations_leave_the_cnn_out_unless_asked(tmp_path, monkeypatch):
    """Each draw permutes every linear model; the CNN (folds x repeats trainings per draw) only on request."""
    data_file = tmp_path / "data.npz"
    np.savez(data_file, y=np.array([0, 1, 0, 1]), groups=np.array(["a", "b", "c", "d"]))
    seen = []
    monkeypatch.setattr(permutation, "fold_models", lambda data, params, *_: {"cnn": None, "parcel": None})
    monkeypatch.setattr(permutation, "permutation_nulls", lambda *a, **k: seen.append(sorted(a[3])) or {})
    permutation.run_permutation(data_file, 0, GroupParams(cv=CVParams(n_permutations=1)))
    permutation.run_permutation(data_file, 0, GroupParams(cv=CVParams(n_permutations=1, permute_cnn=True)))
    assert seen == [["parcel"], ["cnn", "parcel"]]
    # the same decision names the permuted models in the methods text and adds the node to the graph
    assert models.permuted_models(GroupParams(cv=CVParams(n_permutations=1)))[0] == models.PRIMARY_MODEL
    assert models.CNN_MODEL not in models.permuted_models(GroupParams(cv=CVParams(n_permutations=1)))
    regression = models.permuted_models(GroupParams(target="regression", cv=CVParams(n_permutations=1)))
    assert regression[0] == models.PRIMARY_MODEL  # the MAE is permuted too
    assert "mean" not in regression  # the training-mean reference has nothing to test
    assert models.CNN_MODEL not in regression
