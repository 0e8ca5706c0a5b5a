"""Leaf helpers of the science layer: errors, atomic file writes and BIDS naming (no project imports)."""
