"""External validation metrics against scikit-learn on a tiny known example."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, confusion_matrix, roc_auc_score

from workflows.external_validation import calibration_bins, validation_summary

Y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
P = np.array([0.9, 0.7, 0.4, 0.2, 0.6, 0.1, 0.8, 0.3])
SUBJECTS = ["01", "02", "03", "04", "05", "06", "07", "08"]


def test_metrics_match_scikit_learn_computed_directly():
    summary = validation_summary(Y, P, SUBJECTS, n_boot=200)
    pred = (P >= 0.5).astype(int)
    assert summary["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(Y, pred))
    assert summary["balanced_accuracy"]["value"] == pytest.approx(0.75)  # 3/4 severe, 3/4 mild right
    assert summary["roc_auc"]["value"] == pytest.approx(roc_auc_score(Y, P))
    assert summary["roc_auc"]["value"] == pytest.approx(15 / 16)  # 0.4 ranks below one mild patient (0.6)
    assert summary["brier"]["value"] == pytest.approx(brier_score_loss(Y, P))
    assert summary["brier"]["value"] == pytest.approx(np.mean((P - Y) ** 2))
    assert summary["confusion"]["matrix"] == confusion_matrix(Y, pred).tolist() == [[3, 1], [1, 3]]
    assert summary["class_counts"] == {"severe": 4, "mild-to-moderate": 4}
    for name in ("balanced_accuracy", "roc_auc", "brier"):
        low, high = summary[name]["ci95"]
        assert low <= summary[name]["value"] <= high
        assert low < high


def test_calibration_bins_agree_with_calibration_curve_and_keep_empty_bins():
    rows = calibration_bins(Y, P, n_bins=5)
    assert len(rows) == 5
    assert sum(r["n"] for r in rows) == len(Y)
    observed, predicted = calibration_curve(Y, P, n_bins=5, strategy="uniform")
    filled = [r for r in rows if r["n"]]
    np.testing.assert_allclose([r["observed_severe"] for r in filled], observed)
    np.testing.assert_allclose([r["mean_predicted"] for r in filled], predicted)


def test_bootstrap_draws_subjects_with_all_their_sessions():
    """Two sessions per subject: the interval is drawn over 4 subjects, not 8 independent rows."""
    subjects = ["01", "01", "02", "02", "03", "03", "04", "04"]
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.4, 0.7, 0.1])
    summary = validation_summary(y, p, subjects, n_boot=300, seed=1)
    assert summary["n_subjects"] == 4
    assert summary["n_predictions"] == 8
    by_rows = validation_summary(y, p, [str(i) for i in range(8)], n_boot=300, seed=1)
    assert summary["roc_auc"]["value"] == by_rows["roc_auc"]["value"]
    assert summary["roc_auc"]["ci95"] != by_rows["roc_auc"]["ci95"]


@pytest.mark.integration
def test_a_model_applied_to_a_second_site_on_another_grid_and_tr(tmp_path):
    """A model whose training maps were 2 mm (TR 2 s) predicts a 4 mm site at TR 1.5 s: the maps are
    resampled to the model grid, the report says so, and the labelled summary equals scikit-learn's."""
    import json

    import nibabel as nb
    import pandas as pd
    from helpers import NO_QC, run_cli, simulate

    from strokefc_sim.grid import ORIGIN
    from strokefc_sim.params import GRIDS
    from workflows import model_io
    from workflows.cnn import StrokeCNN, fit_normaliser
    from workflows.grid import make_grid, template_mask
    from workflows.metadata import shared_parameters
    from workflows.params import TrainSettings
    from workflows.utils.bids import resolve_bids_uri

    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = ORIGIN
    ref = nb.Nifti1Image(np.ones(GRIDS[2], np.float32), aff)
    grid = make_grid(ref, template_mask(ref), 8.0)
    model = StrokeCNN(grid["shape"], TrainSettings(channels=(2, 2, 4, 4)))
    fit_normaliser(model, np.random.default_rng(0).normal(size=(4, *grid["shape"])).astype(np.float32))
    meta = {  # the site's defaults, at the model's TR of 2 s
        "Space": "MNI152NLin2009cAsym",
        "WindowLength_s": 44.0,  # the default window (WindowParams.window_length)
        "WindowStep_vol": 1,
        "WindowShape": "rectangular",
        "WindowEstimator": "weighted",
        "MinWindowCoverage": 0.8,
        "Denoising": {"Strategy": "simple", "HighPass_Hz": 0.01, "LowPass_Hz": 0.08, "SmoothingFWHM_mm": 6.0},
    }
    card = {
        "input": {"grid": grid, "space": meta["Space"], "align_lesion": True, "samples": "maps"},
        "label": {"severe_threshold": 20.0},
        "dfc_parameters": shared_parameters(meta),
    }
    model_dir = model_io.save_model(model, card, tmp_path / "model")

    # 120 s: about 50 windows of 44 s; seed 3 gives a mild (sub-01, left lesion) and a severe patient
    # (sub-02, right lesion): both classes for the labelled summary, and both lesion sides
    bids = simulate(tmp_path, n_subjects=2, n_volumes=80, tr=1.5, seed=3)
    out = tmp_path / "out"
    args = ("--work-dir", tmp_path / "work", "--nprocs", 1, "--null-surrogates", 0, *NO_QC)
    assert run_cli(bids, out, "participant", "--model", model_dir, *args) == 0
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(table) == 2
    assert table["resampled"].all()
    assert (table["source_voxel_size_mm"] == 4.0).all()
    assert (table["model_source_voxel_size_mm"] == 2.0).all()
    assert table["ul_fma_true"].notna().all()
    y = (table["class_true"] == "severe").to_numpy(int)
    assert y.tolist() == [0, 1]
    prob = table["prob_severe"].to_numpy(float)
    summary = json.loads((out / "predictions_summary.json").read_text())
    assert summary["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, prob >= 0.5))
    assert summary["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, prob))
    assert summary["brier"]["value"] == pytest.approx(brier_score_loss(y, prob), abs=1e-5)
    assert summary["maps_resampled"] == 2
    # provenance that survives a move: the map as written (not the work dir) and the model, as BIDS URIs
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    for path in sorted(out.glob("sub-*/func/*_desc-ulfma_prediction.json")):
        record = json.loads(path.read_text())
        assert record["map_file"].startswith("bids::sub-"), record["map_file"]
        assert resolve_bids_uri(record["map_file"], out, links).is_file()
        assert record["model_dir"] == "bids:model:model"
        assert resolve_bids_uri(record["model_dir"], out, links).resolve() == model_dir.resolve()
    sidecar = json.loads((out / "predictions.json").read_text())
    assert sidecar["resampled"]["Description"]
    html = (out / "predictions.html").read_text()
    assert "External validation" in html
    assert "resampled (linear) to the model" in html
    assert "Calibration" in html


def test_bootstrap_scores_equal_scikit_learn_to_rounding():
    """The draws are scored with NumPy (workflows.stats); each score equals scikit-learn's, ties included."""
    from workflows.external_validation import _point

    rng = np.random.default_rng(4)
    for _ in range(20):
        y = rng.integers(0, 2, 15)
        y[:2] = [0, 1]
        prob = np.round(rng.uniform(0, 1, 15), 1)  # rounded: tied probabilities
        got = _point(y, prob, 0.5)
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, prob >= 0.5), abs=1e-12)
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-12)
        assert got["brier"] == pytest.approx(brier_score_loss(y, prob), abs=1e-12)
    assert np.isnan(_point(np.ones(3, int), np.full(3, 0.7), 0.5)["roc_auc"])
