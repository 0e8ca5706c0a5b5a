"""The plugins of bids_app.console: the MultiProc scheduler's dependency matrix keeps its column sums
between changes, and a worker killed by the system fails its node instead of hanging the run; batch
plugins gather a MapNode's results in the driver."""

from pathlib import Path

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


def _double(x):
    return 2 * x


def _batch_run(tmp_path, plugin, monkeypatch):
    """A MapNode of three through ``plugin`` on a stand-in for the cluster: each job (the node the
    plugin wrote a batch script for) runs at once, in this process (tests/test_slurm.py submits to a
    real SLURM); returns the names of the jobs and the outputs."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    jobs = []

    def submit(self, scriptfile, node):
        assert Path(scriptfile).is_file()
        jobs.append(node.name)
        node.run()
        self._pending[len(jobs)] = node.output_dir()
        return len(jobs)

    monkeypatch.setattr(type(plugin), "_submit_batchtask", submit)
    monkeypatch.setattr(type(plugin), "_is_pending", lambda self, taskid: False)
    wf = pe.Workflow("batch", base_dir=str(tmp_path))
    wf.config["execution"]["poll_sleep_duration"] = 0.01  # the driver's wait between looks at the queue
    double = pe.MapNode(
        niu.Function(function=_double, input_names=["x"], output_names=["y"]), iterfield=["x"], name="double"
    )
    double.inputs.x = [1, 2, 3]
    wf.add_nodes([double])
    result = wf.run(plugin=plugin)
    (node,) = result.nodes()
    return jobs, node.result.outputs.y


def test_batch_plugins_gather_a_mapnode_in_the_driver(tmp_path, monkeypatch):
    """The subnodes are jobs; the parent that gathers them is not (Nipype's own plugin submits it too)."""
    from nipype.pipeline.plugins import SLURMPlugin

    from bids_app.console import GatherMapNodesInDriver, make_plugin

    plugin = make_plugin("SLURM", {"sbatch_args": "--mem=1G"})
    assert isinstance(plugin, SLURMPlugin)
    assert isinstance(plugin, GatherMapNodesInDriver)
    assert plugin._sbatch_args == "--mem=1G"
    jobs, outputs = _batch_run(tmp_path / "ours", plugin, monkeypatch)
    assert sorted(jobs) == ["_double0", "_double1", "_double2"]
    assert outputs == [2, 4, 6]
    jobs, outputs = _batch_run(tmp_path / "nipype", SLURMPlugin(plugin_args={}), monkeypatch)
    assert sorted(jobs) == ["_double0", "_double1", "_double2", "double"]
    assert outputs == [2, 4, 6]
    assert make_plugin("Linear", {}) == "Linear"


KILLED_WORKER = """
import sys

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_app.console import StrokefcMultiProcPlugin


def die(x):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def add_one(x):
    return x + 1


def node(function, name):
    return pe.Node(niu.Function(function=function, input_names=["x"], output_names=["y"]), name=name)


if __name__ == "__main__":
    wf = pe.Workflow("killed", base_dir=sys.argv[1])
    wf.config["execution"].update(
        {"poll_sleep_duration": 0.05, "crashdump_dir": sys.argv[1], "crashfile_format": "txt"}
    )
    dies, first, second = node(die, "dies"), node(add_one, "first"), node(add_one, "second")
    dies.inputs.x = first.inputs.x = 1
    wf.connect(first, "y", second, "x")
    wf.add_nodes([dies])
    try:
        wf.run(plugin=StrokefcMultiProcPlugin(plugin_args={"n_procs": 1}))
    except RuntimeError:
        print("the run raised")
"""


def test_a_killed_worker_fails_its_node_and_the_run_goes_on(tmp_path):
    """A worker killed by the system (SIGKILL: out of memory) breaks the whole process pool. Nipype then
    waited forever for its job; now that node fails with the reason, and the other nodes run in a new
    pool (one worker: the two branches run one after the other, in either order)."""
    import subprocess
    import sys

    script = tmp_path / "killed_worker.py"
    script.write_text(KILLED_WORKER)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the run raised" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert list((tmp_path / "killed" / "second").glob("result_*.pklz")), "the other branch did not run"
    (crash,) = tmp_path.glob("crash-*dies*.txt")
    assert "ended abruptly (BrokenProcessPool" in crash.read_text()
    assert "memory" in crash.read_text()
