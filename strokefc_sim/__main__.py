"""``python -m strokefc_sim``: the same as ``strokefc-simulate``."""

from strokefc_sim.cli import main

raise SystemExit(main())
