"""What the console shows: strokefc's messages and progress; Nipype only with ``-v``, workers included.

Nipype's ``MultiProc`` runs nodes in worker processes that import Nipype afresh, with its default INFO
level: a participant run printed every ``[Node] Setting-up/Executing/Finished`` record, and the
science layer's progress lines (``strokefc.*`` loggers: folds, permutations) were lost in the workers.
:class:`StrokefcMultiProcPlugin` starts its workers with the parent's logging (:func:`setup_logging`),
and runs ready jobs subject by subject so that subjects finish one after another.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import ModuleType
from typing import Any

import scipy.sparse as ssp
from nipype import config as nipype_config
from nipype import logging as nipype_logging
from nipype.pipeline.plugins.multiproc import MultiProcPlugin, process_initializer

#: Nipype's loggers, as named in its config's ``logging`` section.
NIPYPE_LOGGERS = ("workflow_level", "interface_level", "utils_level")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
#: Where the interfaces that workers run live (:func:`interface_modules`).
INTERFACE_PACKAGES = ("nipype.interfaces", "niworkflows.interfaces", "workflows.interfaces")


def setup_logging(verbose: int) -> None:
    """strokefc's messages at INFO (DEBUG with -v); Nipype's quiet by default, INFO with -v, DEBUG
    with -vv.

    Without ``-v`` Nipype stays silent: its node records are noise to a user, and its failure records
    carry tracebacks; strokefc's own summary names each failure and its crash file.
    """
    # other libraries (pybids' schema, matplotlib) only warn unless -v
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT, datefmt="%H:%M:%S"
    )
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("strokefc").setLevel(logging.DEBUG if verbose else logging.INFO)
    # nipype re-applies its own levels when a workflow runs: set them through its config, and keep its
    # records off the root handler (nipype has its own)
    nipype_level = {0: "CRITICAL", 1: "INFO"}.get(verbose, "DEBUG")
    for key in NIPYPE_LOGGERS:
        nipype_config.set("logging", key, nipype_level)
    nipype_logging.update_logging(nipype_config)
    logging.getLogger("nipype").propagate = False


def current_verbosity() -> int:
    """The ``-v`` count that :func:`setup_logging` was given, read back from Nipype's config."""
    level = nipype_config.get("logging", "workflow_level")
    return {"CRITICAL": 0, "INFO": 1}.get(str(level).upper(), 2)


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process, from Linux's ``/proc/<pid>/stat``; ``None`` elsewhere or
    when it has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_init(cwd: str, verbose: int) -> None:
    """Initializer of a MultiProc worker: Nipype's own, then the parent's logging."""
    process_initializer(cwd)
    setup_logging(verbose)


def preload_modules(graph: Any) -> list[str]:
    """The modules a worker needs for ``graph``: each node's interface module and the modules that
    module lists in ``WORKER_IMPORTS`` (what its interfaces import only when they run), sorted."""
    modules = set()
    for node in graph.nodes():
        name = type(node.interface).__module__
        modules.add(name)
        modules.update(getattr(sys.modules.get(name), "WORKER_IMPORTS", ()))
    return sorted(modules)


def interface_modules(*factories: ModuleType, without: Sequence[type] = ()) -> list[str]:
    """The modules a worker needs for the workflows that the modules ``factories`` build, known before
    any workflow is: the modules of the Nipype interfaces (classes) and interface packages (``niu``)
    they import, except the interfaces ``without`` (not in this run's graphs), and the
    ``WORKER_IMPORTS`` of those, sorted. It covers :func:`preload_modules` of their graphs (tested)."""
    from nipype.interfaces.base import BaseInterface

    names = set()
    for factory in factories:
        for value in vars(factory).values():
            if isinstance(value, type) and issubclass(value, BaseInterface) and value not in without:
                names.add(value.__module__)
            elif isinstance(value, ModuleType) and value.__name__.startswith(INTERFACE_PACKAGES):
                names.add(value.__name__)
    modules = set(names)
    for name in names:
        modules.update(getattr(sys.modules.get(name), "WORKER_IMPORTS", ()))
    return sorted(modules)


def start_forkserver(modules: Sequence[str]) -> None:
    """Start the forkserver of the MultiProc workers now, importing ``modules`` in it (in the
    background) while this process still plans the run.

    Started at the first submission instead, its imports (about 2.5 s) held up the first jobs after
    planning, on an otherwise idle machine. The server keeps this process's environment: set what
    the workers must inherit (``OMP_NUM_THREADS``) before. :meth:`StrokefcMultiProcPlugin.run` then
    finds it running (its own preload list applies only to a server it starts).
    """
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(list(modules))
    forkserver.ensure_running()


class DependencyMatrix(ssp.lil_matrix):
    """Nipype's job dependency matrix (``depidx``) whose column sums are kept until it changes.

    Nipype's scheduler asks for the column sums (how many unfinished jobs each job waits on) twice per
    pass, 20 passes a second (:data:`bids_app.execution.LOCAL_POLL_S`), and scipy converts the whole
    LIL matrix to CSR for each sum: on a 24-subject participant graph (about 1,000 nodes) that was a few
    ms a pass, about 20 s of the scheduler's CPU in a three-minute run, growing with the square of the
    subjects. The matrix changes only when a job ends (Nipype clears its row through ``getrowview``) or
    a MapNode is expanded (a new matrix); both drop the kept sums.
    """

    _column_sums: Any = None

    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        if axis != 0 or dtype is not None or out is not None:
            return super().sum(axis=axis, dtype=dtype, out=out)
        if self._column_sums is None:
            self._column_sums = super().sum(axis=0)
        return self._column_sums.copy()

    def getrowview(self, i: int) -> Any:
        self._column_sums = None  # the caller writes through the view
        return super().getrowview(i)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._column_sums = None
        super().__setitem__(key, value)


class StrokefcMultiProcPlugin(MultiProcPlugin):
    """MultiProc whose workers log as the parent does, and which runs the jobs that are ready at once in
    ``priority`` order (subject by subject at the participant level: MultiProc's own breadth-first
    order finished every subject together at the end of the run).
    """

    def __init__(
        self, plugin_args: dict[str, Any] | None = None, priority: Callable[[Any], Any] | None = None
    ) -> None:
        super().__init__(plugin_args=plugin_args)
        self.priority = priority
        # the pool starts no worker before its first job: replace it by one whose workers get the
        # parent's logging
        self.pool.shutdown(wait=False)
        self.pool: ProcessPoolExecutor = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=_worker_init,
            initargs=(self._cwd, current_verbosity()),
            mp_context=mp.get_context(self.plugin_args.get("mp_context")),
        )

    def _async_callback(self, future: Any) -> None:
        """Nipype's callback, for the jobs that returned (the others: :meth:`_get_result`)."""
        if future.exception() is None:
            super()._async_callback(future)

    def _get_result(self, taskid: int) -> Any:
        """Nipype's result of a job, or a failure when its worker died (killed, out of memory).

        A worker that dies breaks the whole pool: every job in it ends with ``BrokenProcessPool`` and
        none returns a result, so Nipype waited for them forever (the run hung). Each such job is now a
        failed node with that reason; :meth:`_submit_job` sends the next jobs to a new pool.
        """
        result = super()._get_result(taskid)
        future = self._task_obj.get(taskid)
        if result is None and future is not None and future.done() and future.exception() is not None:
            exc = future.exception()
            reason = (
                f"the worker process running this node ended abruptly ({type(exc).__name__}: {exc}); "
                "it was killed, for example by the system when memory ran out. Give the run more memory "
                "or fewer processes (--nprocs, --mem-gb), then run again: finished nodes are reused.\n"
            )
            return {"taskid": taskid, "result": None, "traceback": [reason]}
        return result

    def _submit_job(self, node: Any, updatehash: bool = False) -> int:
        """Nipype's submission, to a new pool when a dead worker broke the last one."""
        try:
            return super()._submit_job(node, updatehash=updatehash)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False)
            self.pool = self._new_pool()
            return super()._submit_job(node, updatehash=updatehash)

    def run(self, graph: Any, config: Any, updatehash: bool = False) -> Any:
        """Nipype's run with the heap built before it (pybids and TemplateFlow layouts, imports) frozen.

        MultiProc calls ``gc.collect()`` before each submission; over the hundreds of thousands of
        objects of the layouts each call took about 0.3 s, 15 of the 35 s of a two-subject run.
        :func:`gc.freeze` moves them out of the collector's sight (objects made during the run are
        still collected) and keeps the forked workers' copies of them shared.
        """
        self._preload_interfaces(graph)
        gc.collect()
        gc.freeze()
        try:
            return super().run(graph, config, updatehash=updatehash)
        finally:
            gc.unfreeze()

    def _generate_dependency_list(self, graph: Any) -> None:
        super()._generate_dependency_list(graph)
        self.depidx = DependencyMatrix(self.depidx)

    def _submit_mapnode(self, jobid: int) -> bool:
        submit = super()._submit_mapnode(jobid)
        if not isinstance(self.depidx, DependencyMatrix):  # expanding a MapNode stacks a new matrix
            self.depidx = DependencyMatrix(self.depidx)
        return submit

    def _preload_interfaces(self, graph: Any) -> None:
        """Import the graph's interface modules once in the forkserver, before its first worker.

        A forkserver worker starts from a fresh interpreter and imported Nipype, nilearn and
        niworkflows' sink (whose import indexes TemplateFlow: about 7 s) before its first node, each
        worker again. Preloaded, the server imports them once while the parent is still scheduling and
        every worker is forked with them. Only imports: no thread pool runs in the server, which is
        why strokefc uses a forkserver and not fork. Modules that an interface imports only when it runs
        (its ``WORKER_IMPORTS``) are preloaded too, so that the parent never imports them.
        """
        if self.plugin_args.get("mp_context") != "forkserver":
            return
        mp.get_context("forkserver").set_forkserver_preload(preload_modules(graph))

    def worker_cpu_seconds(self) -> float | None:
        """The CPU time the pool's workers have used so far (``None`` where ``/proc`` cannot say)."""
        times = [process_cpu_seconds(pid) for pid in list(getattr(self.pool, "_processes", None) or {})]
        return None if not times or None in times else sum(t for t in times if t is not None)

    def _sort_jobs(self, jobids: Any, scheduler: str = "tsort") -> Any:
        jobids = super()._sort_jobs(jobids, scheduler=scheduler)
        if self.priority is None:
            return jobids
        priority = self.priority
        return sorted(jobids, key=lambda jobid: priority(self.procs[jobid]))  # stable: ties keep order


class GatherMapNodesInDriver:
    """For a batch plugin (SLURM, SGE, PBS...): the parent of an expanded MapNode runs in the driver.

    Its subnodes (the folds, the permutation draws) are jobs of their own; the parent then only gathers
    their result files. As a job it waited in the queue and started Python and the workflow's imports
    (2-4 s on an idle one-node cluster, queue time on a busy one), once per MapNode, on the chain
    between the last draw and the summary. Marked after the expansion, so the subnodes it made are
    still submitted (a MapNode of one subnode is still one job that runs it).
    """

    procs: list[Any]

    def _submit_mapnode(self, jobid: int) -> bool:
        submit = super()._submit_mapnode(jobid)  # type: ignore[misc]
        self.procs[jobid].run_without_submitting = True
        return submit


def _batch_plugin(name: str) -> type | None:
    """Nipype's plugin class ``<name>Plugin`` with :class:`GatherMapNodesInDriver`, when it submits
    each node as a batch job; ``None`` for any other plugin."""
    from nipype.pipeline import plugins
    from nipype.pipeline.plugins.base import SGELikeBatchManagerBase

    base = getattr(plugins, f"{name}Plugin", None)
    if not (isinstance(base, type) and issubclass(base, SGELikeBatchManagerBase)):
        return None
    return type(f"Strokefc{base.__name__}", (GatherMapNodesInDriver, base), {})


def make_plugin(
    plugin: str, plugin_args: dict[str, Any], priority: Callable[[Any], Any] | None = None
) -> Any:
    """What ``wf.run(plugin=...)`` gets: a :class:`StrokefcMultiProcPlugin` for MultiProc, a batch
    plugin (SLURM...) that gathers MapNodes in the driver (:class:`GatherMapNodesInDriver`), else the
    name (Linear runs in this process).

    ``priority(node)`` orders the jobs that are ready at once (lowest first).
    """
    if plugin == "MultiProc":
        return StrokefcMultiProcPlugin(plugin_args=plugin_args, priority=priority)
    batch = _batch_plugin(plugin)
    return plugin if batch is None else batch(plugin_args=plugin_args)
