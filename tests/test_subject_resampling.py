"""Subject-level resampling with sessions: the permutation null and the bootstrap move whole subjects."""

from __future__ import annotations

import numpy as np

from workflows import permutation
from workflows.stats import bootstrap_comparison, cluster_draws, permutation_p_value


def _sessions(n_subjects: int, n_sessions: int) -> tuple[np.ndarray, np.ndarray]:
    """Units ``s<i>_ses-<j>`` and their subject ``s<i>``."""
    subjects = np.repeat([f"s{i:02d}" for i in range(n_subjects)], n_sessions)
    units = np.array([f"{s}_ses-{j % n_sessions}" for j, s in enumerate(subjects)])
    return units, subjects


def test_sessions_of_a_subject_always_share_the_permuted_label():
    units, subjects = _sessions(15, 2)
    y = np.repeat(np.arange(15) % 2, 2)
    for seed in range(50):
        y_perm = permutation.permute_subject_labels(y, units, np.random.default_rng(seed), subjects)
        assert np.bincount(y_perm).tolist() == np.bincount(y).tolist()
        for s in np.unique(subjects):
            assert len(set(y_perm[subjects == s])) == 1
    # the unit-level permutation (no subjects given) splits a subject's sessions in most draws
    split = [
        any(
            len(set(p[subjects == s])) > 1
            for p in [permutation.permute_subject_labels(y, units, np.random.default_rng(seed))]
            for s in np.unique(subjects)
        )
        for seed in range(20)
    ]
    assert sum(split) >= 18


def test_label_vectors_move_within_blocks_of_subjects_with_as_many_sessions():
    # 6 subjects with 2 sessions whose labels differ (a session-level score), 4 with one session
    units = np.array([f"a{i}_ses-{j}" for i in range(6) for j in (1, 2)] + [f"b{i}" for i in range(4)])
    subjects = np.array([f"a{i}" for i in range(6) for _ in (1, 2)] + [f"b{i}" for i in range(4)])
    y = np.array([v for i in range(6) for v in ((1, 0) if i < 3 else (0, 0))] + [1, 1, 0, 0])
    seen = set()
    for seed in range(40):
        y_perm = permutation.permute_subject_labels(y, units, np.random.default_rng(seed), subjects)
        pairs = {tuple(y_perm[subjects == f"a{i}"]) for i in range(6)}
        assert pairs <= {(1, 0), (0, 0)}  # whole vectors, in session order
        assert sorted(tuple(y_perm[subjects == f"a{i}"]) for i in range(6)) == [(0, 0)] * 3 + [(1, 0)] * 3
        assert sorted(y_perm[-4:].tolist()) == [0, 0, 1, 1]  # single-session subjects stay a block
        seen.add(tuple(y_perm))
    assert len(seen) > 10  # it does shuffle


def _null_rejection_rate(n_nulls: int, by_subject: bool, n_perm: int = 99) -> float:
    """Share of null datasets (24 subjects x 2 near-identical sessions) with permutation p <= 0.05.

    The statistic is the absolute difference of the class means of one feature over units: what a
    classifier exploits when sessions repeat a subject, at a cost the whole pipeline does not need.
    """
    units, subjects = _sessions(24, 2)
    y = np.repeat(np.arange(24) % 2, 2)
    rejected = 0
    for i in range(n_nulls):
        rng = np.random.default_rng([11, i])
        x = np.repeat(rng.normal(size=24), 2) + 0.1 * rng.normal(size=48)  # no effect of y

        def stat(labels: np.ndarray, x: np.ndarray = x) -> float:
            return abs(x[labels == 1].mean() - x[labels == 0].mean())

        null = [
            stat(permutation.permute_subject_labels(y, units, rng, subjects if by_subject else None))
            for _ in range(n_perm)
        ]
        rejected += permutation_p_value(stat(y), null) <= 0.05
    return rejected / n_nulls


def test_subject_level_permutation_keeps_the_nominal_rate_on_null_sessions():
    """200 nulls: subject-level near 0.05; unit-level (the old scheme) anti-conservative."""
    subject_level = _null_rejection_rate(200, by_subject=True)
    unit_level = _null_rejection_rate(200, by_subject=False)
    assert 0.01 <= subject_level <= 0.09
    assert unit_level >= 0.10


def test_cluster_bootstrap_draws_sessions_together():
    units, subjects = _sessions(10, 2)
    clusters = dict(zip(units.tolist(), subjects.tolist()))
    for draw in cluster_draws(units.tolist(), clusters, n_boot=30, seed=1):
        assert len(draw) == 20
        drawn = units[draw]
        counts = {u: (drawn == u).sum() for u in units}
        for s in np.unique(subjects):
            assert counts[f"{s}_ses-0"] == counts[f"{s}_ses-1"]
    # without clusters each unit is drawn on its own, as before
    plain = cluster_draws(units.tolist(), None, n_boot=30, seed=1)
    assert any(
        (units[d] == f"{s}_ses-0").sum() != (units[d] == f"{s}_ses-1").sum()
        for d in plain
        for s in np.unique(subjects)
    )


def test_bootstrap_comparison_is_wider_when_sessions_repeat_a_subject():
    """Duplicated sessions carry no new evidence: the clustered interval is as wide as one session's."""
    rng = np.random.default_rng(3)
    units, subjects = _sessions(30, 2)
    y = np.repeat(np.arange(30) % 2, 2)
    p = np.repeat(np.clip(0.5 + 0.3 * (2 * (np.arange(30) % 2) - 1) + rng.normal(0, 0.3, 30), 0, 1), 2)
    rows = [
        {"participant_id": u, "repeat": 0, "model": "m", "y_true": int(t), "prob_severe": float(v)}
        for u, t, v in zip(units, y, p)
    ]
    unit = bootstrap_comparison(rows, "m", n_boot=150, seed=0)["m"]["roc_auc"]["ci95"]
    clustered = bootstrap_comparison(
        rows, "m", n_boot=150, seed=0, clusters=dict(zip(units.tolist(), subjects.tolist()))
    )["m"]["roc_auc"]["ci95"]
    assert clustered[1] - clustered[0] > 1.2 * (unit[1] - unit[0])
    assert np.isfinite(clustered).all()
