"""CNN inputs (lesion alignment, grid) and the CNN itself (shapes, determinism, in-fold normaliser)."""

import contextlib
import os
import warnings
from dataclasses import replace

import nibabel as nb
import numpy as np
import pytest
import torch

from strokefc_sim.planted import blob_cohort
from workflows import cnn
from workflows.grid import apply_grid, grid_mask, group_mask, make_grid, subsample_windows
from workflows.params import TrainSettings
from workflows.utils.errors import InputError

SHAPE = (12, 13, 14)  # deliberately unequal, to catch axis mix-ups


def _symmetric_affine(shape, vox=4.0):
    """A grid whose voxel centres are symmetric about world x = 0."""
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = [-(shape[0] - 1) * vox / 2, -30.0, -20.0]
    return aff


def _brain(shape=(16, 17, 18)):
    ijk = np.indices(shape).astype(float)
    centre = (np.array(shape)[:, None, None, None] - 1) / 2
    return (((ijk - centre) / (np.array(shape)[:, None, None, None] / 2.5)) ** 2).sum(0) < 1


def _tiny_data(rng, n_subjects=10, per_subject=1, shape=SHAPE):
    groups = np.repeat(np.arange(n_subjects), per_subject)
    y = (groups % 2).astype(int)
    x = rng.normal(size=(len(groups), *shape)).astype(np.float32)
    x[y == 1, 3:7, 3:7, 3:7] += 1.5
    return x, y, groups


# ----------------------------------------------------------------------------------------- inputs
def test_grid_crops_resamples_and_masks(rng):
    brain = _brain()
    aff = _symmetric_affine(brain.shape, 2.0)
    imgs = [
        nb.Nifti1Image((brain * (1 + 0.1 * rng.normal(size=brain.shape))).astype(np.float32), aff)
        for _ in range(3)
    ]
    mask = group_mask(imgs)
    assert mask.sum() == brain.sum()
    grid = make_grid(imgs[0], mask, resolution=4.0)
    # coarser than the source and covering the brain's bounding box only
    assert all(s <= b // 2 + 2 for s, b in zip(grid["shape"], brain.shape))
    assert grid["source_shape"] == list(brain.shape)
    # symmetric about x = 0
    x0 = grid["affine"][0][3]
    assert np.isclose(x0 + (grid["shape"][0] - 1) * 4.0, -x0)
    x = apply_grid(imgs[0], grid, "L", align=True)
    assert x.shape == (1, *grid["shape"])
    assert x.dtype == np.float32
    assert np.all(x[0][~grid_mask(grid)] == 0)
    assert x[0][grid_mask(grid)].mean() == pytest.approx(1.0, abs=0.1)


def test_right_lesion_maps_are_mirrored_onto_the_left(rng):
    shape = (10, 11, 12)
    aff = _symmetric_affine(shape, 4.0)
    left = np.zeros(shape, np.float32)
    left[1:4, 3:8, 3:8] = 1.0  # signal in the left hemisphere (world x < 0)
    mask = np.ones(shape, bool)
    grid = make_grid(nb.Nifti1Image(left, aff), mask, resolution=4.0)
    as_left = apply_grid(nb.Nifti1Image(left, aff), grid, "L", align=True)[0]
    right = nb.Nifti1Image(left[::-1].copy(), aff)  # same pattern in the right hemisphere
    aligned = apply_grid(right, grid, "R", align=True)[0]
    np.testing.assert_allclose(aligned, as_left, atol=1e-5)
    not_aligned = apply_grid(right, grid, "R", align=False)[0]
    np.testing.assert_allclose(not_aligned, as_left[::-1], atol=1e-5)


def test_4d_windows_give_one_sample_per_volume(rng):
    shape = (8, 9, 10)
    aff = _symmetric_affine(shape)
    data = rng.random((*shape, 5)).astype(np.float32) + 0.5
    grid = make_grid(nb.Nifti1Image(data[..., 0], aff), np.ones(shape, bool), 4.0)
    x = apply_grid(nb.Nifti1Image(data, aff), grid, "L", align=True)
    assert x.shape == (5, *grid["shape"])
    assert list(subsample_windows(100, 20)) == sorted(set(subsample_windows(100, 20)))
    assert len(subsample_windows(100, 20)) == 20
    assert len(subsample_windows(7, 20)) == 7


def test_bad_lesion_side_and_mixed_grids_are_refused():
    aff = _symmetric_affine((4, 4, 4))
    with pytest.raises(InputError, match="lesion side"):
        apply_grid(nb.Nifti1Image(np.ones((4, 4, 4), np.float32), aff), {}, "X", True)
    with pytest.raises(InputError, match="different grids"):
        group_mask(
            [
                nb.Nifti1Image(np.ones((4, 4, 4), np.float32), aff),
                nb.Nifti1Image(np.ones((5, 4, 4), np.float32), aff),
            ]
        )


# -------------------------------------------------------------------------------------------- model
def test_model_shapes_and_parameter_count(rng):
    model = cnn.StrokeCNN(SHAPE, TrainSettings(channels=(2, 4, 4, 8)))
    x = rng.normal(size=(3, *SHAPE)).astype(np.float32)
    assert model(torch.from_numpy(x)).shape == (3, 2)
    p = cnn.predict_proba(model, x)
    assert p.shape == (3,)
    assert np.all((p >= 0) & (p <= 1))
    assert cnn.predict_proba(model, x[0]).shape == (1,)
    assert cnn.count_parameters(model) == model.architecture()["n_parameters"] > 0
    rebuilt = cnn.build_model(model.architecture())
    assert rebuilt.architecture() == model.architecture()


def test_training_is_deterministic_for_a_seed(rng):
    x, y, groups = _tiny_data(rng)
    settings = TrainSettings(epochs=2, channels=(2, 4, 4, 4), seed=3)
    before = torch.are_deterministic_algorithms_enabled()
    m1, c1 = cnn.train_model(x, y, groups, settings)
    m2, c2 = cnn.train_model(x, y, groups, settings)
    assert c1 == c2
    for key, value in m1.state_dict().items():
        assert torch.equal(value, m2.state_dict()[key]), key
    m3, _ = cnn.train_model(x, y, groups, TrainSettings(epochs=2, channels=(2, 4, 4, 4), seed=4))
    assert not torch.equal(m1.features[0].weight, m3.features[0].weight)
    assert torch.are_deterministic_algorithms_enabled() == before  # global switch restored


def test_normaliser_and_validation_split_use_only_the_given_training_subjects(rng):
    x, y, groups = _tiny_data(rng, n_subjects=12, per_subject=2)
    settings = TrainSettings(epochs=2, channels=(2, 2, 2, 2), seed=5)
    model, curve = cnn.train_model(x, y, groups, settings)
    is_val = cnn.validation_split(y, groups, settings.val_fraction, np.random.default_rng(settings.seed))
    # the validation split holds whole subjects of both classes
    assert set(groups[is_val]).isdisjoint(groups[~is_val])
    assert set(y[is_val]) == {0, 1}
    # the normaliser is fit on the training part only (not on validation subjects)
    np.testing.assert_allclose(model.in_mean.numpy(), x[~is_val].mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.in_mean.numpy(), x.mean(0))
    assert len(curve) == 2
    assert np.isfinite(curve[0]["val_loss"])


def test_augmentation_shifts_but_never_flips(rng):
    z = torch.from_numpy(rng.normal(size=(2, *SHAPE)).astype(np.float32))
    settings = TrainSettings(shift_vox=1, noise=0.0)
    out = cnn._augment(z, settings, torch.Generator().manual_seed(0))
    rolls = [torch.roll(z, (a, b, c), (1, 2, 3)) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    assert any(torch.equal(out, r) for r in rolls)
    assert not torch.equal(out, torch.flip(z, (1,)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; this machine has CUDA")
def test_auto_device_falls_back_to_cpu_without_cuda():
    assert cnn.resolve_device("auto").type == "cpu"
    with pytest.raises(InputError, match="CUDA"):
        cnn.resolve_device("cuda")


# ------------------------------------------------------------------ positive and negative controls
def _cv_balanced_accuracy(x, y, groups, settings):
    from dataclasses import replace

    from workflows import cross_validation as xv

    def fit_predict(x_train, y_train, g_train, x_test, seed):
        model, curve = cnn.train_model(x_train, y_train, g_train, replace(settings, seed=seed))
        return cnn.predict_proba(model, x_test), curve

    folds = xv.subject_folds(y, groups, 5, 1, seed=0)
    _, metrics, _ = xv.cross_validate(x, y, groups, folds, {"cnn": fit_predict})
    return float(np.mean([m["balanced_accuracy"] for m in metrics]))


@pytest.mark.integration  # 10 default CNN trainings
def test_cnn_learns_a_localised_effect_and_not_a_null():
    """The default CNN finds a +2 SD blob in 48 subjects; on a null it stays near chance. (The first
    architecture against the default on a weaker blob is an accuracy comparison: `make bench`, section
    cnn, benchmarks/cnn_paths.py:architectures.)"""
    torch.set_num_threads(1)
    settings = TrainSettings(device="cpu")
    assert _cv_balanced_accuracy(*blob_cohort(2.0), settings) >= 0.8
    null = _cv_balanced_accuracy(*blob_cohort(0.0, seed=1), settings)
    assert 0.3 <= null <= 0.7


def test_group_mask_comes_from_the_template_not_from_the_maps():
    from workflows.grid import template_mask

    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-96.0, -132.0, -78.0]  # the simulator's 4 mm MNI grid, symmetric about x = 0
    ref = nb.Nifti1Image(np.zeros((49, 58, 49), np.float32), aff)
    mask = template_mask(ref)
    assert 25_000 < mask.sum() < 35_000  # about 1.5 l of brain in 64 mm^3 voxels
    np.testing.assert_array_equal(mask, mask[::-1])  # symmetric: mirroring never leaves the mask


def test_bfloat16_training_runs_deterministically_and_unknown_precisions_are_refused(rng):
    """bfloat16 autocasts the forward pass only: float32 weights, deterministic for a seed."""
    x, y, groups = _tiny_data(rng)
    settings = TrainSettings(epochs=2, channels=(2, 4, 4, 4), seed=3, device="cpu", precision="bfloat16")
    m1, c1 = cnn.train_model(x, y, groups, settings)
    m2, c2 = cnn.train_model(x, y, groups, settings)
    assert c1 == c2
    assert m1.features[0].weight.dtype == torch.float32
    assert torch.equal(m1.features[0].weight, m2.features[0].weight)
    f32, _ = cnn.train_model(x, y, groups, TrainSettings(epochs=2, channels=(2, 4, 4, 4), seed=3))
    assert not torch.equal(m1.features[0].weight, f32.features[0].weight)  # the precision was used
    with pytest.raises(InputError, match="precision"):
        cnn.train_model(x, y, groups, TrainSettings(epochs=1, precision="float16"))


# -------------------------------------------------------------------------------------------- CUDA
def test_choosing_cuda_sets_the_cublas_workspace_first_and_keeps_a_users_setting(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert cnn.resolve_device("cpu").type == "cpu"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # CPU runs leave it alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device() starts no CUDA
    assert cnn.resolve_device("auto").type == "cuda"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert cnn.resolve_device("cuda").type == "cuda"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    with pytest.raises(InputError, match="'gpu' is unknown"):
        cnn.resolve_device("gpu")


def test_deterministic_mode_raises_on_cpu_warns_only_on_cuda_and_is_restored():
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with cnn.deterministic(0, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with cnn.deterministic(0, torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    after = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    assert after == before
    assert cnn.determinism(torch.device("cpu")) == "full"
    assert cnn.determinism(torch.device("cuda")) == "full"
    assert cnn.determinism(torch.device("cuda"), ["some_op_cuda"]) == "partial on CUDA"


def test_tf32_is_off_inside_a_cuda_training_block_and_restored_after():
    before = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with cnn.deterministic(0, torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cudnn.allow_tf32 == before[0]
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before[1])


@pytest.mark.parametrize("shape", [(9, 10, 11), (7, 1, 6), (2, 3, 5)])
def test_the_cuda_pools_compute_pytorchs_pools_on_the_cpu(rng, shape):
    """MeanPool3d and AdaptiveMeanPool3d's CUDA path (matrix products), run on CPU tensors, equals
    PyTorch's AvgPool3d(ceil_mode) and AdaptiveAvgPool3d, values and gradients."""
    x = torch.from_numpy(rng.standard_normal((2, 3, *shape)).astype(np.float32))
    kernel = tuple(2 if n > 1 else 1 for n in shape)
    pool, adaptive = cnn.MeanPool3d(kernel), cnn.AdaptiveMeanPool3d(2)
    for layer, reference in (
        (pool, torch.nn.AvgPool3d(kernel, stride=kernel, ceil_mode=True)),
        (adaptive, torch.nn.AdaptiveAvgPool3d(2)),
    ):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        mine = cnn.separable_mean(a, layer.bins(shape))
        theirs = reference(b)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
        weights = torch.from_numpy(rng.standard_normal(tuple(theirs.shape)).astype(np.float32))
        (mine * weights).sum().backward()
        (theirs * weights).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=0)  # CPU: PyTorch's own pool


def test_the_cuda_dropout_draws_the_cpu_dropouts_mask():
    """On CUDA the head's dropout mask is drawn as CPU dropout draws it, so both devices drop the same
    units for a seed (checked here on CPU tensors: the CUDA path against nn.Dropout)."""
    x = torch.randn(4, 64)
    drop = cnn.CpuDrawnDropout(0.5).train()
    torch.manual_seed(7)
    ours = cnn.cpu_drawn_dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(ours, drop(x))
    assert torch.equal(cnn.cpu_drawn_dropout(x, 1.0), torch.zeros_like(x))


def test_nondeterministic_ops_are_read_from_pytorchs_warnings():
    text = (
        "{op} does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True, warn_only=True)'. You can file an issue at ..."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op in (
            "avg_pool3d_backward_cuda",
            "adaptive_avg_pool3d_backward_cuda",
            "avg_pool3d_backward_cuda",
        ):
            warnings.warn(text.format(op=op), UserWarning, stacklevel=1)
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
    assert cnn.nondeterministic_ops(caught) == [
        "avg_pool3d_backward_cuda",
        "adaptive_avg_pool3d_backward_cuda",
    ]


def test_a_cpu_training_records_its_device_and_full_determinism_and_autocasts_nothing(rng):
    x, y, groups = _tiny_data(rng)
    model, _ = cnn.train_model(x, y, groups, TrainSettings(epochs=1, channels=(2, 2, 2, 2), device="cpu"))
    assert model.training_device == {"device": "cpu", "deterministic": "full", "nondeterministic_ops": []}
    assert isinstance(cnn._autocast(torch.device("cpu"), "float32"), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without CUDA, torch warns that it disables this context
        on_gpu = cnn._autocast(torch.device("cuda"), "bfloat16")
    assert isinstance(on_gpu, torch.autocast)
    assert (on_gpu.device, on_gpu.fast_dtype) == ("cuda", torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_runs_under_deterministic_mode_and_matches_the_cpu(rng):
    """The default architecture (noise and dropout on) trains on CUDA fully deterministically, and
    to the CPU's model up to float rounding: the same draws on both devices."""
    x, y, groups = _tiny_data(rng, n_subjects=16)
    settings = TrainSettings(epochs=3, min_epochs=3, seed=3)
    cpu, c_cpu = cnn.train_model(x, y, groups, replace(settings, device="cpu"))
    gpu, c_gpu = cnn.train_model(x, y, groups, replace(settings, device="cuda"))
    again, _ = cnn.train_model(x, y, groups, replace(settings, device="cuda"))
    assert gpu.training_device == {"device": "cuda", "deterministic": "full", "nondeterministic_ops": []}
    assert next(gpu.parameters()).device.type == "cpu"  # returned on the CPU, ready to save
    for key, value in gpu.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    np.testing.assert_allclose(
        [c["train_loss"] for c in c_gpu], [c["train_loss"] for c in c_cpu], rtol=1e-3, atol=1e-4
    )
    np.testing.assert_allclose(cnn.predict_proba(gpu, x), cnn.predict_proba(cpu, x), atol=1e-3)
