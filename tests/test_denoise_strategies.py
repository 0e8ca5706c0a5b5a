"""Every denoising strategy on one generated run: the regressors it uses, a clean output, and what it
removes (the global signal for ``+gsr``, the lesion's signal for ``+lesion``)."""

import nibabel as nb
import numpy as np
import pytest
from helpers import simulate

from workflows.denoise import STRATEGIES, DenoiseParams, denoise_run

#: The confound families each strategy regresses, written here rather than read from STRATEGIES.
EXPECTED = {
    "simple": {"motion", "wm_csf"},
    "simple+gsr": {"motion", "wm_csf", "global_signal"},
    "scrubbing": {"motion", "wm_csf"},
    "compcor": {"motion", "high_pass", "compcor"},
    "simple+lesion": {"motion", "wm_csf", "lesion"},
    "compcor+lesion": {"motion", "high_pass", "compcor", "lesion"},
}
FAMILIES = {
    "trans_": "motion",
    "rot_": "motion",
    "white_matter": "wm_csf",
    "csf": "wm_csf",
    "global_signal": "global_signal",
    "a_comp_cor_": "compcor",
    "cosine": "high_pass",
    "lesion_": "lesion",
}


def family(column: str) -> str:
    return next(f for prefix, f in FAMILIES.items() if column.startswith(prefix))


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """BOLD, brain mask and lesion (bool on the BOLD grid) of one generated 100-volume run."""
    bids = simulate(tmp_path_factory.mktemp("strategies"), n_subjects=1, n_volumes=100, seed=4)
    sp = "space-MNI152NLin2009cAsym"
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    lesion = bids / "derivatives" / "lesions" / "sub-01" / "anat" / f"sub-01_{sp}_desc-lesion_mask.nii.gz"
    return (
        func / f"sub-01_task-rest_{sp}_desc-preproc_bold.nii.gz",
        func / f"sub-01_task-rest_{sp}_desc-brain_mask.nii.gz",
        np.asarray(nb.load(lesion).dataobj) > 0,
    )


def _denoise(run_files, strategy):
    bold, mask, lesion = run_files
    return denoise_run(
        bold, mask, 2.0, DenoiseParams(strategy=strategy, smoothing_fwhm=None), lesion_mask=lesion
    )


def test_every_strategy_is_tested():
    assert set(STRATEGIES) == set(EXPECTED)


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
def test_strategy_regresses_its_own_confounds_and_gives_clean_series(run_files, strategy):
    run = _denoise(run_files, strategy)
    columns = list(run.design.columns)
    assert {family(c) for c in columns} == EXPECTED[strategy], columns
    assert sum(family(c) == "motion" for c in columns) == 24  # 6 parameters, derivatives, squares
    assert run.info["ConfoundRegressors"] == len(columns)
    kept = run.data[run.kept]
    assert np.isfinite(run.data).all()
    np.testing.assert_allclose(kept.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(kept.std(axis=0, ddof=1), 1, atol=1e-2)
    assert ("LesionRegressors" in run.info) is strategy.endswith("+lesion")
    assert ("FDThreshold_mm" in run.info) is (strategy == "scrubbing")


def test_gsr_removes_the_global_mean(run_files):
    def global_sd(strategy):
        run = _denoise(run_files, strategy)
        return float(run.data[run.kept].mean(axis=1).std())

    # GSR removes at least 90% of the variance of the brain's mean signal left by "simple": measured 95%
    # (SD ratio 0.23) since the simulator's WM/CSF samples left the planted regions; the earlier bound of
    # an SD ratio under 0.2 (96%) held only before that fix
    assert global_sd("simple+gsr") ** 2 < 0.1 * global_sd("simple") ** 2


@pytest.mark.parametrize("strategy", ["simple+lesion", "compcor+lesion"])
def test_lesion_regressors_come_from_the_lesion_given(run_files, strategy):
    """The mean and 4 principal components of the lesion's own voxels (its cavity artefact is removed
    in test_lesions.py)."""
    _, mask, lesion = run_files
    info = _denoise(run_files, strategy).info["LesionRegressors"]
    assert info["Voxels"] == int((lesion & (np.asarray(nb.load(mask).dataobj) > 0)).sum()) > 0
    assert info["Columns"][0] == "lesion_mean"
    assert len(info["Columns"]) == 1 + DenoiseParams().lesion_components
