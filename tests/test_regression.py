"""UL-FMA regression (--target regression): metrics, nested-CV models, the CNN head, the option."""

import math

import numpy as np
import pytest
from helpers import fewer_group_bootstrap_draws

from workflows import cross_validation as xv
from workflows import models, stats
from workflows.cnn import predict_score, train_model
from workflows.models import parcel_matrix
from workflows.params import GroupParams, TrainSettings
from workflows.utils.errors import InputError


def test_regression_metrics_against_direct_formulas():
    y = np.array([5.0, 15.0, 25.0, 40.0, 60.0])
    p = np.array([10.0, 12.0, 30.0, 35.0, 50.0])
    m = stats.regression_metrics(y, p, threshold=20)
    assert m["mae"] == pytest.approx(np.mean(np.abs(y - p)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert m["r2"] == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y, p)[0, 1])
    assert m["spearman_r"] == pytest.approx(1.0)  # same order
    assert m["balanced_accuracy"] == 1.0  # both severe (<= 20) predicted <= 20, the rest above
    wrong = stats.regression_metrics(y, np.array([30.0, 30.0, 10.0, 10.0, 10.0]), threshold=20)
    assert wrong["balanced_accuracy"] == 0.0
    flat = stats.regression_metrics(y, np.full(5, 29.0), threshold=20)  # the mean reference
    assert math.isnan(flat["pearson_r"])
    assert math.isnan(flat["spearman_r"])
    assert flat["r2"] == pytest.approx(0.0)
    assert math.isnan(stats.regression_metrics(y[2:], p[2:], threshold=20)["balanced_accuracy"])


def _parcel_cohort(rng, n=40, shuffle=False):
    """Maps on a 6x6x6 grid of 8 parcels; the score is a planted linear function of parcel 1's mean."""
    parcels = np.zeros((6, 6, 6), dtype=int)
    parcels[:3, :3, :3], parcels[3:, :3, :3], parcels[:3, 3:, :3], parcels[3:, 3:, :3] = 1, 2, 3, 4
    parcels[:3, :3, 3:], parcels[3:, :3, 3:], parcels[:3, 3:, 3:], parcels[3:, 3:, 3:] = 5, 6, 7, 8
    signal = rng.normal(size=n)
    x = rng.normal(size=(n, 6, 6, 6)).astype(np.float32)
    x[:, :3, :3, :3] += signal[:, None, None, None]
    y = np.clip(33 + 15 * signal + rng.normal(scale=4, size=n), 0, 66)
    if shuffle:
        y = rng.permutation(y)
    return x, y, np.arange(n), parcel_matrix(parcels)[0]


def _out_of_fold(x, y, groups, fits, threshold=20.0):
    folds = xv.subject_folds((y <= threshold).astype(int), groups, 5, 1, seed=0)
    preds, metrics, _ = xv.cross_validate(
        x,
        y,
        groups,
        folds,
        fits,
        metrics=lambda t, p: stats.regression_metrics(t, p, threshold),
        value="predicted_score",
    )
    references = [r for r in models.REGRESSION_REFERENCES if r in {m["model"] for m in metrics}]
    return preds, {
        "models": stats.summarise_regression_models(metrics),
        "bootstrap": stats.regression_bootstrap(preds, references, threshold, n_boot=300),
    }


def test_planted_linear_relation_is_learned_and_a_null_is_not(rng):
    """Nested-CV parcel ridge: r > 0.5 and R² > 0 on a planted relation; R² <= ~0 on shuffled scores."""
    for shuffle in (False, True):
        x, y, groups, operator = _parcel_cohort(rng, shuffle=shuffle)
        context = models.FitContext(GroupParams(target="regression"), operator)
        fits = {name: models.MODELS[name].build(context) for name in ("parcel", "baseline", "mean")}
        preds, summary = _out_of_fold(x, y, groups, fits)
        assert {r["model"] for r in preds} == {"parcel", "baseline", "mean"}
        assert "predicted_score" in preds[0]
        assert isinstance(preds[0]["y_true"], float)
        parcel = summary["bootstrap"]["parcel"]
        verdict = stats.beats(summary["bootstrap"], "parcel", "mean")
        if not shuffle:
            assert parcel["pearson_r"]["value"] > 0.5
            assert parcel["r2"]["value"] > 0
            assert parcel["balanced_accuracy"]["value"] > 0.7
            assert verdict == "better"
            _low, high = parcel["difference_from_mean"]["mae"]["ci95"]
            assert high < 0  # lower MAE than the mean reference in every bootstrap interval
        else:
            assert parcel["r2"]["value"] <= 0.05
            assert verdict in ("same", "worse")
        # the mean reference scores R² <= 0 out of fold (the training mean is not the test mean)
        assert summary["bootstrap"]["mean"]["r2"]["value"] <= 0.0
        assert set(summary["models"]["parcel"]) == set(stats.REGRESSION_METRICS)


def test_external_validation_of_a_regression_model_matches_direct_formulas(rng):
    import pandas as pd

    from bids_app.reporting import external_validation

    y = rng.uniform(0, 66, 30)
    p = y + rng.normal(scale=8, size=30)
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:02d}" for i in range(30)],
            "predicted_ul_fma": p.astype(str),
            "predicted_class": np.where(p <= 20, "severe", "mild-to-moderate"),
            "ul_fma_true": y.astype(str),
        }
    )
    out = external_validation(table, threshold=20)
    assert out["target"] == "regression"
    assert out["n_labelled"] == 30
    assert out["mae"]["value"] == pytest.approx(np.mean(np.abs(y - p)))
    assert out["pearson_r"]["value"] == pytest.approx(np.corrcoef(y, p)[0, 1])
    low, high = out["r2"]["ci95"]
    assert low <= out["r2"]["value"] <= high


def test_inner_splits_keep_subjects_together(rng):
    groups = np.repeat(np.arange(9), 3)
    splits = models.inner_splits("regression", np.zeros(len(groups)), groups, seed=1)
    assert len(splits) == 5
    for train, test in splits:
        assert set(groups[train]).isdisjoint(groups[test])
    assert models.inner_splits("regression", np.zeros(3), np.array([0, 0, 1]), seed=0) is None


def test_mean_reference_counts_each_subject_once():
    y = np.array([10.0, 10.0, 10.0, 40.0])  # subject a has three samples, b one
    pred, _ = models.mean_fit_predict(np.zeros((4, 1)), y, np.array(["a", "a", "a", "b"]), np.zeros((2, 1)))
    assert pred.tolist() == [25.0, 25.0]


def test_cnn_regression_head_learns_a_global_score(rng):
    """The same training loop with one output: a score carried by the whole map is recovered."""
    n = 24
    scores = np.linspace(5, 60, n)
    x = (rng.normal(size=(n, 8, 8, 8)) + (scores[:, None, None, None] - 33) / 15).astype(np.float32)
    settings = TrainSettings(epochs=10, min_epochs=10, channels=(2, 4, 4, 4), device="cpu", seed=0)
    model, curve = train_model(x, scores, np.arange(n), settings, regression=True)
    assert model.n_classes == 1
    assert float(model.target_mean) == pytest.approx(np.mean(scores[np.isfinite(scores)]), abs=10)
    pred = predict_score(model, x)
    assert pred.shape == (n,)
    assert np.corrcoef(pred, scores)[0, 1] > 0.8
    assert len(curve) >= 1


def test_target_option_reaches_the_group_parameters(tmp_path):
    from bids_app import parser
    from bids_app.config import read_toml, to_toml

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    default = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "group"])
    assert default.group.target == "classification"
    config = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "group", "--target", "regression"])
    assert config.group.target == "regression"
    assert config.group.to_dict()["target"] == "regression"
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(config))
    assert read_toml(saved)["options"]["target"] == "regression"
    again = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "group", "--config-file", str(saved)])
    assert again.group.target == "regression"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([str(tmp_path), str(tmp_path / "out"), "group", "--target", "rest"])
    assert exc.value.code == 2
    with pytest.raises(InputError, match=r"GroupParams\.target"):
        GroupParams(target="regresion")


@pytest.mark.integration
def test_group_level_regression_end_to_end(tmp_path, rng, capsys, monkeypatch):
    """A tiny group run with --target regression: every model on the same folds, the regression summary,
    a one-output model that predicts a score at the participant level, and the report's reportlet."""
    import json

    import pandas as pd
    from helpers import tiny_group_maps

    from bids_app.config import build_config
    from bids_app.group_level import _print_metrics
    from bids_app.reports.group import regression_sentences, write_group_report
    from workflows.group import init_group_wf
    from workflows.model_io import load_arrays
    from workflows.prediction import predict_subject

    subjects = tiny_group_maps(tmp_path, rng, spread=1.0)
    config = build_config(
        bids_dir=tmp_path / "bids",
        output_dir=tmp_path / "out",
        analysis_level="group",
        fmriprep_dir=tmp_path / "fmriprep",
        work_dir=tmp_path / "work",
        model=None,
        values={
            "target": "regression",
            "cnn_resolution": 8.0,
            "cv_folds": 2,
            "cv_repeats": 1,
            "epochs": 2,
            "device": "cpu",
            "n_permutations": 2,  # the scores are permuted, the statistic is the MAE
        },
    )
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects],
        params=config.group,
        output_dir=config.output_dir,
        shared_params={"Space": "MNI152NLin2009cAsym"},
    )
    assert "permutation" in wf.list_node_names()
    fewer_group_bootstrap_draws(monkeypatch)  # the records are checked, not the intervals
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")
    group = config.output_dir / "group"
    summary = json.loads((group / "cv_summary.json").read_text())
    assert summary["target"] == "regression"
    assert summary["settings"]["target"] == "regression"
    assert set(summary["models"]) == {
        "cnn",
        "baseline",
        "parcel",
        "motor_prior",
        "confounds",
        "mean",
    }  # no clinical
    for model in summary["models"]:
        assert set(summary["models"][model]) == set(stats.REGRESSION_METRICS)
        assert set(summary["bootstrap"][model]) >= set(stats.REGRESSION_METRICS)
    assert "difference_from_mean" in summary["bootstrap"]["parcel"]
    assert "difference_from_confounds" in summary["bootstrap"]["parcel"]
    permutation = summary["permutation"]
    assert permutation["n"] == 2
    assert set(permutation["models"]) == {
        "parcel",
        "motor_prior",
        "baseline",
        "confounds",
    }  # not the mean, not the CNN
    assert all(0 < v < 66 for v in permutation["models"]["parcel"]["null_mae"])  # UL-FMA points
    assert permutation["models"]["parcel"]["observed_mae"] == summary["models"]["parcel"]["mae"]["mean"]
    assert summary["detectable_effect"]["n_subjects"] == 12
    assert any(w["code"] == "few_subjects" for w in summary["warnings"])  # 12 < 20 subjects
    assert set(summary["paired_tests"]) == {"cnn", "motor_prior", "baseline", "confounds", "mean"}
    preds = pd.read_csv(group / "cv_predictions.tsv", sep="\t")
    assert list(preds.columns) == [
        "participant_id",
        "repeat",
        "fold",
        "model",
        "y_true",
        "predicted_score",
        "interval_lower",
        "interval_upper",
        "conformal_threshold",
        "conformal_covered",
    ]
    assert len(preds) == 6 * 12  # six models, 12 subjects
    primary = preds[preds["model"] == "parcel"]  # conformal UL-FMA intervals of the primary model
    assert (primary["interval_lower"] <= primary["predicted_score"]).all()
    assert (primary["predicted_score"] <= primary["interval_upper"]).all()
    inside = (primary["interval_lower"] <= primary["y_true"]) & (
        primary["y_true"] <= primary["interval_upper"]
    )
    assert (inside.astype(int) == primary["conformal_covered"]).all()
    assert preds.loc[preds["model"] != "parcel", "interval_lower"].isna().all()
    assert summary["conformal"]["empirical_coverage"] == pytest.approx(inside.mean())
    truth = {f"sub-{s.subject}": s.ul_fma for s in subjects}
    assert all(preds["y_true"] == preds["participant_id"].map(truth))  # the score, not the class
    mean_rows = preds[preds["model"] == "mean"]
    for _fold, rows in mean_rows.groupby("fold"):  # the mean reference is the *training* subjects' mean
        train = [v for k, v in truth.items() if k not in set(rows["participant_id"])]
        assert rows["predicted_score"].to_numpy() == pytest.approx(np.mean(train))

    saliency = json.loads((group / "desc-heldoutsaliency_map.json").read_text())
    assert "predicted UL-FMA" in saliency["Description"]
    assert saliency["HeldOut"] is True
    assert saliency["SubjectMapsAveraged"] == 12  # each subject explained by the fold that tested it
    _, card = load_arrays(config.output_dir / "model")  # the primary parcel model (ridge)
    assert card["ModelType"] == "parcel_linear"
    assert card["features"]["link"].startswith("identity")
    assert card["target"] == "regression"
    assert card["label"]["target"] == "regression"
    assert "mae" in card["cross_validation"]["cnn"]
    assert "mae" in card["DeployedModel"]
    assert "calibration_slope" in card["DeployedModel"]["calibration"]
    meta = {"Space": "MNI152NLin2009cAsym"}
    result = predict_subject(
        subjects[0].map_file, config.output_dir / "model", subject="00", lesion_side="R", space="", meta=meta
    )
    assert result["prob_severe"] is None
    assert isinstance(result["predicted_ul_fma"], float)
    expected = "severe" if result["predicted_ul_fma"] <= 20 else "mild-to-moderate"
    assert result["predicted_class"] == expected
    assert result["ul_fma_lower"] <= result["predicted_ul_fma"] <= result["ul_fma_upper"]

    _print_metrics(summary)  # the mean reference's correlations are null in JSON: printed as n/a
    console = capsys.readouterr().out.splitlines()
    printed = [line for line in console if line.startswith("  Training mean (reference): ")]
    assert any(line.startswith("  Warning: 12 subjects (fewer than 20)") for line in console)
    assert "pearson_r n/a ± n/a" in printed[0]
    page = write_group_report(config, subjects, {}).read_text()
    assert "UL-FMA regression: models on the same folds" in page
    sentences = " ".join(regression_sentences(summary))  # each model against both references
    assert "Training mean (reference)" in sentences
    assert "Motion/QC only (control)" in sentences
    assert sentences.split(". ")[0] in page
    assert (group / "figures" / "desc-regression_cv.svg").stat().st_size > 0
    assert "could not be drawn" not in page
    assert "predict the UL-FMA score itself" in (config.output_dir / "logs" / "CITATION.md").read_text()
    # a regression has a learning curve in points, no decision curves and no (binary) sample size
    learning = pd.read_csv(group / "learning_curves.tsv", sep="\t")
    assert list(learning.columns)[-2:] == ["balanced_accuracy", "mae"]
    assert (learning["mae"] >= 0).all()
    assert not (group / "decision_curves.tsv").exists()
    assert "No decision curves: decision curves need predicted probabilities" in page
    assert "No sample-size figure" in page
    assert (group / "figures" / "desc-learning_cv.svg").stat().st_size > 0
