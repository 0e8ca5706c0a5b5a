"""Sites: reading them, leave-one-site-out folds, the site-aware confound model, ComBat inside the folds."""

import json

import numpy as np
import pytest
from helpers import fewer_group_bootstrap_draws
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold

from bids_app.group_level import parse_sites
from bids_app.queries import scanner_name, sidecar_sites
from workflows import cross_validation as xv
from workflows import harmonize, models, sites
from workflows.params import CVParams, GroupParams
from workflows.utils.errors import InputError

ROWS = {
    "01": {"participant_id": "sub-01", "ul_fma": "10", "site": "A"},
    "02": {"participant_id": "sub-02", "ul_fma": "40", "site": " B "},
    "03": {"participant_id": "sub-03", "ul_fma": "30", "site": ""},
    "04": {"participant_id": "sub-04", "ul_fma": "12", "site": ""},
}


def test_site_column_present_absent_and_blank():
    assert parse_sites(ROWS, "site", "p.tsv", ["01", "02"]) == {"01": "A", "02": "B"}
    no_column = {k: {c: v for c, v in r.items() if c != "site"} for k, r in ROWS.items()}
    assert parse_sites(no_column, "site", "p.tsv", list(ROWS)) is None
    with pytest.raises(InputError) as err:
        parse_sites(ROWS, "site", "/data/participants.tsv", list(ROWS))
    text = str(err.value)
    # what (how many, which rows), where (the file), how to fix
    assert "2 participant(s) have no 'site' value" in text
    assert "sub-03 (line 4)" in text
    assert "sub-04 (line 5)" in text
    assert "/data/participants.tsv" in text
    assert "fill in the site column" in text


def _bold(root, rel, meta=None):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if meta is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))


def test_sites_from_the_bold_sidecars_with_inheritance_and_conflicts(tmp_path):
    (tmp_path / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    # a top-level sidecar gives everyone the manufacturer; each subject's own sidecar the rest
    (tmp_path / "task-rest_bold.json").write_text('{"Manufacturer": "Siemens", "TaskName": "rest"}')
    _bold(tmp_path, "sub-01/func/sub-01_task-rest_bold.nii.gz", {"MagneticFieldStrength": 3})
    _bold(tmp_path, "sub-02/func/sub-02_task-rest_bold.nii.gz", {"InstitutionName": "Hospital  B"})
    assert sidecar_sites(tmp_path, ["01", "02"]) == {"01": "Siemens / 3T", "02": "Siemens / Hospital B"}
    _bold(
        tmp_path,
        "sub-02/func/sub-02_task-rest_run-2_bold.nii.gz",
        {"InstitutionName": "Clinic C", "MagneticFieldStrength": 1.5},
    )
    with pytest.raises(InputError, match="sub-02 name different scanners"):
        sidecar_sites(tmp_path, ["02"])
    assert scanner_name({"TaskName": "rest"}) == ""
    (tmp_path / "task-rest_bold.json").write_text('{"TaskName": "rest"}')
    _bold(tmp_path, "sub-03/func/sub-03_task-rest_bold.nii.gz", {"RepetitionTime": 2})
    with pytest.raises(InputError, match="sub-03 has none of Manufacturer") as err:
        sidecar_sites(tmp_path, ["03"])
    assert "sub-03_task-rest_bold.json" in str(err.value)


def test_leave_one_site_out_folds():
    # 3 sites; sub-s2 has two sessions (two samples), both at site B
    groups = np.array(["s0", "s1", "s2", "s2", "s3", "s4", "s5", "s6", "s7"])
    site = np.array(["A", "A", "B", "B", "B", "C", "C", "C", "A"])
    y = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1])
    folds = sites.site_folds(y, groups, site)
    assert [f["site"] for f in folds] == ["A", "B", "C"]
    tested = []
    for fold in folds:
        assert set(site[fold["test"]]) == {fold["site"]}  # every test fold is exactly one site
        assert fold["site"] not in set(site[fold["train"]])
        assert not set(groups[fold["train"]]) & set(groups[fold["test"]])  # no subject on both sides
        assert len(fold["train"]) + len(fold["test"]) == len(y)
        tested += fold["test"].tolist()
    assert sorted(tested) == list(range(len(y)))  # every sample tested once
    with pytest.raises(InputError, match="leaving out site 'A' leaves no severe patient"):
        sites.site_folds(np.array([1, 1, 0, 0]), np.arange(4), np.array(["A", "A", "B", "B"]))
    with pytest.raises(ValueError, match="several sites"):
        sites.site_folds(y, groups, np.where(np.arange(9) == 3, "C", site))


def test_plan_site_folds_uses_unit_labels_and_subjects():
    subjects = [
        {"label": f"{i:02d}", "score": 10.0 if i % 2 else 40.0, "site": "AB"[i // 4]} for i in range(8)
    ]
    folds = sites.plan_site_folds(subjects, GroupParams())
    assert [(f["site"], f["scheme"], f["of"]) for f in folds] == [("A", "site", 2), ("B", "site", 2)]
    assert folds[0]["test"] == ["00", "01", "02", "03"]


def test_when_leave_one_site_out_runs():
    y = [1, 0] * 6
    three = ["A", "A", "B", "B", "C", "C"] * 2
    assert sites.wants_site_cv(three, y, "auto")
    assert not sites.wants_site_cv(three, y, "subject")
    two = ["A", "A", "B", "B"] * 3
    assert not sites.wants_site_cv(two, y, "auto")  # auto needs 3 sites with both classes
    assert sites.wants_site_cv(two, y, "site")
    assert not sites.wants_site_cv(None, y, "auto")
    with pytest.raises(InputError, match="at least 2 sites"):
        sites.wants_site_cv(["A"] * 12, y, "site")
    with pytest.raises(InputError, match="scheme 'sites' is unknown"):
        CVParams(scheme="sites")


def test_harmonize_options_are_checked_before_running():
    subjects = [{"label": f"{i}", "score": 10.0 * i, "site": "AB"[i % 2]} for i in range(6)]
    combat = GroupParams(harmonize="combat", cv=CVParams(scheme="subject"))
    assert sites.check_site_options(subjects, combat) is False
    with pytest.raises(InputError, match="B has 2"):
        sites.check_site_options(subjects[:5], combat)
    with pytest.raises(InputError, match="needs each subject's site"):
        sites.check_site_options([dict(s, site="") for s in subjects], combat)


def test_site_scores_with_one_class_and_intervals():
    rows = [
        {"participant_id": f"sub-{i}", "model": m, "y_true": y, "prob_severe": p}
        for m in ("parcel", "confounds")
        for i, (y, p) in enumerate([(1, 0.9), (0, 0.2), (1, 0.7), (0, 0.6), (1, 0.8), (1, 0.3)])
    ]
    site_of = {f"sub-{i}": "A" if i < 4 else "B" for i in range(6)}
    out = sites.site_summary(rows, site_of, GroupParams(), "parcel", n_boot=200)
    a, b = out["per_site"]["A"], out["per_site"]["B"]
    assert a["class_counts"] == {"severe": 2, "mild-to-moderate": 2}
    assert a["models"]["parcel"]["balanced_accuracy"]["value"] == pytest.approx(0.75)
    low, high = a["models"]["parcel"]["balanced_accuracy"]["ci95"]
    assert 0.0 <= low <= high <= 1.0
    # site B has only severe patients: no balanced accuracy, but an accuracy (1 of 2 above 0.5)
    assert np.isnan(b["models"]["parcel"]["balanced_accuracy"]["value"])
    assert b["models"]["parcel"]["accuracy"]["value"] == pytest.approx(0.5)
    assert out["pooled"]["parcel"]["accuracy"]["value"] == pytest.approx(4 / 6)
    assert "difference_from_parcel" in out["pooled"]["confounds"]


def _site_confound_data(rng, n=60):
    sites_ = np.repeat(["A", "B", "C"], n // 3)
    y = (sites_ == "A").astype(int)  # the class is the site: a model that reads the site finds it
    quality = rng.normal(size=(n, 3))
    codes = np.unique(sites_, return_inverse=True)[1].astype(float)
    return np.column_stack([quality, codes]), y, sites_


def test_confound_model_reads_the_site_one_hot_in_fold(rng):
    x, y, sites_ = _site_confound_data(rng)
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    with_site, _ = models.confound_fit_predict(x[train], y[train], train, x[test], site_column=True)
    without, _ = models.confound_fit_predict(x[train][:, :3], y[train], train, x[test][:, :3])
    assert balanced_accuracy_score(y[test], with_site >= 0.5) == 1.0  # positive control: the site
    assert balanced_accuracy_score(y[test], without >= 0.5) < 0.75  # negative: noise measures only
    # a held-out site unseen in training (leave-one-site-out) is all zeros in the one-hot: no crash
    seen = sites_ != "C"
    prob, _ = models.confound_fit_predict(x[seen], y[seen], np.arange(40), x[~seen], site_column=True)
    assert prob.shape == (20,)
    assert np.isfinite(prob).all()


def test_harmonize_fold_fits_on_training_rows_only(rng):
    x = rng.normal(size=(30, 8)) + np.repeat([0.0, 2.0, -1.0], 10)[:, None]
    site = np.repeat(["A", "B", "C"], 10)
    y = rng.integers(0, 2, 30)
    train, test = np.arange(0, 30, 3), np.setdiff1d(np.arange(30), np.arange(0, 30, 3))
    train = np.setdiff1d(np.arange(30), test[:6])
    test = test[:6]
    fitted: list = []
    x[test[0], 2] = np.nan  # an excluded parcel stays unknown
    out_train, out_test = harmonize.harmonize_fold(
        x[train], x[test], site[train], site[test], protect=y[train], fitted=fitted
    )
    reference = harmonize.ComBat().fit(x[train], sites=site[train], covariates=y[train, None].astype(float))
    for s in ("A", "B", "C"):
        np.testing.assert_allclose(fitted[0].gamma_[s], reference.gamma_[s])
    # changing the test rows changes nothing learned from the training rows
    moved = x[test] + 100.0
    again, _ = harmonize.harmonize_fold(x[train], moved, site[train], site[test], protect=y[train])
    np.testing.assert_allclose(again, out_train)
    assert np.isnan(out_test[0, 2])
    assert np.isfinite(np.delete(out_test, 0, axis=0)).all()


@pytest.mark.parametrize("method", ["combat", "combat-nolabel"])
def test_parcel_models_never_harmonise_with_test_subjects(rng, monkeypatch, method):
    """A spy on the in-fold ComBat: the rows it is fitted on are the fold's training subjects only, and
    the outcome it protects (combat) is theirs."""
    n = 18
    shape = (4, 4, 4)
    # every voxel of a subject's map holds its index: the parcel features name the subject
    maps = np.stack([np.full(shape, float(i)) for i in range(n)]).astype(np.float32)
    parcels = np.zeros(shape, np.int32)
    parcels[:2], parcels[2:] = 1, 2
    labels = np.array([f"{i:02d}" for i in range(n)])
    data = {
        "x": maps,
        "y": np.arange(n) % 2,
        "groups": labels,
        "subjects": labels,
        "parcels": parcels,
        "confounds": rng.normal(size=(n, 6)),
        "sites": np.array(["A", "B", "C"])[np.arange(n) // 6],
    }
    seen: list[tuple[set, set]] = []
    real = models.harmonize_fold

    def spy(f_train, f_test, sites_train, sites_test, protect=None, **kw):
        rows = f_train[:, 0].round().astype(int)
        seen.append((set(rows), set(f_test[:, 0].round().astype(int))))
        if method == "combat":  # the training rows' own labels, in their order
            np.testing.assert_array_equal(protect, data["y"][rows])
        else:
            assert protect is None
        return real(f_train, f_test, sites_train, sites_test, protect=protect, **kw)

    monkeypatch.setattr(models, "harmonize_fold", spy)
    params = GroupParams(harmonize=method)
    fits = models.fold_models(data, params)
    assert "parcel" in fits
    assert "confounds" in fits
    folds = xv.subject_folds(data["y"], labels, n_folds=3, n_repeats=1, seed=0)
    folds += [dict(f, repeat=1) for f in sites.site_folds(data["y"], labels, data["sites"])]
    xv.cross_validate(
        np.arange(n),
        data["y"],
        labels,
        folds,
        {k: fits[k] for k in ("parcel", "parcel_l1")},
    )
    assert len(seen) >= 2 * len(folds)  # both parcel models, every fold
    for fold in folds:
        test = {int(t) for t in fold["test"]}
        train = {int(t) for t in fold["train"]}
        assert (train, test) in seen
    for fitted_on, _ in seen:  # no fit ever saw a row that was not in its fold's training set
        assert any(fitted_on <= {int(t) for t in f["train"]} for f in folds)


def _null_in_fold_accuracy(seed: int) -> float:
    rng = np.random.default_rng(seed)
    n, p = 45, 200
    site = np.repeat(["A", "B", "C"], 15)
    x = rng.normal(size=(n, p)) * np.repeat([1.0, 1.5, 0.7], 15)[:, None] + np.repeat([0, 1, -1], 15)[:, None]
    y = rng.permutation(np.repeat([0, 1], 23)[:n])
    pred = np.zeros_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        f_train, f_test = harmonize.harmonize_fold(
            x[train], x[test], site[train], site[test], protect=y[train]
        )
        pred[test] = LogisticRegression(max_iter=2000).fit(f_train, y[train]).predict(f_test)
    return balanced_accuracy_score(y, pred)


def test_in_fold_combat_with_the_training_outcome_protected_does_not_leak():
    # the same nulls as tests/test_harmonize.py's leak demo: on all subjects it leaks; in the fold, with
    # only the training labels protected and test rows adjusted without theirs, it stays at chance
    assert abs(np.mean([_null_in_fold_accuracy(seed) for seed in range(3)]) - 0.5) < 0.15


def test_site_scores_agree_with_scikit_learn(rng):
    from sklearn.metrics import roc_auc_score

    y = rng.integers(0, 2, 40)
    p = np.round(rng.uniform(size=40), 1)  # ties
    got = sites.site_scores(y, p)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p >= 0.5))


def _site_derivatives(root, rng):
    """A 3-site cohort from the simulator (``--n-sites 3``: its participants.tsv with the site column)
    and, in place of the participant level, tiny 8 mm dFC maps (a blob in the severe patients' maps,
    helpers.tiny_group_maps) with the sidecar fields the group level reads."""
    import shutil

    import nibabel as nb
    import pandas as pd
    from helpers import simulate, tiny_group_maps

    # seed 5: sites of 5, 3 and 4 patients, each with both classes (ComBat needs 3+ per site)
    bids = simulate(root, n_subjects=12, n_sites=3, seed=5, n_volumes=30)
    table = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    (root / "maps").mkdir()
    tiny = tiny_group_maps(root / "maps", rng)  # even = severe (blob), odd = mild
    severe, mild = iter(tiny[0::2]), iter(tiny[1::2])
    out = root / "out"
    out.mkdir()
    (out / "dataset_description.json").write_text('{"Name": "strokefc", "BIDSVersion": "1.9.0"}')
    for row in table.itertuples():
        source = next(severe if float(row.ul_fma) <= 20 else mild)
        func = out / row.participant_id / "func"
        func.mkdir(parents=True)
        stem = f"{row.participant_id}_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-dfcsd_boldmap"
        shutil.copy(source.map_file, func / f"{stem}.nii.gz")
        meta = {
            "LesionHemisphere": row.lesion_hemisphere,
            "Space": "MNI152NLin2009cAsym",
            "RepetitionTime": 2.0,
            "WindowLength_s": 44.0,
            "WindowLength_vol": 22,
        }
        (func / f"{stem}.json").write_text(json.dumps(meta))
    assert nb.load(func / f"{stem}.nii.gz").shape == (20, 24, 20)
    return bids, out, table


@pytest.mark.integration
def test_group_level_with_three_sites_leave_site_out_and_combat(tmp_path, rng, monkeypatch):
    """A simulated 3-site cohort through the group level with --cv site --harmonize combat: sites in
    cohort.tsv, leave-one-site-out per site with intervals next to the subject folds, the site in the
    confound model, the training sites on the model card and the sites section of the report."""
    import pandas as pd

    from bids_app.config import build_config
    from bids_app.group_level import collect_group_inputs
    from bids_app.parser import parse_args
    from bids_app.reports.group import write_group_report
    from workflows.group import init_group_wf
    from workflows.model_io import load_arrays

    bids, out, table = _site_derivatives(tmp_path, rng)
    config = parse_args(
        [str(bids), str(out), "group", "--cv", "site", "--harmonize", "combat", "-w", str(tmp_path / "w")]
    )
    assert (config.group.cv.scheme, config.group.harmonize) == ("site", "combat")
    values = {
        "cv_scheme": "site",
        "harmonize": "combat",
        "cnn_resolution": 8.0,
        "cv_folds": 2,
        "cv_repeats": 1,
        "epochs": 2,
        "device": "cpu",
    }
    config = build_config(
        bids_dir=bids,
        output_dir=out,
        analysis_level="group",
        fmriprep_dir=bids,
        work_dir=tmp_path / "work",
        model=None,
        values=values,
    )
    subjects, excluded, shared = collect_group_inputs(config)
    assert not excluded
    site_of = dict(zip(table["participant_id"].str[4:], table["site"]))
    assert {s.subject: s.site for s in subjects} == site_of
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects], params=config.group, output_dir=out, shared_params=shared
    )
    assert "site_fold" in wf.list_node_names()
    assert "Leave-one-site-out validation was run" in wf.__desc__
    assert "ComBat" in wf.__desc__
    fewer_group_bootstrap_draws(monkeypatch)  # the records are checked, not the intervals
    wf.base_dir = str(tmp_path / "work")
    wf.run(plugin="Linear")

    group = out / "group"
    cohort = pd.read_csv(group / "cohort.tsv", sep="\t")
    assert dict(zip(cohort["participant_id"].str[4:], cohort["site"])) == site_of
    assert "scanning site" in json.loads((group / "cohort.json").read_text())["site"]["Description"]
    summary = json.loads((group / "cv_summary.json").read_text())
    assert summary["cv"]["folds"] == 2  # the subject-level folds are unchanged, and summarised apart
    assert len(pd.read_csv(group / "cv_predictions.tsv", sep="\t")) == 12 * len(summary["models"])
    record = summary["sites"]
    counts = table.assign(c=np.where(table["ul_fma"].astype(float) <= 20, "severe", "mild-to-moderate"))
    assert record["class_counts"] == {
        site: {"severe": int((g["c"] == "severe").sum()), "mild-to-moderate": int((g["c"] != "severe").sum())}
        for site, g in counts.groupby("site")
    }
    loso = record["leave_site_out"]
    assert loso["sites"] == ["site1", "site2", "site3"]
    assert loso["training_sites"]["site2"] == ["site1", "site3"]
    for site, rec in loso["per_site"].items():
        assert rec["n_units"] == sum(v == site for v in site_of.values())
        low, high = rec["models"]["parcel"]["balanced_accuracy"]["ci95"]
        assert 0.0 <= low <= high <= 1.0
    assert {"parcel", "confounds", "cnn"} <= set(loso["pooled"])
    site_predictions = pd.read_csv(group / "site_predictions.tsv", sep="\t")
    assert list(site_predictions.columns) == ["participant_id", "site", "model", "y_true", "prob_severe"]
    assert len(site_predictions) == 12 * len(loso["pooled"])  # each subject held out once, per model
    assert (site_predictions["site"] == site_predictions["participant_id"].str[4:].map(site_of)).all()
    assert "fitted on each training fold" in summary["harmonization"]

    _, card = load_arrays(out / "model")
    assert card["TrainingCohort"]["Sites"] == record["class_counts"]
    assert set(card["sites"]["leave_site_out"]["per_site"]) == {"site1", "site2", "site3"}
    assert card["sites"]["deployed_model_harmonized"] is False

    page = write_group_report(config, subjects, excluded).read_text()
    assert 'id="sites"' in page
    assert "Leave-one-site-out validation" in page
    assert "site3" in page
    # the decision curves, the learning curve and the sample size, from this run's own folds
    learning = pd.read_csv(group / "learning_curves.tsv", sep="\t")
    assert sorted(learning["fold"].unique()) == [0, 1]  # each subject-level fold, no site fold
    for fold, rows in learning.groupby("fold"):
        # 3 training subjects per class: 40% and 60% keep 2 of each, 80% and 100% all (each subset once)
        assert list(rows["fraction"]) == [0.6, 1.0]
        assert list(rows["n_train_subjects"]) == [4, 6]
        own = next(m for m in summary["fold_metrics"] if m["model"] == "parcel" and m["fold"] == fold)
        assert rows["balanced_accuracy"].iloc[-1] == pytest.approx(own["balanced_accuracy"], abs=1e-5)
    assert "fraction" in json.loads((group / "learning_curves.json").read_text())
    decisions = pd.read_csv(group / "decision_curves.tsv", sep="\t")
    assert set(decisions["model"]) == set(summary["models"])
    assert len(decisions) == 91 * len(summary["models"])
    assert summary["decision_curve"]["model"] == "parcel"
    assert summary["sample_size"]["n_cohort"] == 12
    assert summary["sample_size"]["prevalence"] == pytest.approx(np.mean(counts["c"] == "severe"))
    figures = group / "figures"
    for name in ("decision", "learning", "samplesize"):
        assert (figures / f"desc-{name}_cv.svg").stat().st_size > 0
    for needle in ("Decision curves", "Learning curve (training size)", "Minimum sample size"):
        assert needle in page, needle
    assert summary["sample_size"]["statement"].split(";")[0] in page
    assert "could not be drawn" not in page


def test_too_few_rows_of_an_unseen_site_are_left_unharmonised(rng, caplog):
    x = rng.normal(size=(14, 5)) + np.repeat([0.0, 3.0], 7)[:, None]
    site = np.repeat(["A", "B"], 7)
    train, test = np.r_[0:6, 7:13], np.array([6, 13])
    extra = rng.normal(size=(2, 5))  # two rows of a site "C" never trained on (an inner split)
    _, out = harmonize.harmonize_fold(
        x[train], np.vstack([x[test], extra]), site[train], np.r_[site[test], ["C", "C"]], protect=None
    )
    np.testing.assert_allclose(out[2:], extra)
    assert not np.allclose(out[:2], x[test])  # the trained sites are adjusted
    assert "left unharmonised" in caplog.text


def test_site_summary_of_a_regression_scores_each_site_in_points():
    rows = [
        {"participant_id": f"sub-{i}", "model": m, "y_true": t, "predicted_score": t + e}
        for m, e in (("parcel", 2.0), ("mean", 10.0))
        for i, t in enumerate([10.0, 40.0, 15.0, 50.0, 30.0, 12.0])
    ]
    site_of = {f"sub-{i}": "A" if i < 3 else "B" for i in range(6)}
    out = sites.site_summary(rows, site_of, GroupParams(target="regression"), "parcel", n_boot=100)
    assert out["per_site"]["B"]["models"]["parcel"]["mae"]["value"] == pytest.approx(2.0)
    assert out["pooled"]["mean"]["difference_from_parcel"]["mae"]["value"] == pytest.approx(8.0)
    assert "class_counts" not in out["per_site"]["A"]


def test_report_sites_section_from_the_summary():
    from bids_app.reports.sites import class_rows, site_sentences, site_table

    ba = {"balanced_accuracy": {"value": 0.6, "ci95": [0.4, 0.8]}}
    one_class = {"balanced_accuracy": {"value": float("nan")}, "accuracy": {"value": 0.5, "ci95": [0, 1]}}
    summary = {
        "target": "classification",
        "bootstrap": {"parcel": {"balanced_accuracy": {"value": 0.8, "ci95": [0.7, 0.9]}}},
        "sites": {
            "class_counts": {
                "A": {"severe": 2, "mild-to-moderate": 3},
                "B": {"severe": 4, "mild-to-moderate": 0},
            },
            "leave_site_out": {
                "pooled": {"parcel": ba},
                "per_site": {
                    "A": {"n_units": 5, "class_counts": {"severe": 2}, "models": {"parcel": ba}},
                    "B": {"n_units": 4, "class_counts": {"severe": 4}, "models": {"parcel": one_class}},
                },
                "training_sites": {"A": ["B"], "B": ["A"]},
            },
        },
    }
    assert class_rows(summary, []) == [
        {"site": "A", "severe": 2, "mild-to-moderate": 3},
        {"site": "B", "severe": 4, "mild-to-moderate": 0},
    ]
    table = site_table(summary)
    assert [r["site"] for r in table["rows"]] == ["A", "B", "all sites (pooled)"]
    assert table["rows"][1]["cells"][0]["metric"] == "accuracy"  # one class: the accuracy, marked
    text = " ".join(site_sentences(summary))
    assert "pooled balanced accuracy was 0.60 (95% interval 0.40 to 0.80), against 0.80" in text
    assert site_table({"sites": {"class_counts": {}, "leave_site_out": None}}) is None
