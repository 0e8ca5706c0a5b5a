"""fMRIPrep and xcp_d options that strokefc accepts so that their users' habits and wrapper scripts work.

``--fs-license-file`` and ``--notrack`` are accepted and do nothing (strokefc runs no FreeSurfer and
sends nothing anywhere); ``--output-spaces`` and ``--derivatives`` map onto strokefc's own options
(``--space``/``--res``; ``--fmriprep-dir``, ``--lesion-dir``, ``--datasets fmristroke=DIR``), and
anything strokefc cannot honour is refused with a message naming the option that does the job.
Kept light (standard library only at import) so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

#: ``--derivatives NAME=DIR`` names and the strokefc option each one maps onto.
DERIVATIVE_NAMES = {
    "fmriprep": "--fmriprep-dir",
    "lesions": "--lesion-dir",
    "fmristroke": "--datasets fmristroke=DIR",
}


def add_fmriprep_options(parser: argparse.ArgumentParser) -> None:
    """The option group of fMRIPrep/xcp_d spellings that have no strokefc option of the same name."""
    g = parser.add_argument_group("fMRIPrep and xcp_d options (accepted so that their commands work)")
    g.add_argument(
        "--fs-license-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="accepted and ignored: strokefc runs no FreeSurfer",
    )
    g.add_argument(
        "--notrack",
        action="store_true",
        help="accepted and ignored: strokefc sends no usage data anywhere",
    )
    g.add_argument(
        "--output-spaces",
        nargs="+",
        default=None,
        metavar="SPACE[:res-N]",
        help="the fMRIPrep output space to read, as fMRIPrep spells it (MNI152NLin2009cAsym:res-2 = "
        "--space MNI152NLin2009cAsym --res 2); strokefc analyses one space, the one its seed and "
        "parcel atlases are defined in",
    )
    g.add_argument(
        "--derivatives",
        nargs="+",
        default=None,
        metavar="[NAME=]DIR",
        help="derivative folders, as fMRIPrep and xcp_d take them: fMRIPrep's output (= --fmriprep-dir) "
        "and optionally lesion masks (= --lesion-dir) or fMRIStroke's output (= --datasets "
        "fmristroke=DIR); each folder is recognised from its dataset_description.json or its "
        "lesion masks, or named fmriprep=DIR, lesions=DIR, fmristroke=DIR",
    )


@dataclass
class Translated:
    """What the fMRIPrep-style options mean in strokefc's terms, problems and notes for the user."""

    space: str | None = None
    res: str | None = None
    fmriprep_dir: Path | None = None
    lesion_dir: Path | None = None
    fmristroke_dir: Path | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_output_spaces(values: list[str], supported: str, out: Translated) -> None:
    """``--output-spaces``: one value, ``<supported>`` with an optional ``res-N`` (fMRIPrep's syntax)."""
    how = f"give --output-spaces {supported} (or {supported}:res-N), or --space/--res"
    if len(values) != 1:
        out.problems.append(
            f"--output-spaces {' '.join(values)}: strokefc analyses one space at a time; {how}"
        )
        return
    name, *modifiers = values[0].split(":")
    if name != supported:
        out.problems.append(
            f"--output-spaces {values[0]}: strokefc's seed and parcel atlases are defined in {supported} "
            f"only, so it reads fMRIPrep's {supported} outputs; run fMRIPrep with --output-spaces "
            f"{supported} (any res) and give --output-spaces {supported}[:res-N] here"
        )
        return
    out.space = name
    for modifier in modifiers:
        key, _, value = modifier.partition("-")
        if key == "res" and value.isalnum():
            out.res = None if value == "native" else value
        else:
            out.problems.append(f"--output-spaces {values[0]}: only a res-N modifier is understood; {how}")


def _generated_by(folder: Path) -> str:
    """The pipeline names in a folder's ``dataset_description.json``, lower case ('' if none)."""
    try:
        data = json.loads((folder / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    names = [str(g.get("Name", "")) for g in data.get("GeneratedBy", []) if isinstance(g, dict)]
    pipeline = data.get("PipelineDescription")
    if isinstance(pipeline, dict):
        names.append(str(pipeline.get("Name", "")))
    return " ".join(names).lower()


def _has_lesion_masks(folder: Path) -> bool:
    from bids_app.lesions import is_lesion_name  # nibabel: only when --derivatives is used

    return any(is_lesion_name(p.name) for p in folder.rglob("*_*") if p.is_file())


def _kind(folder: Path) -> str | None:
    """``fmriprep``, ``fmristroke`` or ``lesions`` for a derivatives folder, from its description or
    content (fMRIStroke before fMRIPrep: its descriptions may name fMRIPrep as a source)."""
    generated = _generated_by(folder)
    if "fmristroke" in generated:
        return "fmristroke"
    if "fmriprep" in generated:
        return "fmriprep"
    if _has_lesion_masks(folder):
        return "lesions"
    return None


def parse_derivatives(items: list[str], out: Translated) -> None:
    """``--derivatives``: each ``DIR`` or ``NAME=DIR`` onto the strokefc option that reads it."""
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            name, text = "", item
        folder = Path(text).expanduser()
        if not folder.is_dir():
            out.problems.append(f"--derivatives {item}: {folder} is not a folder")
            continue
        folder = folder.resolve()
        kind = name.lower() or _kind(folder)
        if kind == "lesion":
            kind = "lesions"
        if kind not in DERIVATIVE_NAMES:
            out.problems.append(
                f"--derivatives {item}: "
                + (
                    f"unknown name {name!r}"
                    if name
                    else "neither fMRIPrep's nor fMRIStroke's output "
                    "(dataset_description.json GeneratedBy) nor a folder of lesion masks"
                )
                + "; give fmriprep=DIR, lesions=DIR or fmristroke=DIR ("
                + ", ".join(f"{k} = {v}" for k, v in DERIVATIVE_NAMES.items())
                + ")"
            )
            continue
        attr = f"{kind}_dir" if kind != "lesions" else "lesion_dir"
        if getattr(out, attr) is not None:
            out.problems.append(
                f"--derivatives: two {kind} folders ({getattr(out, attr)} and {folder}); give one"
            )
            continue
        setattr(out, attr, folder)


def translate(opts: argparse.Namespace, supported_space: str, default_space: str) -> Translated:
    """The fMRIPrep-style options of parsed ``opts`` in strokefc's terms; conflicts are problems."""
    out = Translated()
    if opts.fs_license_file is not None:
        out.notes.append("--fs-license-file is ignored: strokefc runs no FreeSurfer")
    if opts.output_spaces:
        parse_output_spaces(opts.output_spaces, supported_space, out)
        if out.space and opts.space not in (default_space, out.space):
            out.problems.append(f"--output-spaces {out.space} and --space {opts.space} disagree; give one")
        if out.space and out.res and opts.res not in (None, out.res):
            out.problems.append(f"--output-spaces res-{out.res} and --res {opts.res} disagree; give one")
    if opts.derivatives:
        parse_derivatives(opts.derivatives, out)
        for attr, flag in (("fmriprep_dir", "--fmriprep-dir"), ("lesion_dir", "--lesion-dir")):
            given = getattr(opts, attr)
            found = getattr(out, attr)
            if found and given and Path(given).resolve() != found:
                out.problems.append(f"--derivatives names {found} and {flag} {given}; give one")
    return out
