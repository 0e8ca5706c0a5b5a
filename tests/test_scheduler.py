"""The MultiProc scheduler's dependency matrix keeps its column sums between changes (bids_app.console)."""

import networkx as nx
import numpy as np
import scipy.sparse as ssp
from nipype.pipeline.plugins.base import _graph_to_lil_matrix  # Nipype's own builder of the matrix

from bids_app.console import DependencyMatrix


def _matrices(rng):
    graph = nx.gnp_random_graph(60, 0.08, seed=int(rng.integers(1 << 30)), directed=True)
    dag = nx.DiGraph([(u, v) for u, v in graph.edges() if u < v])  # edges forward only: acyclic
    dag.add_nodes_from(graph.nodes())
    plain = _graph_to_lil_matrix(dag, nodelist=list(range(60)))
    return plain, DependencyMatrix(plain.copy())


def test_column_sums_follow_every_change_as_nipype_makes_them(rng):
    plain, kept = _matrices(rng)
    np.testing.assert_array_equal(kept.sum(axis=0), plain.sum(axis=0))
    for jobid in rng.permutation(60)[:40]:
        before = kept.sum(0)
        for matrix in (plain, kept):  # a job ends: Nipype clears its row through a row view
            rowview = matrix.getrowview(jobid)
            rowview[rowview.nonzero()] = 0
        after = kept.sum(0)
        np.testing.assert_array_equal(after, plain.sum(axis=0))
        if plain.getrow(jobid).nnz == 0 and before.sum() > after.sum():
            assert not np.array_equal(before, after)  # the sums did change: not a stale copy
    plain[3, 7] = kept[3, 7] = 1  # a direct write
    np.testing.assert_array_equal(kept.sum(0), plain.sum(axis=0))
    assert kept.sum() == plain.sum()
    assert np.array_equal(kept.sum(axis=1), plain.sum(axis=1))


def test_the_kept_sums_cannot_be_changed_by_a_caller(rng):
    plain, kept = _matrices(rng)
    sums = kept.sum(axis=0)
    sums[:] = 99
    np.testing.assert_array_equal(kept.sum(axis=0), plain.sum(axis=0))


def test_expanding_a_mapnode_keeps_the_matrix_kind():
    """Nipype's _submit_mapnode stacks a new matrix; the plugin wraps it again (its sums then follow)."""
    from bids_app.console import StrokefcMultiProcPlugin

    plugin = StrokefcMultiProcPlugin.__new__(StrokefcMultiProcPlugin)  # no pool: only the matrix is used
    plugin.depidx = DependencyMatrix(ssp.lil_matrix(np.array([[0, 1], [0, 0]])))
    plugin.proc_done, plugin.proc_pending = np.zeros(2, bool), np.zeros(2, bool)
    plugin.mapnodes, plugin.mapnodesubids = [], {}

    class _MapNode:
        def get_subnodes(self):
            return ["a", "b", "c"]

    plugin.procs = [_MapNode(), object()]
    assert plugin._submit_mapnode(0) is False
    assert isinstance(plugin.depidx, DependencyMatrix)
    assert plugin.depidx.shape == (5, 5)
    np.testing.assert_array_equal(np.asarray(plugin.depidx.sum(0)).ravel(), [3, 1, 0, 0, 0])
