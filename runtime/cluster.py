"""Cluster jobs: one command's work split into shares, run as one submitit array job.

Every command that processes many independent items (``slicer export``: cases,
``unext-long predict`` / ``yolo-long predict``: slices, ``reassemble``: cases,
``mslong segment --list``: pairs) takes the same flags (:func:`add_cluster_arguments`):

* ``--shard I/N`` does the I-th of N shares here, in this process (a scheduler of your own);
* ``--executor local|slurm`` submits one array job of ``--shards N`` tasks through submitit's
  ``AutoExecutor`` (``local``: subprocesses of this machine, what the tests use), waits, and
  hands the tasks' results back in share order, for the command to merge into exactly what
  one process would have written. Task ``I`` does exactly what ``--shard I/N`` does.

Shares are contiguous runs of the items in the order one process takes them (:func:`shard_of`),
so concatenating the tasks' results in share order gives the one-process order. Each task caps its threads
(:func:`cap_threads`) to its CPUs, so that N tasks on one node do not oversubscribe it.

>>> shard_of(["a", "b", "c", "d", "e"], (2, 2))
['c', 'd', 'e']
>>> parse_shard("1/4")
(1, 4)
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from runtime.errors import InputError

__all__ = [
    "EXECUTORS",
    "CLUSTER_DESTS",
    "Shard",
    "ClusterOptions",
    "add_cluster_arguments",
    "cluster_options",
    "parse_shard",
    "shard_of",
    "select_items",
    "run_array",
    "make_executor",
    "executor_parameters",
    "cap_threads",
]

EXECUTORS = ("local", "slurm")
DEFAULT_SHARDS = 2
DEFAULT_MINUTES = 240
DEFAULT_SLURM_CPUS = 4
# Read by OpenMP, BLAS and ITK when they start their thread pools; set before the task's
# Python starts (the executor's setup lines), since unpickling the task already imports numpy.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    # numexpr refuses (and prints so) more threads than a maximum an ultralytics parent may have set.
    "NUMEXPR_MAX_THREADS",
    "NUMEXPR_NUM_THREADS",
)
POLL_SECONDS = {"local": 1.0, "slurm": 15.0}  # how often the submitter looks at its tasks
# The argparse destination of each add_cluster_arguments flag -> its ClusterOptions field.
CLUSTER_FIELDS = {
    "executor": "executor",
    "shards": "shards",
    "shard": "shard",
    "slurm_partition": "partition",
    "slurm_time": "minutes",
    "slurm_gpus": "gpus",
    "slurm_cpus": "cpus",
    "slurm_mem": "mem_gb",
    "cluster_logs": "logs",
}
CLUSTER_DESTS = tuple(CLUSTER_FIELDS)

Shard = tuple[int, int]  # (I, N): the I-th of N shares, 1 <= I <= N
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ClusterOptions:
    """Where a command's work runs; see ``--help`` of any command that takes ``--executor``."""

    executor: str | None = None  # None: in this process
    shards: int = DEFAULT_SHARDS  # tasks of the array job (never more than the items)
    shard: Shard | None = None  # without an executor: do only this share here
    partition: str | None = None
    minutes: int = DEFAULT_MINUTES  # time limit of each task
    gpus: int = 0  # per task
    cpus: int | None = None  # per task; None: local, the cores / shards; slurm, DEFAULT_SLURM_CPUS
    mem_gb: float | None = None  # per task (slurm)
    logs: Path = Path(".submitit")  # submitit's folder: pickles and each task's log (CLIs: OUT/.submitit)
    name: str = "mslong"  # job name

    @property
    def submits(self) -> bool:
        return self.executor is not None

    @property
    def threads(self) -> int:
        """Threads each task may use: its CPUs."""
        if self.cpus is not None:
            return self.cpus
        if self.executor == "slurm":
            return DEFAULT_SLURM_CPUS
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.shards)

    def check(self) -> None:
        """Raise :class:`InputError` naming the flag at fault."""
        problems = {
            "--executor": None
            if self.executor in (None, *EXECUTORS)
            else f"use one of {', '.join(EXECUTORS)}",
            "--shards": None if self.shards >= 1 else "must be 1 or more",
            "--shard": "runs one share in this process; with --executor use --shards N"
            if self.shard is not None and self.submits
            else None,
            "--slurm-time": None if self.minutes >= 1 else "must be 1 minute or more",
            "--slurm-gpus": None if self.gpus >= 0 else "must be 0 or more",
            "--slurm-cpus": None if self.cpus is None or self.cpus >= 1 else "must be 1 or more",
            "--slurm-mem": None if self.mem_gb is None or self.mem_gb > 0 else "must be positive",
        }
        for flag, problem in problems.items():
            if problem:
                raise InputError(flag, problem)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`ClusterOptions` (read back with :func:`cluster_options`).

    An unset flag stays out of the namespace: :class:`ClusterOptions` holds the defaults.
    """
    group = parser.add_argument_group("cluster jobs (docs/cluster.md)")
    flag = partial(group.add_argument, default=argparse.SUPPRESS)
    flag(
        "--executor",
        metavar="{local,slurm}",
        help="submit one array job of --shards tasks through submitit and wait (local: subprocesses "
        "here); default: work in this process",
    )
    flag("--shards", type=int, metavar="N", help=f"tasks of the array job (default {DEFAULT_SHARDS})")
    flag("--shard", metavar="I/N", help="without --executor: do only the I-th of N shares here")
    flag("--slurm-partition", metavar="NAME", help="SLURM partition")
    flag(
        "--slurm-time",
        type=int,
        metavar="MIN",
        help=f"time limit of each task, minutes (default {DEFAULT_MINUTES}; local tasks too)",
    )
    flag("--slurm-gpus", type=int, metavar="N", help="GPUs per task (default 0; local tasks see the first N)")
    flag(
        "--slurm-cpus",
        type=int,
        metavar="N",
        help=f"CPU cores per task, and its thread cap (default: slurm {DEFAULT_SLURM_CPUS}, local cores/shards)",
    )
    flag("--slurm-mem", type=float, metavar="GB", help="memory per task (SLURM)")
    flag("--cluster-logs", type=Path, metavar="DIR", help="submitit's folder (default OUT/.submitit)")


def cluster_options(args: argparse.Namespace, out: str | Path, name: str) -> ClusterOptions:
    """The checked :class:`ClusterOptions` of parsed arguments; logs go under ``out`` by default."""
    given = {field: getattr(args, dest) for dest, field in CLUSTER_FIELDS.items() if hasattr(args, dest)}
    if "shard" in given:
        given["shard"] = parse_shard(given["shard"])
    options = ClusterOptions(**{"logs": Path(out) / ".submitit", **given, "name": name})
    options.check()
    return options


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> ``(2, 4)``; raises :class:`InputError` unless ``1 <= I <= N``."""
    index, slash, count = text.partition("/")
    if slash and index.strip().isdigit() and count.strip().isdigit() and 1 <= int(index) <= int(count):
        return int(index), int(count)
    raise InputError("--shard", f"'{text}' is not I/N with 1 <= I <= N")


def shard_of(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The ``shard`` (I, N) of ``items``: the I-th of N contiguous runs, sizes within one; None: all."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items[len(items) * (index - 1) // count : len(items) * index // count])


def select_items(
    items: Sequence[T],
    cases: Sequence[str] = (),
    shard: Shard | None = None,
    key: Callable[[T], str] = str,
    source: str = "--cases",
) -> list[T]:
    """The items whose ``key`` (a case id) is in ``cases`` (all when empty), then their ``shard``."""
    if cases:
        unknown = sorted(set(cases) - {key(item) for item in items})
        if unknown:
            raise InputError(source, f"no case {', '.join(unknown)}")
        items = [item for item in items if key(item) in set(cases)]
    return shard_of(items, shard)


@dataclass(frozen=True)
class _TaskFailure:
    """What a task hands back instead of raising: the submitter turns it into one line."""

    problem: str
    source: str | None = None  # the InputError's; None: an unexpected error, see the task's log


def _run_task(function: Callable[..., R], kwargs: dict[str, Any], threads: int, shard: Shard) -> Any:
    """What each task of the array runs (in its own process, from submitit's pickle)."""
    cap_threads(threads)
    try:
        return function(**kwargs, shard=shard)
    except InputError as error:  # not pickled as such (its constructor takes two arguments)
        return _TaskFailure(error.problem, error.source)
    except Exception as error:
        traceback.print_exc()  # the task's log keeps the whole trace
        return _TaskFailure(f"{type(error).__name__}: {error}")


def run_array(cluster: ClusterOptions, function: Callable[..., R], size: int, **kwargs: Any) -> list[R]:
    """Run ``function(**kwargs, shard=(I, N))`` for I = 1..N as one array job and wait for it.

    ``size`` is the number of items the shares divide: no task starts for an empty share
    (N is at most ``size``). Returns the tasks' results in share order. The first task that
    fails cancels the others and raises :class:`InputError`: the task's own, when it met bad
    input, else one that names the task's log.
    """
    count = min(cluster.shards, size)
    if count == 0:
        return []
    from submitit.helpers import as_completed

    cluster = replace(cluster, shards=count)  # the thread cap divides the cores among the tasks that run
    executor = make_executor(cluster)
    jobs = executor.map_array(
        partial(_run_task, function, kwargs, cluster.threads), [(i, count) for i in range(1, count + 1)]
    )
    array = f" (job {jobs[0].job_id.split('_')[0]})" if cluster.executor == "slurm" else ""
    print(f"{cluster.name}: {count} {cluster.executor} task(s){array}; logs in {cluster.logs}")
    try:
        for job in as_completed(jobs, poll_frequency=POLL_SECONDS[cluster.executor]):
            _raise_if_failed(job, jobs.index(job) + 1, count)
    except BaseException:
        for job in jobs:
            job.cancel(check=False)
        raise
    return [job.result() for job in jobs]


def _raise_if_failed(job: Any, index: int, count: int) -> None:
    error = job.exception()
    if error is not None:  # killed, out of time or memory: no result at all
        raise InputError(
            job.paths.stderr, f"task {index} of {count} ended without a result ({type(error).__name__})"
        )
    outcome = job.result()
    if isinstance(outcome, _TaskFailure):
        if outcome.source is not None:
            raise InputError(outcome.source, outcome.problem)
        raise InputError(job.paths.stderr, f"task {index} of {count} failed: {outcome.problem}")


def make_executor(cluster: ClusterOptions) -> Any:
    """submitit's ``AutoExecutor`` for ``cluster`` (local or SLURM), its parameters set."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=cluster.logs, cluster=cluster.executor)
    except RuntimeError as error:  # the SLURM executor needs srun on this machine
        raise InputError(f"--executor {cluster.executor}", str(error)) from None
    executor.update_parameters(**executor_parameters(cluster))
    return executor


def executor_parameters(cluster: ClusterOptions) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` keywords: resources per task and the thread caps."""
    parameters: dict[str, Any] = {
        "name": cluster.name,
        "timeout_min": cluster.minutes,
        "cpus_per_task": cluster.threads,
        "gpus_per_node": cluster.gpus,  # one task per node: its GPUs
        f"{cluster.executor}_setup": [f"export {name}={cluster.threads}" for name in THREAD_VARIABLES],
    }
    if cluster.executor == "slurm":
        parameters.update(slurm_partition=cluster.partition, mem_gb=cluster.mem_gb)
    return {key: value for key, value in parameters.items() if value is not None}


def cap_threads(threads: int) -> None:
    """Let this process use ``threads`` threads in OpenMP/BLAS, torch, SimpleITK and OpenCV.

    The environment covers libraries loaded later; those already loaded are told directly.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    loaded = sys.modules
    if "torch" in loaded:
        loaded["torch"].set_num_threads(threads)
    if "cv2" in loaded:
        loaded["cv2"].setNumThreads(threads)
    if "SimpleITK" in loaded:
        loaded["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
