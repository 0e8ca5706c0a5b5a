"""Report figures, the methods boilerplate, and both HTML reports built from small fake outputs."""

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import matplotlib.colors
import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bids_app.config import RunConfig, build_config
from workflows import plotting as rl
from workflows.decision_curve import decision_curves, decision_summary
from workflows.learning_curve import learning_curve_summary
from workflows.study_design import sample_size_curve

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
    """The six participant figures of a run, as the RunReportlets interface draws them."""
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
            run["maps"],
            fig_dir / "maps.svg",
            {"dFC SD": 0.5, "mean dFC": 1.0, "static FC": 1.0},
            seed_img=run["seed"],
            lesion_mask_img=run["lesion"],
        ),
        "dynamics": rl.plot_map_mosaics(
            {"dFC excess": run["maps"]["mean dFC"], "hemodynamic lag": run["maps"]["static FC"]},
            fig_dir / "dynamics.svg",
            {"dFC excess": 0.25, "hemodynamic lag": 2.0},
            seed_img=run["seed"],
            units={"hemodynamic lag": "s"},
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


def svg_texts(path) -> set[str]:
    """The texts an SVG figure writes as SVG ``<text>`` (what a reader can select and search)."""
    root = ET.parse(path).getroot()
    return {"".join(el.itertext()) for el in root.iter() if el.tag.split("}")[-1] == "text"}


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
    """A participant report of one subject with one run, its six figures and a prediction."""
    from bids_app.reports.about import about_rows
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
    config = replace(
        make_config(tmp_path, "participant"),
        command=("strokefc", "bids", "out", "participant", "--participant-label", "01"),
    )
    return build_participant_report(
        out / "sub-01.html",
        subject="01",
        summary={"Subject": "sub-01", "Repetition time (s)": TR, "Lesion hemisphere": "L (from mask)"},
        runs=runs,
        prediction=prediction,
        methods_md=methods_text(config, {"nilearn": "0.x"}),
        errors=[],
        notes=["UL-FMA taken from participants.tsv"],
        about=about_rows(config, {"nilearn": "0.14.1", "torch": "2.13.0"}),
    )


#: Models of the fake cross-validation and the noise of their probabilities (the primary at a second
#: window length included, as --window-lengths writes it).
MODEL_NOISE = (
    ("cnn", 0.25),
    ("baseline", 0.35),
    ("parcel", 0.2),
    ("parcel_fc", 0.3),
    ("parcel_dfcmean", 0.3),
    ("confounds", 0.45),
    ("parcel_ts30s", 0.3),
)


def fake_bootstrap() -> dict:
    """cv_summary.json's bootstrap: the primary above chance, beating the motion/QC control, not
    differing from static FC, and beaten by mean dFC."""

    def rec(ba, lo, hi, auc, diff=None):
        out = {
            "balanced_accuracy": {"value": ba, "ci95": [lo, hi]},
            "roc_auc": {"value": auc, "ci95": [0.5, 1]},
        }
        if diff:
            out["difference_from_parcel"] = {
                "balanced_accuracy": {"value": diff[0], "ci95": [diff[1], diff[2]], "p_two_sided": 0.04}
            }
        return out

    return {
        "parcel": rec(0.81, 0.66, 0.93, 0.88),
        "cnn": rec(0.7, 0.55, 0.85, 0.8, (-0.11, -0.3, 0.06)),
        "baseline": rec(0.62, 0.45, 0.78, 0.7, (-0.19, -0.4, 0.01)),
        "parcel_fc": rec(0.78, 0.62, 0.91, 0.84, (-0.03, -0.2, 0.12)),
        "parcel_dfcmean": rec(0.95, 0.85, 1.0, 0.99, (0.14, 0.02, 0.3)),
        "confounds": rec(0.5, 0.33, 0.66, 0.52, (-0.31, -0.5, -0.12)),
    }


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
        "bootstrap": fake_bootstrap(),
        "primary_model": "parcel",
        "paired_tests": {"cnn": {"p_two_sided": 0.21}},
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
            for model, noise in MODEL_NOISE:
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
    # decision curves, the primary model's learning curve and the sample size, by the real functions
    decisions = decision_curves(rows)
    pd.DataFrame(decisions).to_csv(group / "decision_curves.tsv", sep="\t", index=False)
    learning = [
        {
            "model": "parcel",
            "repeat": r,
            "fold": f,
            "fraction": fraction,
            "n_train_subjects": round(8 * fraction),
            "balanced_accuracy": 0.55 + 0.25 * fraction + rng.normal(0, 0.05),
        }
        for r in range(2)
        for f in range(3)
        for fraction in (0.4, 0.6, 0.8, 1.0)
    ]
    pd.DataFrame(learning).to_csv(group / "learning_curves.tsv", sep="\t", index=False)
    summary["decision_curve"] = decision_summary(decisions, "parcel", "none")
    summary["learning_curve"] = {"points": learning_curve_summary(learning, "balanced_accuracy")}
    summary["sample_size"] = sample_size_curve(0.5, 40, 12, 0.88, simulation=20_000)
    (group / "cv_summary.json").write_text(json.dumps(summary))
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
    assert set(figs) == {"seed", "confounds", "carpet", "seedts", "maps", "dynamics"}
    for path in figs.values():
        assert_valid_svg(path)
    # the fixed colour scales are stated in the mosaic, the censoring count in the motion plot, as SVG text
    maps_text = svg_texts(figs["maps"])
    for title in ("dFC SD (scale 0 to 0.5)", "mean dFC (scale -1 to 1)", "static FC (scale -1 to 1)"):
        assert title in maps_text
    assert "hemodynamic lag (scale -2 to 2, s)" in svg_texts(figs["dynamics"])
    # the FD series is the one after the dummy scans: every censored volume of it is counted
    n_censored = int(run["censored"].sum())
    text = f"{n_censored} of {N_VOLS} volumes censored (after 2 dummy scans)"
    assert any(text in t for t in svg_texts(figs["confounds"]))
    seed_title = "Seed (orange) on the MNI152 template, run's brain mask (grey), lesion (blue)"
    assert seed_title in svg_texts(figs["seed"])
    # text is text, in matplotlib's sans-serif list that ends in the generic family, not glyph outlines
    seed_svg = Path(figs["seed"]).read_text()
    assert "<!-- Seed (orange)" not in seed_svg
    assert "sans-serif" in seed_svg


def test_tight_box_is_the_tight_crop_without_a_second_draw():
    """The crop measured on the layout (one draw when saved) is savefig's tight crop within 2 points (text
    measured by the Agg renderer, not the SVG one), and
    it reaches past the figure's edge to keep a legend placed outside the axes."""
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="a long legend entry")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("a title")
    box = rl.tight_box(fig)
    assert box.x1 > 4.0  # inches: the legend lies right of the 4-inch figure
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    size = re.search(rb'width="([\d.]+)pt" height="([\d.]+)pt"', buf.getvalue())
    assert size is not None
    assert abs(float(size.group(1)) - box.width * 72) < 2.0
    assert abs(float(size.group(2)) - box.height * 72) < 2.0


def test_mosaic_cuts_move_onto_the_seed_and_the_lesion():
    seed = np.zeros(SHAPE, np.uint8)
    seed[5:8, 10:13, 12:15] = 1  # centre z index 13 -> -30 + 4 * 13 = 22 mm
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[6:10, 8:14, 2:4] = 1  # centre z index 2.5 -> -20 mm
    masks = [nb.Nifti1Image(m, affine()) for m in (seed, lesion)]
    cuts = rl.with_landmark_slices([-24.0, -10.0, 5.0, 20.0, 40.0], masks)
    assert cuts == [-20.0, -10.0, 5.0, 22.0, 40.0]
    assert rl.with_landmark_slices([0.0, 10.0], []) == [0.0, 10.0]


def _planted(x_mm, y_mm, z_mm, shape=(7, 8, 9)):
    """A 4 mm map on a deliberately unequal grid, 1 at the voxel holding (x, y, z) mm and 0 elsewhere."""
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-14.0, -16.0, -18.0]
    data = np.zeros(shape, np.float32)
    ijk = np.rint(nb.affines.apply_affine(np.linalg.inv(aff), [x_mm, y_mm, z_mm])).astype(int)
    data[tuple(ijk)] = 1.0
    return nb.Nifti1Image(data, aff)


@pytest.mark.parametrize("flip_x", [False, True])
def test_axial_canvas_puts_a_voxel_on_its_side_and_cut(flip_x):
    """Left on the left and anterior up on the cut through the voxel, whatever the background's x
    direction; nothing on a cut that misses it."""
    bg_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    bg_aff[:3, 3] = [-20.0, -24.0, -20.0]
    bg_data = np.ones((21, 25, 21), np.float32)  # x -20..20, y -24..24, z -20..20 mm
    if flip_x:  # the same image stored right-to-left
        bg_aff = bg_aff @ np.array([[-1, 0, 0, 20], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        bg_data = bg_data[::-1]
    bg = nb.Nifti1Image(bg_data, bg_aff)
    left_front = _planted(-10.0, 8.0, 2.0)
    right_back = _planted(10.0, -8.0, 2.0)
    canvas = rl.axial_canvas(bg, [left_front, right_back], [-10.0, 2.0])
    assert canvas.cuts == (-10.0, 2.0)
    height, width = canvas.background.shape
    assert height == 25  # the whole background has content: y kept from -24 to 24 mm
    (a0, a1), (b0, b1) = canvas.columns
    assert (a1 - a0, b1 - b0) == (21, 21)
    assert b0 == a1 + 2
    assert width == b1
    for layer in canvas.layers:
        assert not layer[:, a0:a1].any()  # the cut at z = -10 mm misses both voxels
        assert not layer[:, a1:b0].any()  # the gap between cuts stays empty
    rows, cols = np.nonzero(canvas.layers[0][:, b0:b1])
    # a 4 mm voxel covers 2-3 canvas pixels (2 mm) a side around x = -10, y = 8 mm
    assert cols.mean() == pytest.approx((-10.0 + 20.0) / 2, abs=1.0)  # left half
    assert rows.mean() == pytest.approx((8.0 + 24.0) / 2, abs=1.0)  # upper (anterior) half
    rows, cols = np.nonzero(canvas.layers[1][:, b0:b1])
    assert cols.mean() == pytest.approx((10.0 + 20.0) / 2, abs=1.0)
    assert rows.mean() == pytest.approx((-8.0 + 24.0) / 2, abs=1.0)


def test_axial_canvas_crops_each_cut_to_its_content():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.zeros((30, 20, 10), np.float32)
    data[5:25, 4:16, 2] = 1.0  # a wide slice
    data[12:16, 8:12, 7] = 1.0  # a small one
    canvas = rl.axial_canvas(nb.Nifti1Image(data, aff), [], [4.0, 14.0])
    (a0, a1), (b0, b1) = canvas.columns
    assert (a1 - a0, b1 - b0) == (22, 6)  # content and one voxel either side
    assert canvas.background.shape[0] == 14  # rows 4..15 of the wider cut, one either side
    assert canvas.background_range == (0.0, 1.0)


def test_map_scale_is_sequential_only_for_maps_never_negative():
    sd = np.array([0.0, 0.1, 0.3])
    assert rl.map_scale(sd, 0.5, "SD of Fisher z") == (0.5, True, "0 to 0.5, SD of Fisher z")
    assert rl.map_scale(sd - 0.01, 0.5, None) == (0.5, False, "-0.5 to 0.5")
    assert rl.map_scale(np.zeros(3), 0.5, "s") == (1.0, True, "0 to 1, s")  # an empty map
    top, _, _ = rl.map_scale(np.linspace(-2.0, 2.0, 101), None, None)
    assert top == pytest.approx(np.percentile(np.abs(np.linspace(-2.0, 2.0, 101)[np.arange(101) != 50]), 99))


def test_map_colours_clear_what_is_under_the_threshold():
    values = np.array([0.0, 5e-7, 0.02, 0.25, 0.5, 0.9])
    rgba, cmap, norm = rl.map_rgba(values, 0.5, positive=True)
    assert cmap.name == "inferno"
    assert (norm.vmin, norm.vmax) == (0.0, 0.5)
    np.testing.assert_allclose(rgba[:, 3], [0, 0, 0.85, 0.85, 0.85, 0.85])
    np.testing.assert_allclose(rgba[4, :3], matplotlib.colormaps["inferno"](1.0)[:3])
    np.testing.assert_allclose(rgba[5, :3], rgba[4, :3])  # above the top: the top colour
    signed = np.array([-1.0, -0.04, 0.0, 0.04, 0.06, 1.0])
    rgba, cmap, norm = rl.map_rgba(signed, 1.0, positive=False)
    assert (norm.vmin, norm.vmax) == (-1.0, 1.0)
    np.testing.assert_allclose(rgba[:, 3], [1, 0, 0, 0, 1, 1])  # within 5% of the scale: clear
    np.testing.assert_allclose(rgba[0, :3], matplotlib.colormaps["RdBu_r"](0.0)[:3])
    np.testing.assert_allclose(rgba[5, :3], matplotlib.colormaps["RdBu_r"](1.0)[:3])
    # the colourbar greys the clear band and keeps both ends
    np.testing.assert_allclose(cmap(0.5)[:3], (0.5, 0.5, 0.5))
    np.testing.assert_allclose(cmap(1.0), matplotlib.colormaps["RdBu_r"](1.0))


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
        rl.plot_decision_curves(
            pd.read_csv(tmp_path / "group" / "decision_curves.tsv", sep="\t"), tmp_path / "dca.svg", "parcel"
        ),
        rl.plot_learning_curve(
            pd.read_csv(tmp_path / "group" / "learning_curves.tsv", sep="\t"), tmp_path / "learning.svg"
        ),
        rl.plot_sample_size(
            json.loads((tmp_path / "group" / "cv_summary.json").read_text())["sample_size"],
            tmp_path / "size.svg",
        ),
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
    assert html.count('src="data:image/svg+xml;base64,') == 6
    for needle in (
        "sub-01",
        "L (from mask)",
        "Dynamics beyond a stationary null, and hemodynamic lag",
        "12% of the seed lies in the lesion",
        "UL-FMA taken from participants.tsv",
        "0.73",
        "severe",
        "abc123def456",
        "0.71 \u00b1 0.05",
        "severe = UL-FMA &lt;= 20",
        "<h2>Methods</h2>",
    ):
        assert needle in html, needle
    assert no_external_resources(html)
    # the sidecar's warning and the subject's note are in "Errors and warnings", before the runs
    problems = html[html.index('<section id="errors">') : html.index('<section id="run-1">')]
    assert "12% of the seed lies in the lesion" in problems
    assert "UL-FMA taken from participants.tsv" in problems
    assert "No errors or warnings" not in problems
    # About: the command line, strokefc's version and the key packages
    from bids_app import __version__

    about = html[html.index('<section id="about">') : html.index('<section id="methods">')]
    assert "<code>strokefc bids out participant --participant-label 01</code>" in about
    assert f"<th>strokefc version</th><td>{__version__}</td>" in about
    assert "nilearn 0.14.1, torch 2.13.0" in about


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
    assert '<div class="errors"><ul>\n<li>run-2 failed: boom</li>' in html
    assert "<img" not in html
    assert 'id="prediction"' not in html
    assert "Not recorded." in html  # no About rows given


def test_participant_report_without_problems_says_so(tmp_path):
    from bids_app.reports.participant import build_participant_report

    html = Path(
        build_participant_report(
            tmp_path / "sub-03.html",
            subject="03",
            summary={"Subject": "sub-03"},
            runs=[{"name": "run-1", "metadata": {}, "warnings": [], "figures": {}}],
        )
    ).read_text()
    assert "No errors or warnings to report." in html


def test_qc_problems_name_each_excluded_run_and_its_reason():
    from bids_app.reports.about import qc_problems

    rows = [
        {"run": "task-rest run-1", "excluded": "0", "reason": ""},
        {"run": "task-rest run-2", "excluded": "1", "reason": "mean FD 0.61 mm > 0.5 mm"},
        {"run": "task-rest run-3", "excluded": "1", "reason": "n/a"},
    ]
    assert qc_problems(rows) == [
        "task-rest run-2: excluded by QC (mean FD 0.61 mm > 0.5 mm)",
        "task-rest run-3: excluded by QC (no reason recorded)",
    ]


def test_command_line_is_recorded_by_the_parser(tmp_path):
    from bids_app.parser import parse_args
    from bids_app.reports.about import command_text

    argv = [str(tmp_path), str(tmp_path / "out"), "group", "--boilerplate-only", "--cv-folds", "4"]
    config = parse_args(argv)
    assert config.command == ("strokefc", *argv)
    assert command_text(config).endswith("group --boilerplate-only --cv-folds 4")


def test_fd_panel_counts_the_series_after_the_dummy_scans_once(tmp_path, monkeypatch):
    """The denoising step writes FD and the kept flags after its dummy scans; the panel must not drop
    them again: its x axis starts after the dummies and every censored volume is counted."""
    drawn = []
    monkeypatch.setattr(rl, "_save", lambda fig, out: drawn.append(fig) or str(out))
    fd = np.array([0.1, 0.2, 0.9, 0.1, 0.1, 1.1, 0.2, 0.1, 0.1, 0.2])  # 10 volumes after 3 dummies
    censored = fd > 0.5
    rl.plot_confounds(fd, censored, tmp_path / "fd.svg", fd_thresh=0.5, dummy=3)
    ax = drawn[0].axes[0]
    assert ax.get_title().endswith("2 of 10 volumes censored (after 3 dummy scans)")
    fd_line = next(line for line in ax.get_lines() if line.get_label() == "FD")
    assert list(fd_line.get_xdata()) == list(range(3, 13))
    assert list(fd_line.get_ydata()) == list(fd)
    assert ax.get_xlim() == (-0.5, 12.5)
    red = [line.get_xdata()[0] for line in ax.get_lines() if line.get_label().startswith("_child")]
    assert sorted(red) == [5, 8]  # censored volumes 2 and 5 of the series, shifted by the dummies
    # without scrubbing there is no threshold to draw
    drawn.clear()
    rl.plot_confounds(fd, np.zeros(10, bool), tmp_path / "fd.svg", fd_thresh=None, dummy=0)
    labels = [line.get_label() for line in drawn[0].axes[0].get_lines()]
    assert not any(label.startswith("threshold") for label in labels)
    assert drawn[0].axes[0].get_title().endswith("0 of 10 volumes censored")


def test_group_report_from_contract_outputs(tmp_path, rng):
    out = make_group_report(tmp_path, rng)
    html = Path(out).read_text()
    assert Path(out) == tmp_path / "out" / "group.html"
    figures = sorted(p.name for p in (tmp_path / "out" / "group" / "figures").glob("*.svg"))
    assert figures == [
        "desc-calibration_cv.svg",
        "desc-confusion_cv.svg",
        "desc-decision_cv.svg",
        "desc-groupmaps_mosaic.svg",
        "desc-learning_cv.svg",
        "desc-loss_cv.svg",
        "desc-permutation_cv.svg",
        "desc-roc_cv.svg",
        "desc-samplesize_cv.svg",
    ]
    assert html.count('src="data:image/svg+xml;base64,') == 9
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
        # decision curves, learning curve and sample size: figures with captions, and their sentences
        "Decision curves (Vickers &amp; Elkin 2006)",
        "Decision curves: for the primary parcel model, its mean out-of-fold net benefit exceeds",
        "scored on the fold&#39;s unchanged test subjects",
        "Learning curve: the primary parcel model reached a balanced accuracy of",
        "Minimum sample size (Riley et al. 2020)",
        "This cohort has 12 patients (50% severe); by the criteria of Riley et al. (2020), a model with 40 "
        "candidate parameters and C = 0.88",
    ):
        assert needle in html, needle
    assert no_external_resources(html)
    # the answer comes first: the Result section, then cross-validation, and the cohort table last,
    # folded
    order = [html.index(f'<section id="{s}">') for s in ("result", "cv", "maps", "cohort", "errors", "about")]
    assert order == sorted(order)
    result = html[order[0] : order[1]]
    assert "balanced accuracy of 0.81 (95% subject-bootstrap interval 0.66 to 0.93): above chance" in result
    assert "it does not differ from Static FC (control)" in result
    # the paired intervals exclude 0, but no permutation test ran for the better model: no claim
    claim = result[result.index("it differs from") :]
    assert "Motion/QC only (control)" in claim
    assert "Mean dFC (control)" in claim
    assert "so no claim" in claim
    assert " beats " not in result
    assert "<th>dFC-SD parcels (primary)</th>" in result
    assert "0.81 [0.66 to 0.93]" in result
    assert "worse (-0.31, -0.50 to -0.12)" in result
    cohort = html[order[3] : order[4]]
    assert cohort.index("<details>") < cohort.index("<table>")
    # the ROC caption counts the models drawn, by their table names
    assert "ROC curves of the out-of-fold predictions of 7 models (dFC-SD parcels (primary), 3D CNN" in html
    assert "dFC-SD parcels (primary) at 30s windows" in html
    assert "No errors or warnings to report." in html
    assert "<th>strokefc version</th>" in html
    assert (tmp_path / "out" / "logs" / "CITATION.md").is_file()
    assert (tmp_path / "out" / "logs" / "CITATION.html").is_file()


def test_result_sentences_without_controls_or_summary():
    from bids_app.reports.group import result_sentences

    assert result_sentences({}) == []
    boot = {"parcel": fake_bootstrap()["parcel"]}
    boot["parcel"]["balanced_accuracy"]["ci95"] = [0.45, 0.8]
    text = result_sentences({"bootstrap": boot, "primary_model": "parcel"})
    assert "not distinguishable from chance (balanced accuracy interval 0.45 to 0.80" in text[0]
    assert text[1].startswith("No control model ran")


def test_result_sentences_claim_beats_only_after_the_better_model_s_permutation_test():
    from bids_app.reports.group import result_sentences

    boot = fake_bootstrap()
    summary = {"bootstrap": boot, "primary_model": "parcel"}
    untested = " ".join(result_sentences(summary))
    assert " beats " not in untested
    assert "so no claim" in untested
    summary["permutation"] = {"models": {"parcel": {"p_value": 0.01}, "parcel_dfcmean": {"p_value": 0.4}}}
    tested = " ".join(result_sentences(summary))
    assert "it beats Motion/QC only (control)" in tested  # primary better, and above chance by permutation
    assert "permutation p = 0.01" in tested
    assert "Mean dFC (control)" in tested[tested.index("it differs from") :]  # better, but at chance


def test_result_sentences_of_a_regression_read_the_mae_differences():
    from bids_app.reports.group import result_sentences

    def diff(lo, hi):
        return {"mae": {"value": (lo + hi) / 2, "ci95": [lo, hi], "p_two_sided": 0.1}}

    boot = {
        "parcel": {
            "mae": {"value": 8.0, "ci95": [6.0, 10.0]},
            "difference_from_mean": diff(-5.0, -1.0),  # lower MAE than the mean reference: better
            "difference_from_confounds": diff(-2.0, 1.0),
        },
        "confounds": {"mae": {"value": 9.0, "ci95": [7.0, 11.0]}},
        "mean": {"mae": {"value": 12.0, "ci95": [10.0, 14.0]}},
    }
    text = result_sentences({"bootstrap": boot, "primary_model": "parcel", "target": "regression"})
    assert "MAE of 8.0 points (95% subject-bootstrap interval 6.00 to 10.00)" in text[0]
    assert "above chance (MAE difference from the training mean -5.0 to -1.0" in text[0]
    assert "it does not differ from Motion/QC only (control)" in text[1]


def test_group_figures_use_the_table_names_and_one_colour_per_model(tmp_path, rng, monkeypatch):
    """Every legend entry and panel title is a model's table name; no two models share a colour; the
    confusion matrices are panels of a grid, not a strip."""
    from bids_app.reports.group import result_rows

    make_group_outputs(tmp_path, rng)
    preds = pd.read_csv(tmp_path / "group" / "cv_predictions.tsv", sep="\t")
    table_names = {row["model"] for row in result_rows({"bootstrap": fake_bootstrap()})}
    table_names.add("dFC-SD parcels (primary) at 30s windows")
    drawn = []
    monkeypatch.setattr(rl, "_save", lambda fig, out: drawn.append(fig) or str(out))
    rl.plot_roc(preds, tmp_path / "roc.svg")
    rl.plot_calibration(preds, tmp_path / "cal.svg")
    rl.plot_confusion(preds, tmp_path / "cm.svg")
    roc, cal, confusion = drawn
    for fig, reference in ((roc, "chance"), (cal, "perfect calibration")):
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend[0] == reference
        names = [re.sub(r" \((AUC|\d+ repeats).*$", "", t) for t in legend[1:]]
        assert len(names) == len(MODEL_NOISE)
        assert set(names) <= table_names, set(names) - table_names
        lines = [h for h in fig.axes[0].get_legend().legend_handles[1:]]
        colours = [matplotlib.colors.to_hex(h.get_color()) for h in lines]
        assert len(set(colours)) == len(colours), colours
    titles = {ax.get_title() for ax in confusion.axes if ax.axison}
    assert titles <= table_names
    assert len(titles) == len(MODEL_NOISE)
    width, height = confusion.get_size_inches()
    assert height / width > 0.6  # 3 panels a row: 3 rows for 7 models


def test_model_label_and_colours_cover_models_outside_the_registry():
    from workflows.models import COLOURS, model_colours, model_label

    assert model_label("parcel") == "dFC-SD parcels (primary)"
    assert model_label("baseline", "regression") == "Voxel PCA-ridge"
    assert model_label("parcel_ts44s") == "dFC-SD parcels (primary) at 44s windows"
    assert model_label("unknown") == "unknown"
    names = [*COLOURS, "parcel_ts30s", "parcel_ts60s"]
    colours = model_colours(names)
    assert len(set(colours.values())) == len(names)


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


def test_external_validation_matches_scikit_learn(monkeypatch):
    from helpers import fewer_bootstrap_draws
    from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score

    from bids_app.reporting import external_validation

    fewer_bootstrap_draws(monkeypatch)  # the point metrics are checked; the interval only holds them

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


def test_the_underlay_is_nilearns_2mm_template_without_its_resampling():
    from nilearn.datasets import load_mni152_template

    from workflows.plotting import _mni_template

    resampled, ours = load_mni152_template(resolution=2), _mni_template()
    np.testing.assert_array_equal(ours.affine, resampled.affine)
    assert ours.shape == resampled.shape
    np.testing.assert_allclose(ours.get_fdata(), resampled.get_fdata(), rtol=0, atol=1e-12)
