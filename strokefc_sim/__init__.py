"""strokefc_sim: synthetic stroke cohorts (raw BIDS + fMRIPrep derivatives) with a known planted effect.

Test and benchmark tooling, kept apart from the app: neither ``bids_app`` nor ``workflows`` imports it
(an import contract in pyproject.toml). ``strokefc-simulate`` is its command line (:mod:`.cli`).
"""

from strokefc_sim.cohort import simulate_cohort
from strokefc_sim.params import CohortParams

__all__ = ["CohortParams", "simulate_cohort"]
