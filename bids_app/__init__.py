"""strokefc: the BIDS-App shell (CLI, config, BIDS queries and outputs, reports)."""

__version__ = "0.1.0"
