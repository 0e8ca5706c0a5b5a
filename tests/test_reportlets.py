"""Report figures, the methods boilerplate, and both HTML reports built from small fake outputs."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bids_app.config import RunConfig, build_config
from workflows import plotting as rl

SHAPE = (20, 24, 20)
N_VOLS = 40
TR = 2.0


def affine():
    """4 mm voxels roughly covering the MNI brain."""
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-40.0, -60.0, -30.0]
    return aff


def tiny_run(rng):
    """Images and arrays of one fake run: 4D BOLD, mask, seed, lesion, denoised data and tables."""
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:17, 3:21, 3:17] = 1
    bold = (rng.normal(100, 5, (*SHAPE, N_VOLS)) * mask[..., None]).astype(np.float32)
    seed = np.zeros(SHAPE, np.uint8)
    seed[5:8, 10:13, 12:15] = 1
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[6:10, 8:14, 8:12] = 1
    fd = np.abs(rng.normal(0.2, 0.2, N_VOLS))
    fd[0] = np.nan
    fd[[5, 6, 20]] = [0.8, 0.9, 1.2]  # three censored volumes
    n_win = 25
    table = pd.DataFrame(
        {
            "start_volume": np.arange(n_win),
            "end_volume": np.arange(n_win) + 9,
            "valid": (np.arange(n_win) % 6 != 0).astype(int),
        }
    )
    table["kept"] = table["valid"].astype(bool)
    return {
        "mask": nb.Nifti1Image(mask, affine()),
        "bold": nb.Nifti1Image(bold, affine()),
        "seed": nb.Nifti1Image(seed, affine()),
        "lesion": nb.Nifti1Image(lesion, affine()),
        "denoised": rng.normal(size=(N_VOLS - 2, int(mask.sum()))),
        "fd": fd,
        "censored": fd > 0.5,
        "seed_ts": rng.normal(size=N_VOLS - 2),
        "table": table,
        "traces": {"contraM1": rng.normal(0.3, 0.3, n_win), "ipsiSMA": rng.normal(0, 0.3, n_win)},
        "maps": {
            "dFC SD": nb.Nifti1Image(
                (np.abs(rng.normal(0.2, 0.1, SHAPE)) * mask).astype(np.float32), affine()
            ),
            "mean dFC": nb.Nifti1Image((rng.normal(size=SHAPE) * mask).astype(np.float32), affine()),
            "static FC": nb.Nifti1Image((rng.normal(size=SHAPE) * mask).astype(np.float32), affine()),
        },
    }


def draw_run_figures(run, fig_dir: Path) -> dict:
    """The five participant figures of a run, as the RunReportlets interface draws them."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    return {
        "seed": rl.plot_seed_overlay(
            run["seed"], run["bold"], fig_dir / "seed.svg", lesion_mask_img=run["lesion"]
        ),
        "confounds": rl.plot_confounds(
            run["fd"], run["censored"], fig_dir / "confounds.svg", fd_thresh=0.5, dummy=2
        ),
        "carpet": rl.plot_carpet(run["bold"], run["denoised"], run["mask"], fig_dir / "carpet.svg", TR),
        "seedts": rl.plot_seed_timeseries(
            run["seed_ts"], TR, run["table"], run["traces"], fig_dir / "seedts.svg"
        ),
        "maps": rl.plot_map_mosaics(
            run["maps"], fig_dir / "maps.svg", {"dFC SD": 0.5, "mean dFC": 1.0, "static FC": 1.0}
        ),
    }


def assert_valid_svg(path, min_bytes=5000):
    """A parseable SVG document with drawn content (paths or embedded raster images)."""
    path = Path(path)
    assert path.is_file(), path
    assert path.stat().st_size > min_bytes, path
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    tags = {el.tag.split("}")[-1] for el in root.iter()}
    assert "path" in tags or "image" in tags
    assert float(root.get("width", "0pt").rstrip("pt")) > 100


def no_external_resources(html: str) -> bool:
    """No stylesheet, script, image or font fetched from a network address."""
    pattern = (
        r"""(<(link|script|img|iframe|source)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//)"""
        r"""|@import|url\(\s*["']?(https?:)?//"""
    )
    return re.search(pattern, html, re.I) is None


def make_config(tmp_path: Path, level: str, **values) -> RunConfig:
    """A run configuration with options given by their command-line names (``window_length=...``)."""
    return build_config(
        bids_dir=tmp_path / "bids",
        output_dir=tmp_path / "out",
        analysis_level=level,
        fmriprep_dir=tmp_path / "fmriprep",
        work_dir=tmp_path / "work",
        model=None,
        values=values,
    )


def make_participant_report(tmp_path: Path, rng) -> Path:
    """A participant report of one subject with one run, its five figures and a prediction."""
    from bids_app.reports.boilerplate import methods_text
    from bids_app.reports.participant import build_participant_report

    out = tmp_path / "out"
    figs = draw_run_figures(tiny_run(rng), out / "sub-01" / "figures")
    runs = [
        {
            "name": "task-rest run-1",
            "metadata": {"WindowLength_s": 60.0, "Space": "MNI152NLin2009cAsym"},
            "warnings": ["12% of the seed lies in the lesion"],
            "figures": figs,
        }
    ]
    prediction = {
        "prob_severe": 0.73,
        "predicted_class": "severe",
        "model_id": "abc123def456",
        "model_cv_balanced_accuracy": {"mean": 0.71, "sd": 0.05, "ci95": [0.65, 0.77]},
        "label_definition": "severe = UL-FMA <= 20",
        "figure": None,
    }
    config = make_config(tmp_path, "participant")
    return build_participant_report(
        out / "sub-01.html",
        subject="01",
        summary={"Subject": "sub-01", "Repetition time (s)": TR, "Lesion hemisphere": "L (from mask)"},
        runs=runs,
        prediction=prediction,
        methods_md=methods_text(config, {"nilearn": "0.x"}),
        errors=[],
    )


def make_group_outputs(out: Path, rng, permutation=True) -> None:
    """Every file of the group contract, small and synthetic."""
    group = out / "group"
    group.mkdir(parents=True, exist_ok=True)
    labels = [f"sub-{i:02d}" for i in range(1, 13)]
    y = np.array([1] * 6 + [0] * 6)
    metric = {"mean": 0.7, "sd": 0.08, "ci95": [0.61, 0.79]}
    null_cnn = list(rng.normal(0.5, 0.08, 30))
    summary = {
        "models": {
            "cnn": {m: metric for m in ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "f1")},
            "baseline": {
                m: {"mean": 0.6, "sd": 0.1, "ci95": [0.5, 0.7]}
                for m in ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "f1")
            },
        },
        "n_subjects": 12,
        "class_counts": {"severe": 6, "mild-to-moderate": 6},
        "cv": {"folds": 3, "repeats": 2, "grouped_by": "subject"},
        "samples": "maps",
        "permutation": {
            "n": 30,
            "repeats": 2,
            "model": "cnn",
            "p_value": 0.032,
            "null_balanced_accuracy": null_cnn,
            "observed_balanced_accuracy": 0.7,
            "models": {
                "cnn": {
                    "p_value": 0.032,
                    "null_balanced_accuracy": null_cnn,
                    "observed_balanced_accuracy": 0.7,
                },
                "baseline": {
                    "p_value": 0.2,
                    "null_balanced_accuracy": list(rng.normal(0.5, 0.08, 30)),
                    "observed_balanced_accuracy": 0.6,
                },
            },
        }
        if permutation
        else None,
        "baseline": "L2 logistic regression on PCA of the maps, fit in-fold",
        "cnn_parameters": 12345,
        "settings": {"epochs": 5},
        "warnings": [
            {"code": "few_subjects", "model": None, "message": "6 severe subject(s) (fewer than 10"}
        ],
        "detectable_effect": {"statement": "With 6 severe and 6 mild-to-moderate subjects, a model needs"},
    }
    (group / "cv_summary.json").write_text(json.dumps(summary))
    rows = []
    for rep in range(2):
        for i, (pid, yt) in enumerate(zip(labels, y)):
            for model, noise in (("cnn", 0.25), ("baseline", 0.35)):
                prob = float(np.clip(0.5 + (yt - 0.5) * 0.5 + rng.normal(0, noise), 0, 1))
                rows.append(
                    {
                        "participant_id": pid,
                        "repeat": rep,
                        "fold": i % 3,
                        "model": model,
                        "y_true": int(yt),
                        "prob_severe": prob,
                    }
                )
    pd.DataFrame(rows).to_csv(group / "cv_predictions.tsv", sep="\t", index=False)
    curves = [
        {
            "repeat": r,
            "fold": f,
            "epoch": e,
            "train_loss": 0.7 * np.exp(-e / 3) + 0.1,
            "val_loss": 0.7 * np.exp(-e / 4) + 0.2 + rng.normal(0, 0.02),
        }
        for r in range(2)
        for f in range(3)
        for e in range(5)
    ]
    pd.DataFrame(curves).to_csv(group / "training_curves.tsv", sep="\t", index=False)
    cohort = pd.DataFrame(
        {
            "participant_id": [*labels, "sub-13"],
            "ul_fma": [10, 12, 5, 18, 20, 3, 40, 55, 33, 60, 25, 45, "n/a"],
            "class": ["severe"] * 6 + ["mild-to-moderate"] * 6 + ["n/a"],
            "lesion_side": [*list("LRLRLRLRLRLR"), "L"],
            "included": ["true"] * 12 + ["false"],
            "reason": [""] * 12 + ["no UL-FMA score"],
        }
    )
    cohort.to_csv(group / "cohort.tsv", sep="\t", index=False)
    mask = np.zeros(SHAPE, bool)
    mask[3:17, 3:21, 3:17] = True
    for name, data in (
        ("desc-severe_dfcsd", np.abs(rng.normal(0.2, 0.05, SHAPE))),
        ("desc-mild_dfcsd", np.abs(rng.normal(0.25, 0.05, SHAPE))),
        ("desc-difference_dfcsd", rng.normal(0, 0.05, SHAPE)),
        ("desc-heldoutsaliencysevere_map", rng.normal(0.2, 1, SHAPE)),
        ("desc-heldoutsaliencymild_map", rng.normal(-0.2, 1, SHAPE)),
    ):
        nb.Nifti1Image((data * mask).astype(np.float32), affine()).to_filename(group / f"{name}.nii.gz")
    pd.DataFrame(
        {
            "region": ["Precentral", "Postcentral", "Supp_Motor_Area"],
            "side": ["ipsilesional", "contralesional", "ipsilesional"],
            "class_difference": [0.9, -0.55, 0.42],
            "mean_saliency_severe": [0.5, -0.3, 0.2],
            "mean_saliency_mild": [-0.4, 0.25, -0.22],
            "mean_saliency": [0.05, -0.03, -0.01],
            "n_voxels": [120, 98, 60],
        }
    ).to_csv(group / "saliency_regions.tsv", sep="\t", index=False)


def make_group_report(tmp_path: Path, rng, **kwargs) -> Path:
    from bids_app.group_level import GroupSubject
    from bids_app.reports.group import write_group_report

    config = make_config(tmp_path, "group", n_permutations=30)
    make_group_outputs(config.output_dir, rng, **kwargs)
    subjects = [GroupSubject(f"{i:02d}", Path("x.nii.gz"), None, "L", 10.0) for i in range(1, 13)]
    return write_group_report(config, subjects, {"13": "no UL-FMA score"})


# --------------------------------------------------------------------------- figures


def test_participant_reportlets_are_valid_svgs(tmp_path, rng):
    run = tiny_run(rng)
    figs = draw_run_figures(run, tmp_path)
    assert set(figs) == {"seed", "confounds", "carpet", "seedts", "maps"}
    for path in figs.values():
        assert_valid_svg(path)
    # the fixed colour scales are stated in the mosaic, the censoring count in the motion plot
    # (matplotlib keeps each text as an SVG comment next to its glyph paths)
    maps_svg = Path(figs["maps"]).read_text()
    for title in ("dFC SD (scale 0 to 0.5)", "mean dFC (scale -1 to 1)", "static FC (scale -1 to 1)"):
        assert f"<!-- {title} -->" in maps_svg
    n_censored = int(run["censored"][2:].sum())  # 2 dummy scans are not counted
    assert f"{n_censored} of {N_VOLS - 2} volumes censored" in Path(figs["confounds"]).read_text()


def test_seed_overlay_without_lesion_and_from_4d_reference(tmp_path, rng):
    run = tiny_run(rng)
    out = rl.plot_seed_overlay(run["seed"], run["bold"], tmp_path / "seed.svg")
    assert_valid_svg(out)


def test_group_reportlets_are_valid_svgs(tmp_path, rng):
    make_group_outputs(tmp_path, rng)
    preds = pd.read_csv(tmp_path / "group" / "cv_predictions.tsv", sep="\t")
    curves = pd.read_csv(tmp_path / "group" / "training_curves.tsv", sep="\t")
    for path in (
        rl.plot_roc(preds, tmp_path / "roc.svg"),
        rl.plot_confusion(preds, tmp_path / "cm.svg"),
        rl.plot_calibration(preds, tmp_path / "cal.svg"),
        rl.plot_loss_curves(curves, tmp_path / "loss.svg"),
        rl.plot_permutation(rng.normal(0.5, 0.1, 50), 0.7, 0.02, tmp_path / "perm.svg"),
    ):
        assert_valid_svg(path)


def test_subject_probabilities_soft_vote_over_repeats():
    preds = pd.DataFrame(
        {
            "participant_id": ["sub-1", "sub-1", "sub-2", "sub-2"],
            "repeat": [0, 1, 0, 1],
            "fold": 0,
            "model": "cnn",
            "y_true": [1, 1, 0, 0],
            "prob_severe": [0.2, 0.6, 0.1, 0.3],
        }
    )
    out = rl.subject_probabilities(preds).set_index("participant_id")
    assert out.loc["sub-1", "prob_severe"] == pytest.approx(0.4)
    assert out.loc["sub-2", "prob_severe"] == pytest.approx(0.2)
    assert list(out["y_true"]) == [1, 0]


# --------------------------------------------------------------------------- methods boilerplate


def test_methods_text_states_parameters_and_references(tmp_path):
    from bids_app.reports.boilerplate import methods_text

    config = make_config(
        tmp_path,
        "participant",
        window_length="30vol",
        window_shape="hamming",
        smoothing=4.0,
        denoise="scrubbing",
        fd_thresh=0.3,
    )
    md = methods_text(config, {"nipype": "1.11.0", "nilearn": "0.14.1"})
    for needle in (
        "30 volumes",
        "Hamming",
        "4 mm FWHM",
        "`scrubbing`",
        "0.3 mm",
        "0.01 Hz",
        "0.08 Hz",
        "HCPEx",
        "Nipype 1.11.0",
        "nilearn 0.14.1",
        "Frontiers in Neurology",
        "fMRIPrep",
    ):
        assert needle in md, needle
    assert "cross-validation" not in md  # group paragraph only at the group level

    group = make_config(tmp_path, "group", cv_folds=4, cv_repeats=3, n_permutations=100)
    md = methods_text(group, {"torch": "2.13.0"})
    for needle in (
        "4-fold cross-validation repeated 3 times",
        "100 label permutations",
        "PyTorch 2.13.0",
        "Paszke",
        "held-out subjects",
        "HCPex",
        "not recalibrated",
        "every model",
        "mirrored",
    ):
        assert needle in md, needle


def test_write_citation_writes_markdown_and_offline_html(tmp_path):
    from bids_app.reports.boilerplate import methods_text, write_citation

    md = methods_text(make_config(tmp_path, "participant"), {})
    md_path, html_path = write_citation(tmp_path / "logs", md)
    assert md_path.read_text() == md
    html = html_path.read_text()
    assert "<h2>Methods</h2>" in html
    assert 'id="ref-fmriprep"' in html
    assert "<code>simple</code>" in html
    assert no_external_resources(html)


# --------------------------------------------------------------------------- reports


def test_participant_report_embeds_every_figure(tmp_path, rng):
    out = make_participant_report(tmp_path, rng)
    html = Path(out).read_text()
    assert Path(out).name == "sub-01.html"
    assert html.count('src="data:image/svg+xml;base64,') == 5
    for needle in (
        "sub-01",
        "L (from mask)",
        "12% of the seed lies in the lesion",
        "0.73",
        "severe",
        "abc123def456",
        "0.71 \u00b1 0.05",
        "severe = UL-FMA &lt;= 20",
        "<h2>Methods</h2>",
    ):
        assert needle in html, needle
    assert no_external_resources(html)


def test_participant_report_notes_missing_figures(tmp_path):
    from bids_app.reports.participant import build_participant_report

    out = build_participant_report(
        tmp_path / "sub-02.html",
        subject="sub-02",
        summary={"Subject": "sub-02"},
        runs=[
            {"name": "run-1", "metadata": {}, "warnings": [], "figures": {"seed": str(tmp_path / "gone.svg")}}
        ],
        prediction=None,
        methods_md="",
        errors=["run-2 failed: boom"],
    )
    html = Path(out).read_text()
    assert "figure not available" in html
    assert "run-2 failed: boom" in html
    assert "<img" not in html
    assert 'id="prediction"' not in html


def test_group_report_from_contract_outputs(tmp_path, rng):
    out = make_group_report(tmp_path, rng)
    html = Path(out).read_text()
    assert Path(out) == tmp_path / "out" / "group.html"
    figures = sorted(p.name for p in (tmp_path / "out" / "group" / "figures").glob("*.svg"))
    assert figures == [
        "desc-calibration_cv.svg",
        "desc-confusion_cv.svg",
        "desc-groupmaps_mosaic.svg",
        "desc-loss_cv.svg",
        "desc-permutation_cv.svg",
        "desc-roc_cv.svg",
    ]
    assert html.count('src="data:image/svg+xml;base64,') == 6
    for needle in (
        "no UL-FMA score",
        "sub-13",
        "12 subjects included (6 mild-to-moderate, 6 severe)",
        "3-fold cross-validation repeated 2 times",
        "0.7 &plusmn; 0.08",
        "0.61 to 0.79",
        "Voxel PCA-logistic",
        "Precentral",
        "contralesional",
        "3D CNN p = 0.032",
        "Voxel PCA-logistic p = 0.2",
        "2 repeat(s) of k-fold per draw",
        "class_difference",
        "not calibrated",
        "12,345",
        "6 severe subject(s) (fewer than 10",  # the summary's warnings, in the CV section
        "With 6 severe and 6 mild-to-moderate subjects, a model needs",  # what the cohort can detect
        "no test subject of the fold is seen",  # the learning curves come from the training subjects
    ):
        assert needle in html, needle
    assert no_external_resources(html)
    assert (tmp_path / "out" / "logs" / "CITATION.md").is_file()
    assert (tmp_path / "out" / "logs" / "CITATION.html").is_file()


def test_group_report_tolerates_missing_optional_outputs(tmp_path):
    from bids_app.group_level import GroupSubject
    from bids_app.reports.group import write_group_report

    config = make_config(tmp_path, "group")
    subjects = [
        GroupSubject("01", Path("a.nii.gz"), None, "L", 10.0),
        GroupSubject("02", Path("b.nii.gz"), None, "R", 45.0),
    ]
    out = write_group_report(config, subjects, {"03": "map missing"})
    html = Path(out).read_text()
    assert "2 subjects included (1 mild-to-moderate, 1 severe)" in html
    assert "map missing" in html
    assert "No cross-validation summary" in html
    assert "No group maps were found" in html
    assert "<img" not in html


def test_external_validation_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score

    from bids_app.reporting import external_validation

    rng = np.random.default_rng(0)
    y = np.array([1, 0] * 10)
    prob = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(scale=0.2, size=y.size), 0, 1)
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:02d}" for i in range(y.size)],
            "prob_severe": prob.astype(str),
            "class_true": np.where(y == 1, "severe", "mild-to-moderate"),
        }
    )
    out = external_validation(table)
    assert out["n_labelled"] == 20
    assert out["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, prob >= 0.5))
    assert out["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, prob))
    assert out["brier"]["value"] == pytest.approx(brier_score_loss(y, prob))
    lo, hi = out["balanced_accuracy"]["ci95"]
    assert lo <= out["balanced_accuracy"]["value"] <= hi
    assert np.sum(out["confusion"]["matrix"]) == 20
    assert sum(b["n"] for b in out["calibration"]) == 20
    assert external_validation(table.drop(columns="class_true")) is None


def test_methods_text_names_every_window_shape_estimator_and_strategy():
    from workflows.methods import WINDOW_ESTIMATOR_TEXT, WINDOW_SHAPE_TEXT
    from workflows.params import STRATEGIES, STRATEGY_TEXT, WINDOW_ESTIMATORS, WINDOW_SHAPES

    assert set(WINDOW_SHAPE_TEXT) == set(WINDOW_SHAPES)
    assert set(WINDOW_ESTIMATOR_TEXT) == set(WINDOW_ESTIMATORS)
    assert set(STRATEGY_TEXT) == set(STRATEGIES)


def test_cohort_summary_counts_sessions_per_subject():
    from bids_app.reports.group import cohort_summary

    rows = [
        {
            "participant_id": f"sub-{s}",
            "session": f"ses-{k}",
            "class": "severe",
            "lesion_side": "L",
            "included": True,
        }
        for s, n in (("01", 3), ("02", 3), ("03", 2))
        for k in range(1, n + 1)
    ]
    text = cohort_summary(rows)
    assert text.startswith(
        "8 subject-sessions included from 3 subjects (1 with 2 sessions, 2 with 3 sessions"
    )
    plain = cohort_summary([{**r, "session": "n/a"} for r in rows[:2]])
    assert plain.startswith("2 subjects included")
