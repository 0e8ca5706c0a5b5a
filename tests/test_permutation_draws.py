"""Resumable permutation draws: a stored draw is read back by a rerun, and only while its inputs hold."""

import json

import numpy as np
import pytest

from workflows import permutation
from workflows.params import CVParams, GroupParams

N_DRAWS = 6


def _nearest_mean(data):
    """A real (cheap) classifier on ``data["x"]``: probability of severe from the distances to the two
    training-class means. Stands in for the group models, whose cost the resumption does not depend on."""
    x = data["x"]

    def fit(train, y_train, groups_train, test, *, seed=0):
        d0 = ((x[test] - x[train][y_train == 0].mean(0)) ** 2).sum(1)
        d1 = ((x[test] - x[train][y_train == 1].mean(0)) ** 2).sum(1)
        return 1 / (1 + np.exp(np.clip(d1 - d0, -50, 50))), []

    return fit


@pytest.fixture
def inputs(tmp_path, rng, monkeypatch):
    """Group inputs of 16 subjects (a planted class difference) and a counter of computed draws."""
    y = np.repeat([0, 1], 8)
    x = rng.normal(size=(16, 5)) + 1.5 * y[:, None]
    data_file = tmp_path / "group_inputs.npz"
    np.savez(data_file, x=x, y=y, groups=np.array([f"s{i:02d}" for i in range(16)]))
    monkeypatch.setattr(permutation, "fold_models", lambda data, params, *_: {"parcel": _nearest_mean(data)})
    computed = []
    real = permutation.permutation_nulls

    def counting(*args, **kwargs):
        if kwargs["index"] == counting.fail_at:
            raise RuntimeError(f"killed at draw {kwargs['index']}")
        computed.append(kwargs["index"])
        return real(*args, **kwargs)

    counting.fail_at = None
    monkeypatch.setattr(permutation, "permutation_nulls", counting)
    return data_file, computed, counting


def _params(**cv):
    return GroupParams(cv=CVParams(**{"cv_folds": 4, "cv_repeats": 1, "n_permutations": N_DRAWS, **cv}))


def _run(data_file, params, draws_dir, n=N_DRAWS):
    """The permutation MapNode's iterations, one after the other."""
    return [permutation.run_permutation(data_file, i, params, draws_dir) for i in range(n)]


def _p(null, params):
    observed = {"parcel": {"balanced_accuracy": {"mean": 0.8}}}
    return permutation.permutation_summary(observed, null, params)["p_value"]


def test_an_interrupted_run_resumes_with_the_remaining_draws_and_the_same_p_value(inputs, tmp_path):
    data_file, computed, counting = inputs
    params = _params()
    reference = _run(data_file, params, None)  # uninterrupted, nothing stored
    assert computed == list(range(N_DRAWS))
    assert len({d["parcel"] for d in reference}) > 1  # the draws differ: a reused draw would show

    draws = tmp_path / "draws"
    computed.clear()
    counting.fail_at = 3
    with pytest.raises(RuntimeError, match="killed at draw 3"):
        _run(data_file, params, draws)
    assert computed == [0, 1, 2]
    stored = sorted(p.name for p in draws.rglob("*.json"))
    assert stored == [f"draw-00000{i}_seed-0.json" for i in range(3)]
    assert not list(draws.rglob(".tmp-*"))  # atomic: nothing half-written

    computed.clear()
    counting.fail_at = None
    resumed = _run(data_file, params, draws)
    assert computed == [3, 4, 5]  # only the draws the interrupted run lacked
    assert resumed == reference
    assert _p(resumed, params) == _p(reference, params)

    computed.clear()
    more = _params(n_permutations=N_DRAWS + 2)  # more draws: the stored ones are still valid
    assert _run(data_file, more, draws, N_DRAWS + 2)[:N_DRAWS] == reference
    assert computed == [N_DRAWS, N_DRAWS + 1]


@pytest.mark.parametrize("change", ["seed", "folds", "labels", "maps"])
def test_a_changed_input_or_setting_never_reuses_stored_draws(inputs, tmp_path, change):
    data_file, computed, _ = inputs
    draws = tmp_path / "draws"
    _run(data_file, _params(), draws)
    computed.clear()
    params = _params()
    if change == "seed":
        params = GroupParams(random_seed=1, cv=params.cv)
    elif change == "folds":
        params = _params(cv_folds=3)
    else:
        data = dict(np.load(data_file))
        if change == "labels":
            data["y"] = data["y"][::-1].copy()
        else:
            data["x"][0, 0] += 1e-6
        np.savez(data_file, **data)
    _run(data_file, params, draws)
    assert computed == list(range(N_DRAWS))


def test_a_damaged_or_foreign_draw_file_is_computed_again(inputs, tmp_path, caplog):
    data_file, computed, _ = inputs
    draws = tmp_path / "draws"
    params = _params()
    reference = _run(data_file, params, draws)
    first, second = sorted(draws.rglob("draw-*.json"))[:2]
    first.write_text('{"index": 0, "null": ')  # damaged by hand: no longer JSON
    record = json.loads(second.read_text())
    second.write_text(json.dumps({**record, "index": 5}))  # another draw's content under this name
    computed.clear()
    assert _run(data_file, params, draws) == reference
    assert computed == [0, 1]
    assert "unreadable" in caplog.text
    assert "another draw's" in caplog.text
    assert json.loads(first.read_text())["index"] == 0  # rewritten whole


def test_the_digest_ignores_the_file_bytes_and_the_number_of_draws(tmp_path, rng):
    arrays = {"x": rng.normal(size=(4, 3)), "y": np.array([0, 1, 0, 1])}
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez_compressed(tmp_path / "b.npz", **arrays)  # other bytes, the same arrays
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "b.npz").read_bytes()
    digest = permutation.draw_inputs_digest
    assert digest(a, _params()) == digest(b, _params(n_permutations=1000))
    assert digest(a, _params()) != digest(a, GroupParams(threads=2, cv=_params().cv))
