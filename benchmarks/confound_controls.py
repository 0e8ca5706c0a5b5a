"""Negative controls: a confound tracks impairment, dFC does not. Are the map models at chance?

``--confound lesion`` (default): severe patients have larger lesions (radius 11-14 mm vs 5-8 mm), the
lesion holds a cavity artefact whose amplitude scales with its size, and there is no dFC effect at all
(``--effect 0``). The participant level runs twice: with the lesion masks (the dilated lesion leaves
every map; the group level also takes the lesion and its mirror out of every model input) and without
them (the lesion stays in the maps). A model above chance *with* the masks would be learning lesion
topography or size from what is left; the confound-only model (quality measures and lesion volume) is
expected above chance, since lesion volume does track the class here: that is the point of having it.

``--confound motion``: severe patients move ``--motion-by-class`` times more (the simulator's head
motion, with its spin-history and FD-linked signal changes) and there is no dFC effect. The motion/QC
control should win; a map model that beats it learns motion.

The group level cross-validates every model on the same subject-level folds. Usage:
``python benchmarks/confound_controls.py [--confound lesion|motion] [--n-subjects 32] [--cache DIR]``;
writes ``benchmarks/results/<date>-<confound>-confound.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from planted_cohort import (
    ba_cell,
    run,
    write_result,
)  # the sibling script (benchmarks/ is on sys.path when run)

BIN = Path(sys.executable).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--confound", choices=["lesion", "motion"], default="lesion")
    parser.add_argument("--motion-by-class", type=float, default=2.5)
    parser.add_argument("--n-subjects", type=int, default=32)
    parser.add_argument("--n-volumes", type=int, default=200)
    parser.add_argument("--cv-repeats", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="default /tmp/strokefc-<confound>-confound")
    args = parser.parse_args(argv)
    cache = args.cache or Path(f"/tmp/strokefc-{args.confound}-confound")
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    bids = cache / "bids"
    subprocess.run(
        [
            str(BIN / "strokefc-simulate"),
            str(bids),
            "--n-subjects",
            str(args.n_subjects),
            "--n-volumes",
            str(args.n_volumes),
            "--effect",
            "0",
            *(
                ["--lesion-size-by-class", "--lesion-noise", "2"]
                if args.confound == "lesion"
                else ["--motion-by-class", str(args.motion_by_class)]
            ),
            "--seed",
            "5",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results = {}
    variants = (
        (
            ("lesions excluded", "excluded", ["--lesion-dir", bids / "derivatives" / "lesions"]),
            ("lesions kept", "kept", []),
        )
        if args.confound == "lesion"
        else ((f"severe move {args.motion_by_class:g}x more", "motion", []),)
    )
    for name, tag, extra in variants:
        out, work = cache / f"out_{tag}", cache / f"work_{tag}"
        common = ["--work-dir", work, "--nprocs", 2, "--skip-bids-validation"]
        t_part = run(
            [BIN / "strokefc", bids, out, "participant", *common, *extra, "--null-surrogates", 0],
            cache / f"{tag}_participant.log",
        )
        t_group = run(
            [BIN / "strokefc", bids, out, "group", *common, "--cv-repeats", args.cv_repeats],
            cache / f"{tag}_group.log",
        )
        results[name] = {
            "summary": json.loads((out / "group" / "cv_summary.json").read_text()),
            "participant_s": round(t_part, 1),
            "group_s": round(t_group, 1),
        }
    models = list(next(iter(results.values()))["summary"]["models"])
    lines = [
        f"# {args.confound.capitalize()} negative control ({dt.date.today().isoformat()})",
        "",
        f"{args.n_subjects} generated patients (4 mm, {args.n_volumes} volumes, seed 5), no dFC effect, "
        + (
            "severe patients with larger lesions holding a size-scaled cavity artefact; "
            if args.confound == "lesion"
            else f"severe patients moving {args.motion_by_class:g}x more; "
        )
        + f"subject-level {5}-fold CV x {args.cv_repeats} repeats, the same folds for every model. "
        "Balanced accuracy: mean ± SD over folds, and the pooled out-of-fold value with its 95% "
        "subject-bootstrap interval (chance 0.5).",
        "",
        "| model | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(ba_cell(r["summary"], m) for r in results.values()) + " |")
    lines += [
        "",
        "Run times: "
        + "; ".join(
            f"{k}: participant {v['participant_s']} s, group {v['group_s']} s" for k, v in results.items()
        ),
        "",
        f"Command: `python benchmarks/confound_controls.py --confound {args.confound} "
        f"--n-subjects {args.n_subjects} --cv-repeats {args.cv_repeats}`",
    ]
    write_result(f"{args.confound}-confound", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
