"""Gather what a finished run wrote (sidecars, figures, predictions) and hand it to the report builders.

A report that fails is logged and skipped: it never turns a finished run into a failure.
"""

from __future__ import annotations

import fcntl
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from bids_app.config import RunConfig
from bids_app.outputs import atomic_write_text

LOGGER = logging.getLogger("strokefc.reports")
FIGURES = ("seed", "confounds", "carpet", "seedts", "maps")


def run_prefix(entities: dict) -> str:
    """``sub-01_ses-1_task-rest_run-1``: the leading entities every output of a run shares."""
    parts = [f"sub-{entities['subject']}"]
    for key, short in (("session", "ses"), ("task", "task"), ("acquisition", "acq"), ("run", "run")):
        if entities.get(key) is not None:
            parts.append(f"{short}-{entities[key]}")
    return "_".join(parts)


def subject_dir(config: RunConfig, subject: str) -> Path:
    return config.output_dir / f"sub-{subject}"


def _first(paths):
    paths = sorted(paths)
    return paths[0] if paths else None


def run_report_data(config: RunConfig, run) -> dict:
    """Figures, sidecar and warnings of one run, read back from the output dataset."""
    sub = run.entities["subject"]
    prefix = run_prefix(run.entities)
    ses = f"ses-{run.entities['session']}/" if run.entities.get("session") else ""
    func = subject_dir(config, sub) / ses / "func"
    sidecar = _first(func.glob(f"{prefix}_space-*seed-ipsiM1_stat-dfcsd_boldmap.json"))
    meta = json.loads(sidecar.read_text()) if sidecar else {}
    figs = {}
    for fig in FIGURES:
        path = _first((subject_dir(config, sub) / "figures").glob(f"{prefix}_desc-{fig}_bold.*"))
        if path is not None:
            figs[fig] = str(path)
    name = " ".join(p for p in prefix.split("_")[1:]) or prefix
    return {"name": name, "metadata": meta, "warnings": meta.get("Warnings", []), "figures": figs}


def subject_summary(config: RunConfig, plan, runs: list[dict]) -> dict:
    """Key facts and every processing parameter, for the report's summary table."""
    first = runs[0]["metadata"] if runs else {}
    kept = sum(r["metadata"].get("Denoising", {}).get("VolumesKept", 0) for r in runs)
    total = sum(r["metadata"].get("Denoising", {}).get("VolumesTotal", 0) for r in runs)
    return {
        "Subject": f"sub-{plan.label}",
        "Runs used": ", ".join(r["name"] for r in runs),
        "Repetition time (s)": plan.runs[0].tr,
        "Volumes kept / total": f"{kept} / {total}",
        "Lesion hemisphere": f"{plan.lesion_side} (from {plan.lesion_source})",
        "UL-FMA": "unknown" if plan.ul_fma is None else f"{plan.ul_fma:g} ("
        f"{'severe' if plan.ul_fma <= config.severe_threshold else 'mild-to-moderate'})",
        "Space": config.space,
        "Denoising": f"{config.denoise}; band-pass {config.high_pass}-{config.low_pass} Hz; "
                     f"smoothing {config.smoothing or 0} mm FWHM",
        "Seed": _seed_text(first.get("Seed", {})),
        "Windows": f"{config.window_length} ({first.get('WindowLength_vol', '?')} volumes), step "
                   f"{config.window_step}, {config.window_shape}; min coverage "
                   f"{config.min_window_coverage:g}",
        "Windows kept / dropped": ", ".join(
            f"{r['metadata'].get('WindowsKept', '?')} / {r['metadata'].get('WindowsDropped', '?')}"
            for r in runs),
    }


def _seed_text(seed: dict) -> str:
    if not seed:
        return "unknown"
    src = seed.get("source", "")
    what = {"atlas": f"{seed.get('atlas', '')} {', '.join(seed.get('labels', []))}",
            "mask": f"mask {seed.get('file', '')}",
            "sphere": f"sphere r={seed.get('radius_mm', '')} mm at {seed.get('coords_mm', '')}"}
    return f"{what.get(src, src)}; {seed.get('n_voxels', '?')} voxels; " \
           f"{100 * float(seed.get('fraction_lesioned', 0) or 0):.0f}% lesioned"


def find_prediction(config: RunConfig, subject: str) -> dict | None:
    path = _first(subject_dir(config, subject).glob("**/*_desc-ulfma_prediction.json"))
    return json.loads(path.read_text()) if path else None


def write_participant_reports(config: RunConfig, plans, failures: dict[str, str]) -> list[Path]:
    """One ``sub-<label>.html`` per finished subject, plus ``predictions.tsv`` when predicting."""
    from bids_app.reports.participant import build_participant_report

    methods = write_boilerplate(config)
    methods_md = methods.read_text() if methods else ""
    written = []
    for plan in plans:
        try:
            runs = [run_report_data(config, run) for run in plan.runs]
            prediction = find_prediction(config, plan.label)
            if prediction:
                fig = _first((subject_dir(config, plan.label) / "figures").glob("*desc-prediction*"))
                prediction = {**prediction, "figure": str(fig) if fig else None}
            out = build_participant_report(
                config.output_dir / f"sub-{plan.label}.html", subject=plan.label,
                summary=subject_summary(config, plan, runs), runs=runs, prediction=prediction,
                methods_md=methods_md, errors=[])
            written.append(Path(out))
        except Exception:  # a report must never fail the run
            LOGGER.exception("The report of sub-%s could not be written", plan.label)
    if config.model:
        update_predictions_table(config, [p.label for p in plans])
    return written


@contextmanager
def locked(path: Path):
    """An exclusive lock on ``path`` (a lock file), for read-modify-write of shared tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_predictions_table(config: RunConfig, subjects: list[str]) -> Path:
    """Merge these subjects' predictions into ``output_dir/predictions.tsv`` (locked, atomic)."""
    table = config.output_dir / "predictions.tsv"
    rows = [find_prediction(config, s) for s in subjects]
    rows = [r for r in rows if r]
    with locked(config.output_dir / ".predictions.lock"):
        old = pd.read_csv(table, sep="\t", dtype=str) if table.exists() else pd.DataFrame()
        new = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                            for r in rows])
        if not old.empty and "participant_id" in old and not new.empty:
            old = old[~old["participant_id"].isin(new["participant_id"])]
        merged = pd.concat([old, new.astype(str)], ignore_index=True) if not new.empty else old
        if "participant_id" in merged:
            first = [c for c in ("participant_id", "prob_severe", "predicted_class") if c in merged]
            merged = merged[first + [c for c in merged.columns if c not in first]]
            merged = merged.sort_values("participant_id")
        atomic_write_text(table, merged.to_csv(sep="\t", index=False))
    return table


def methods_parameters(config: RunConfig) -> dict:
    """The parameters the methods text describes (the run's configuration)."""
    return config.to_dict()


def write_boilerplate(config: RunConfig) -> Path | None:
    """``output_dir/logs/CITATION.md`` and ``.html`` from the run's parameters and versions."""
    from bids_app.reports.boilerplate import methods_text, write_citation
    from workflows.metadata import software_versions

    try:
        md = methods_text(methods_parameters(config), software_versions())
        md_path, _ = write_citation(config.output_dir / "logs", md)
        return Path(md_path)
    except Exception:
        LOGGER.exception("The methods boilerplate could not be written")
        return None


def write_group_report(config: RunConfig, subjects, excluded: dict[str, str]) -> Path | None:
    """``output_dir/group.html`` (see :mod:`bids_app.reports.group`); never fails the run."""
    from bids_app.reports.group import write_group_report as build

    try:
        return build(config, subjects, excluded)
    except Exception:
        LOGGER.exception("The group report could not be written")
        return None
