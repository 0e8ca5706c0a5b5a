"""`make demo`: generate a small cohort and run the whole app on it, then print where the reports are.

Steps: strokefc-simulate -> participant level (with the simulator's lesion masks) -> group level (CV +
final model) on 20 patients -> participant level with the trained model on the 4 patients held out of
training (2 severe, 2 mild-to-moderate), into a fresh output folder. The prediction step reuses the
first step's working directory, so the held-out patients' maps are not computed twice.
"""

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from bids_app.config import option_default
from bids_app.queries import read_table_text

BIN = Path(sys.executable).parent
#: Patients held out of training, per class: the model is applied to them at the end.
HELD_OUT_PER_CLASS = 2


def run(step, cmd):
    print(f"\n==> {step}\n    {' '.join(map(str, cmd))}", flush=True)
    t0 = time.time()
    code = subprocess.call([str(c) for c in cmd])
    print(f"    ({time.time() - t0:.0f} s, exit code {code})", flush=True)
    if code != 0:
        sys.exit(f"demo step failed: {step}")


def split_cohort(participants: Path) -> tuple[list[str], list[str]]:
    """Training and held-out labels: the last :data:`HELD_OUT_PER_CLASS` patients of each class
    (UL-FMA <= threshold is severe) are held out."""
    threshold = float(option_default("severe_threshold"))
    rows = list(csv.DictReader(read_table_text(participants).splitlines(), delimiter="\t"))
    labels = {"severe": [], "mild": []}
    for row in rows:
        cls = "severe" if float(row["ul_fma"]) <= threshold else "mild"
        labels[cls].append(row["participant_id"].removeprefix("sub-"))
    held = sorted(x for group in labels.values() for x in group[-HELD_OUT_PER_CLASS:])
    train = sorted(x for group in labels.values() for x in group if x not in held)
    return train, held


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description="simulate a cohort and run strokefc on it end to end")
    cli.add_argument("root", nargs="?", default="demo", help="folder of the demo (default: demo)")
    cli.add_argument("--subjects", type=int, default=24, help="patients simulated (default 24)")
    cli.add_argument("--volumes", type=int, default=240, help="volumes per run, TR 2 s (default 240)")
    args = cli.parse_args(argv)
    root = Path(args.root).resolve()
    # 20 surrogates (default 50) keep the demo within its budget on 2 cores
    NULL = ["--null-surrogates", 20]
    bids, out, work = root / "bids", root / "derivatives" / "strokefc", root / "work"
    pred_out = root / "derivatives" / "strokefc-predict"
    t0 = time.time()
    if not (bids / "dataset_description.json").exists():
        run(
            f"simulate a {args.subjects}-patient cohort (4 mm grid, {args.volumes} volumes = "
            f"{args.volumes * 2 / 60:g} min at TR 2 s; coupling states of 40-80 s)",
            [
                BIN / "strokefc-simulate",
                bids,
                "--n-subjects",
                args.subjects,
                "--resolution",
                4,
                "--n-volumes",
                args.volumes,
                "--dynamics",
                "states",
                "--seed",
                1,
            ],
        )
    lesions = ["--lesion-dir", bids / "derivatives" / "lesions"]  # the simulator's template-space masks
    train, held_out = split_cohort(bids / "participants.tsv")
    run(
        "participant level (dFC maps, lesion masks)",
        [BIN / "strokefc", bids, out, "participant", "--work-dir", work, "--nprocs", 2, *lesions, *NULL],
    )
    run(
        f"group level on {len(train)} patients (primary parcel model, CNN, baseline and controls on the "
        "same folds; final model)",
        [
            BIN / "strokefc",
            bids,
            out,
            "group",
            "--participant-label",
            *train,
            "--work-dir",
            work,
            "--cv-folds",
            4,
            "--cv-repeats",
            1,
            "--epochs",
            25,
            "--cnn-resolution",
            4,
        ],
    )
    run(
        f"participant level with the trained model on the {len(held_out)} held-out patients "
        f"({', '.join(held_out)}; fresh output folder)",
        [
            BIN / "strokefc",
            bids,
            pred_out,
            "participant",
            "--participant-label",
            *held_out,
            "--model",
            out / "model",
            "--work-dir",
            work,  # the same working directory: their dFC maps are reused, only the prediction runs
            "--nprocs",
            2,
            *lesions,
            *NULL,
        ],
    )
    print(f"\nDemo finished in {time.time() - t0:.0f} s. Reports:")
    subjects = sorted(out.glob("sub-*.html"))
    print(f"  group (cross-validation, model, group maps): {out / 'group.html'}")
    print(f"  participants ({len(subjects)}): {subjects[0]} ... {subjects[-1].name}")
    for path in sorted(pred_out.glob("sub-*.html")):
        print(f"  held out of training, with the model's prediction: {path}")
    print(f"  predictions of the held-out patients: {pred_out / 'predictions.html'}")
    print(f"Predictions table: {pred_out / 'predictions.tsv'}")
    print(f"Methods text: {out / 'logs' / 'CITATION.md'}")


if __name__ == "__main__":
    main()
