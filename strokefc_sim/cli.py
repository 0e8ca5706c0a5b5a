"""``strokefc-simulate``: a synthetic stroke cohort as a raw BIDS dataset plus fMRIPrep derivatives.

One flag per :class:`~strokefc_sim.params.CohortParams` field (``n_volumes`` -> ``--n-volumes``), its
default, type and help read from the field, so that no default is written twice.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from strokefc_sim.params import CohortParams


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strokefc-simulate",
        description="A synthetic stroke cohort as a raw BIDS dataset plus fMRIPrep derivatives.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="where to write the raw BIDS dataset")
    for field in dataclasses.fields(CohortParams):
        meta = dict(field.metadata)
        names = [flag(field.name), *meta.pop("aliases", ())]
        if isinstance(field.default, bool):
            parser.add_argument(*names, dest=field.name, action="store_true", help=meta.pop("help"))
        else:
            parser.add_argument(
                *names, dest=field.name, type=type(field.default), default=field.default, **meta
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    from strokefc_sim.cohort import simulate_cohort

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_subjects < 1 or args.n_volumes < 20:
        parser.error("need at least 1 subject and 20 volumes")
    params = CohortParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CohortParams)})
    truth = simulate_cohort(args.out_dir, params)
    groups = [s["group"] for s in truth["subjects"].values()]
    print(
        f"Wrote {len(groups)} subjects ({groups.count('severe')} severe) to {args.out_dir}; "
        f"fMRIPrep derivatives in {args.out_dir / 'derivatives' / 'fmriprep'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
