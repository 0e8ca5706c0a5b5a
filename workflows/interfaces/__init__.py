"""Thin Nipype interfaces: each ``_run_interface`` calls one plain function and fills ``_results``."""
