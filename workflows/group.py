"""Group level: lesion-aligned inputs -> subject-level cross-validation -> final model -> saliency.

Each step is a plain function taking and returning paths (called by the thin interfaces of
``workflows.interfaces.group``); :func:`init_group_wf` wires them into a Nipype workflow. Outputs follow
the contract read by the group report (``output_dir/group/`` and ``output_dir/model/``).
"""

from __future__ import annotations

import csv
import json
import logging
from functools import partial
from pathlib import Path

import nibabel as nb
import numpy as np

from bids_app.outputs import atomic_write_json, atomic_write_text

LOGGER = logging.getLogger("strokefc.group")

#: Window maps kept per subject with ``--samples windows`` (neighbouring windows are near copies).
MAX_WINDOWS = 20
#: Window maps per subject used for saliency with ``--samples windows``.
SALIENCY_WINDOWS = 4


def settings_from_config(config) -> dict:
    """The group-level options that shape the results (recorded in cv_summary.json and the card)."""
    return {
        "severe_threshold": float(config.severe_threshold),
        "label_column": config.label_column,
        "align_lesion": bool(config.align_lesion),
        "cnn_resolution": float(config.cnn_resolution),
        "samples": config.samples,
        "cv_folds": int(config.cv_folds),
        "cv_repeats": int(config.cv_repeats),
        "n_permutations": int(config.n_permutations),
        "epochs": int(config.epochs),
        "device": config.device,
        "random_seed": int(config.random_seed),
        "nprocs": int(config.nprocs),
        "max_windows": MAX_WINDOWS,
        "group_mask_min_fraction": 0.9,
    }


def _train_settings(settings: dict, seed: int):
    from workflows.cnn import TrainSettings

    return TrainSettings(epochs=settings["epochs"], seed=seed, device=settings.get("device", "cpu"))


def _write_tsv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    lines = ["\t".join(columns)]
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col, "")
            if isinstance(value, float):
                value = "n/a" if not np.isfinite(value) else f"{value:.6g}"
            elif isinstance(value, bool):
                value = str(value).lower()
            cells.append(str(value))
        lines.append("\t".join(cells))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _save_nifti(data: np.ndarray, grid: dict, path: Path) -> Path:
    from workflows.cnn_inputs import grid_image

    path.parent.mkdir(parents=True, exist_ok=True)
    nb.save(grid_image(data, grid), str(path))
    return path


# --------------------------------------------------------------------------------------------- steps
def prepare_inputs(subjects: list[dict], settings: dict, group_dir, work_dir) -> tuple[str, str]:
    """Lesion-align the maps, build the CNN grid, put every sample on it; write cohort and class maps.

    ``subjects`` are dicts with ``label, map_file, windows_file, lesion_side, score``.
    Returns ``(data_file .npz, grid_file .json)``.
    """
    from workflows.cnn_inputs import align_image, apply_grid, group_mask, make_grid, subsample_windows

    group_dir, work_dir = Path(group_dir), Path(work_dir)
    align = settings["align_lesion"]
    aligned = [align_image(nb.load(s["map_file"]), s["lesion_side"], align) for s in subjects]
    mask = group_mask(aligned, settings.get("group_mask_min_fraction", 0.9))
    grid = make_grid(aligned[0], mask, settings["cnn_resolution"])
    del aligned
    maps = np.concatenate([apply_grid(s["map_file"], grid, s["lesion_side"], align) for s in subjects])
    y_subject = np.array([int(s["score"] <= settings["severe_threshold"]) for s in subjects])
    labels = np.array([s["label"] for s in subjects])
    if settings["samples"] == "windows":
        xs, groups = [], []
        for s in subjects:
            img = nb.load(s["windows_file"])
            n_win = img.shape[3] if img.ndim == 4 else 1
            keep = subsample_windows(n_win, settings.get("max_windows", MAX_WINDOWS))
            if img.ndim == 4:  # read only the kept volumes
                img = nb.Nifti1Image(np.stack([np.asarray(img.dataobj[..., int(i)], dtype=np.float32)
                                               for i in keep], axis=-1), img.affine)
            xs.append(apply_grid(img, grid, s["lesion_side"], align))
            groups.extend([s["label"]] * len(xs[-1]))
        x, groups = np.concatenate(xs), np.array(groups)
        y = np.array([y_subject[labels == g][0] for g in groups])
    else:
        x, y, groups = maps, y_subject, labels
    data_file = work_dir / "group_inputs.npz"
    np.savez(data_file, x=x, y=y, groups=groups, subjects=labels, y_subject=y_subject, maps=maps,
             sides=np.array([s["lesion_side"] for s in subjects]))
    grid_file = atomic_write_json(work_dir / "grid.json", grid)

    severe, mild = maps[y_subject == 1], maps[y_subject == 0]
    shape = tuple(grid["shape"])
    mean_severe = severe.mean(0) if len(severe) else np.zeros(shape)
    mean_mild = mild.mean(0) if len(mild) else np.zeros(shape)
    _save_nifti(mean_severe, grid, group_dir / "desc-severe_dfcsd.nii.gz")
    _save_nifti(mean_mild, grid, group_dir / "desc-mild_dfcsd.nii.gz")
    _save_nifti(mean_severe - mean_mild, grid, group_dir / "desc-difference_dfcsd.nii.gz")
    cohort = [{"participant_id": f"sub-{s['label']}", "ul_fma": float(s["score"]),
               "class": "severe" if t else "mild-to-moderate", "lesion_side": s["lesion_side"],
               "included": True, "reason": ""} for s, t in zip(subjects, y_subject)]
    _write_tsv(group_dir / "cohort.tsv", cohort,
               ["participant_id", "ul_fma", "class", "lesion_side", "included", "reason"])
    LOGGER.info("group inputs: %d subjects, %d samples on a %s grid (%d mask voxels)", len(subjects),
                len(x), "x".join(map(str, shape)), grid["n_mask_voxels"])
    return str(data_file), str(grid_file)


def cnn_fit_predict(x_train, y_train, groups_train, x_test, *, seed: int, settings: dict):
    """Train the CNN on one training fold and predict the test samples (curve rows returned too)."""
    from workflows.cnn import predict_proba, train_model

    model, curve = train_model(x_train, y_train, groups_train,
                               _train_settings(settings, settings["random_seed"] + seed))
    return predict_proba(model, x_test), curve


def baseline_predict(x_train, y_train, groups_train, x_test, *, seed: int, settings: dict):
    from workflows.evaluation import baseline_fit_predict

    return baseline_fit_predict(x_train, y_train, groups_train, x_test, seed=settings["random_seed"] + seed)


def plan_folds(subjects: list[dict], settings: dict) -> list[dict]:
    """Subject-level folds, fixed when the workflow is built: ``{repeat, fold, test: [labels]}``.

    Every sample of a subject follows the subject, so a subject is never on both sides of a fold.
    """
    from workflows.evaluation import subject_folds

    labels = np.array([s["label"] for s in subjects])
    y = np.array([int(s["score"] <= settings["severe_threshold"]) for s in subjects])
    folds = subject_folds(y, labels, settings["cv_folds"], settings["cv_repeats"], settings["random_seed"])
    return [{"repeat": int(f["repeat"]), "fold": int(f["fold"]), "test": labels[f["test"]].tolist()}
            for f in folds]


def _fold_indices(groups: np.ndarray, fold: dict) -> dict:
    test = np.isin(groups, fold["test"])
    return {"repeat": fold["repeat"], "fold": fold["fold"], "train": np.flatnonzero(~test),
            "test": np.flatnonzero(test)}


def run_fold(data_file, fold: dict, settings: dict, work_dir) -> str:
    """Fit the CNN and the baseline on one fold's training subjects, predict its test subjects.

    Writes and returns a JSON file with the fold's predictions, metrics and training curve.
    """
    import torch

    from workflows import evaluation as ev
    from workflows.model_io import json_clean

    torch.set_num_threads(1)  # folds run in parallel as separate Nipype nodes
    data = np.load(data_file)
    x, y, groups = data["x"], data["y"], data["groups"]
    folds = [_fold_indices(groups, fold)]
    models = {"cnn": partial(cnn_fit_predict, settings=settings),
              "baseline": partial(baseline_predict, settings=settings)}
    predictions, metrics, curves = ev.cross_validate(x, y, groups, folds, models)
    out = Path(work_dir) / f"fold_r{fold['repeat']}_f{fold['fold']}.json"
    atomic_write_json(out, json_clean({"predictions": predictions, "metrics": metrics, "curves": curves}))
    return str(out)


def run_permutation(data_file, index: int, settings: dict) -> float:
    """One draw of the label-permutation null distribution of the CNN's balanced accuracy."""
    import torch

    from workflows.evaluation import permutation_null

    torch.set_num_threads(1)
    data = np.load(data_file)
    return permutation_null(data["x"], data["y"], data["groups"], partial(cnn_fit_predict, settings=settings),
                            n_folds=settings["cv_folds"], seed=settings["random_seed"], index=int(index))


def summarise_cv(fold_files: list, null: list, data_file, settings: dict, group_dir) -> str:
    """Gather the folds into cv_predictions.tsv, training_curves.tsv and cv_summary.json (returned)."""
    from workflows import evaluation as ev
    from workflows.cnn import StrokeCNN, count_parameters
    from workflows.model_io import json_clean

    group_dir = Path(group_dir)
    predictions, fold_metrics, curves = [], [], []
    for path in fold_files:
        part = json.loads(Path(path).read_text())
        predictions += part["predictions"]
        fold_metrics += part["metrics"]
        curves += part["curves"]
    key = lambda r: (r["repeat"], r["fold"])  # noqa: E731
    predictions.sort(key=lambda r: (*key(r), r["model"], r["participant_id"]))
    curves.sort(key=lambda r: (*key(r), r["epoch"]))
    fold_metrics.sort(key=lambda r: (*key(r), r["model"]))
    for row in predictions:
        row["participant_id"] = f"sub-{row['participant_id']}"
    _write_tsv(group_dir / "cv_predictions.tsv", predictions,
               ["participant_id", "repeat", "fold", "model", "y_true", "prob_severe"])
    _write_tsv(group_dir / "training_curves.tsv", curves, ["repeat", "fold", "epoch", "train_loss", "val_loss"])
    models = ev.summarise_models(fold_metrics)
    permutation = None
    if null:
        observed = models["cnn"]["balanced_accuracy"]["mean"]
        permutation = {"n": len(null), "p_value": ev.permutation_p_value(observed, null),
                       "null_balanced_accuracy": [float(v) for v in null],
                       "observed_balanced_accuracy": observed, "model": "cnn",
                       "scheme": "subject labels permuted between subjects; one repeat of k-fold per draw"}
    data = np.load(data_file)
    y_subject = data["y_subject"]
    summary = {
        "models": models,
        "fold_metrics": fold_metrics,
        "n_subjects": int(len(y_subject)),
        "n_samples": int(len(data["y"])),
        "class_counts": {"severe": int((y_subject == 1).sum()),
                         "mild-to-moderate": int((y_subject == 0).sum())},
        "cv": {"folds": int(max(m["fold"] for m in fold_metrics) + 1), "repeats": settings["cv_repeats"],
               "grouped_by": "subject",
               "splitter": "sklearn StratifiedGroupKFold by subject (shuffled, seed = random_seed + repeat)",
               "interval": "95% t-interval over folds x repeats (optimistic: folds share subjects)"},
        "samples": settings["samples"],
        "permutation": permutation,
        "baseline": ev.BASELINE_DESCRIPTION,
        "cnn_parameters": count_parameters(StrokeCNN(data["x"].shape[1:])),
        "settings": settings,
    }
    return str(atomic_write_json(group_dir / "cv_summary.json", json_clean(summary)))


def train_final(data_file, settings: dict, work_dir) -> str:
    """Train the final model on every labelled subject; saved (safetensors) in ``work_dir/final``."""
    import torch

    from workflows.cnn import train_model
    from workflows.model_io import save_model

    torch.set_num_threads(1)  # runs alongside the cross-validation folds
    data = np.load(data_file)
    train = _train_settings(settings, settings["random_seed"])
    model, curve = train_model(data["x"], data["y"], data["groups"], train)
    card = {"input": {}, "training": {**train.to_dict(), "final_epochs_run": len(curve),
                                      "n_samples": int(len(data["y"]))}}
    return str(save_model(model, card, Path(work_dir) / "final"))


def export_model(final_dir, grid_file, summary_file, settings: dict, shared_params: dict, model_dir) -> str:
    """Re-load the final model safely, complete its card (grid, labels, CV metrics...), export it."""
    from bids_app import __version__
    from workflows.evaluation import BASELINE_DESCRIPTION
    from workflows.metadata import software_versions
    from workflows.model_io import load_model, save_model

    model, partial_card = load_model(final_dir)
    grid = json.loads(Path(grid_file).read_text())
    summary = json.loads(Path(summary_file).read_text())
    cv = {name: {**{m: v["mean"] for m, v in metrics.items()},
                 **{f"{m}_sd": v["sd"] for m, v in metrics.items()},
                 **{f"{m}_ci95": v["ci95"] for m, v in metrics.items()}}
          for name, metrics in summary["models"].items()}
    cv.update(folds=summary["cv"]["folds"], repeats=summary["cv"]["repeats"], grouped_by="subject",
              permutation_p_value=(summary.get("permutation") or {}).get("p_value"))
    card = {
        "Name": "strokefc UL-FMA severity CNN",
        "Description": "3D CNN classifying severe (UL-FMA <= threshold) vs mild-to-moderate upper-limb "
                       "impairment from lesion-aligned ipsilesional-M1 dFC variability (SD) maps",
        "strokefc_version": __version__,
        "software": software_versions(),
        "input": {"grid": grid, "space": (shared_params or {}).get("Space"),
                  "align_lesion": settings["align_lesion"], "resolution_mm": settings["cnn_resolution"],
                  "map": "stat-dfcsd (subject-level dFC SD map)" if settings["samples"] == "maps"
                  else "stat-windows (window maps; subject prediction = mean over windows)",
                  "samples": settings["samples"],
                  "lesion_alignment": "right-lesion maps mirrored about world x = 0 (left = ipsilesional)"
                  if settings["align_lesion"] else "none",
                  "normalisation": "voxelwise z-score, mean/SD fit on the training samples "
                                   "(buffers in_mean/in_std of the weights)"},
        "label": {"column": settings["label_column"], "severe_threshold": settings["severe_threshold"],
                  "positive_class": "severe",
                  "definition": f"severe = {settings['label_column']} <= {settings['severe_threshold']:g}"},
        "dfc_parameters": shared_params or {},
        "training": {**partial_card.get("training", {}), "n_subjects": summary["n_subjects"],
                     "class_counts": summary["class_counts"]},
        "cross_validation": cv,
        "baseline": BASELINE_DESCRIPTION,
    }
    return str(save_model(model, card, model_dir))


def explain_model(data_file, model_dir, settings: dict, group_dir) -> tuple[str, str]:
    """Saliency of the exported (re-loaded) model, averaged over subjects, and the AAL region table."""
    import torch

    from workflows.explain import aal_atlas, atlas_on_grid, region_table, subject_saliency, write_region_table
    from workflows.model_io import load_model

    torch.set_num_threads(max(1, settings.get("nprocs", 1)))
    group_dir = Path(group_dir)
    model, card = load_model(model_dir)
    grid = card["input"]["grid"]
    data = np.load(data_file)
    if settings["samples"] == "windows":
        x, groups = data["x"], data["groups"]
        keep = np.concatenate([np.flatnonzero(groups == s)[:: max(1, settings.get("max_windows", MAX_WINDOWS)
                                                                     // SALIENCY_WINDOWS)]
                               for s in np.unique(groups)])
        x, groups = x[keep], groups[keep]
    else:
        x, groups = data["maps"], data["subjects"]
    subjects, sal = subject_saliency(model, x, groups)
    order = {s: i for i, s in enumerate(data["subjects"])}
    sides = np.array([data["sides"][order[s]] for s in subjects])
    y_subject = np.array([data["y_subject"][order[s]] for s in subjects])
    if not settings["align_lesion"]:  # bring right-lesion saliency to the left (grid symmetric in x)
        sal[sides == "R"] = sal[sides == "R"][:, ::-1]
    mean = sal.mean(0)
    out = _save_nifti(mean, grid, group_dir / "desc-saliency_map.nii.gz")
    for cls, name in ((1, "severe"), (0, "mild")):
        if (y_subject == cls).any():
            _save_nifti(sal[y_subject == cls].mean(0), grid, group_dir / f"desc-saliency{name}_map.nii.gz")
    atlas, names = aal_atlas()
    rows = region_table(mean, grid, atlas_on_grid(atlas, grid), names)
    table = write_region_table(rows, group_dir / "top_regions.tsv")
    return str(out), str(table)


# ------------------------------------------------------------------------------------------ workflow
def init_group_wf(*, config, subjects, shared_params: dict, name: str = "strokefc_group_wf"):
    """Build the group-level workflow.

    Workflow graph::

        prepare (align, grid, samples; cohort.tsv, class maps)
           -> cv_fold (MapNode: CNN + baseline on each subject-level fold; folds run in parallel)
           -> [permutation (MapNode, only with --n-permutations > 0)]
           -> summarise_cv (cv_predictions.tsv, training_curves.tsv, cv_summary.json)
        prepare -> train_final (all subjects) -> export (+ CV metrics in the card; output_dir/model/)
           -> explain (desc-saliency_map.nii.gz, top_regions.tsv)

    The folds are planned here, from the subjects' labels, so the split is fixed and visible before
    anything runs; every sample of a subject follows the subject.

    Parameters
    ----------
    config : bids_app.config.RunConfig
    subjects : list of bids_app.group_level.GroupSubject
    shared_params : dict
        Space and dFC/denoising parameters shared by every map (recorded in the model card).

    Outputs (``outputnode``): ``summary_file``, ``model_dir``, ``saliency_file``, ``regions_file``.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from workflows.interfaces import group as gi

    settings = settings_from_config(config)
    group_dir = str(Path(config.output_dir).absolute() / "group")
    model_dir = str(Path(config.output_dir).absolute() / "model")
    subject_dicts = [{"label": s.label, "map_file": str(Path(s.map_file).absolute()),
                      "windows_file": str(Path(s.windows_file).absolute()) if s.windows_file else "",
                      "lesion_side": s.lesion_side, "score": float(s.score)} for s in subjects]
    folds = plan_folds(subject_dicts, settings)
    nprocs = max(1, int(config.nprocs))

    wf = pe.Workflow(name=name)
    outputnode = pe.Node(niu.IdentityInterface(
        fields=["summary_file", "model_dir", "saliency_file", "regions_file"]), name="outputnode")
    prepare = pe.Node(gi.PrepareGroupInputs(subjects=subject_dicts, settings=settings, group_dir=group_dir),
                      name="prepare")
    cv_fold = pe.MapNode(gi.RunFold(settings=settings), iterfield=["fold"], name="cv_fold")
    cv_fold.inputs.fold = folds
    summarise = pe.Node(gi.SummariseCV(settings=settings, group_dir=group_dir), name="summarise_cv")
    train = pe.Node(gi.TrainFinal(settings=settings), name="train_final")
    export = pe.Node(gi.ExportModel(settings=settings, shared_params=dict(shared_params or {}),
                                    model_dir=model_dir), name="export")
    explain = pe.Node(gi.ExplainModel(settings=settings, group_dir=group_dir), name="explain", n_procs=nprocs)
    wf.connect([
        (prepare, cv_fold, [("data_file", "data_file")]),
        (prepare, summarise, [("data_file", "data_file")]),
        (cv_fold, summarise, [("out_file", "fold_files")]),
        (prepare, train, [("data_file", "data_file")]),
        (train, export, [("out_dir", "final_dir")]),
        (prepare, export, [("grid_file", "grid_file")]),
        (summarise, export, [("summary_file", "summary_file")]),
        (prepare, explain, [("data_file", "data_file")]),
        (export, explain, [("model_dir", "model_dir")]),
        (summarise, outputnode, [("summary_file", "summary_file")]),
        (export, outputnode, [("model_dir", "model_dir")]),
        (explain, outputnode, [("saliency_file", "saliency_file"), ("regions_file", "regions_file")]),
    ])
    if settings["n_permutations"] > 0:
        permutation = pe.MapNode(gi.RunPermutation(settings=settings), iterfield=["index"], name="permutation")
        permutation.inputs.index = list(range(settings["n_permutations"]))
        wf.connect([(prepare, permutation, [("data_file", "data_file")]),
                    (permutation, summarise, [("null_balanced_accuracy", "null")])])
    return wf


def read_tsv(path) -> list[dict]:
    """Rows of a TSV written by this module (for tests and reports)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))
