"""Engines: where the benchmark grid's jobs run, while the driver alone writes the results store.

:func:`robustnic.studies.grid.run_grid` hands an engine the jobs the store lacks and records every
:class:`Finished` job the engine yields, one row per transaction, in the driver process. Engines only
compute, so every engine resumes the same way: a killed run leaves whole rows behind, and the next
run (on any engine) computes exactly the missing ones.

==========  ======================================================================================
engine      runs each job
==========  ======================================================================================
``local``   in this process (``workers`` 1), or in a pool of ``workers`` spawned processes
``ray``     as a Ray task (1 CPU, and 1 GPU when the device is CUDA) on a local Ray instance with
            ``workers`` CPUs, or on the running Ray cluster at ``address``
==========  ======================================================================================

Ray is an optional extra (``pip install 'robustnic[ray]'``); without it the ``ray`` engine raises one
:class:`~robustnic.errors.RobustnicError` that says how to install it. On a cluster, every node needs
robustnic installed (the same version: job keys hash the driver's code, results come from the nodes').
"""

from __future__ import annotations

import abc
import concurrent.futures as futures
import logging
import multiprocessing
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from robustnic.errors import RobustnicError
from robustnic.studies.jobs import JobOutput, execute
from robustnic.utils.runtime import resolve_device

if TYPE_CHECKING:
    from robustnic.studies.grid import Job

#: The engine names :func:`make_engine` (and ``robustnic bench --engine``) accepts.
ENGINES = ("local", "ray")
#: The one line a user without Ray sees.
RAY_MISSING = "the ray engine needs Ray, an optional extra: pip install 'robustnic[ray]' (or pip install 'ray>=2.9')"


@dataclass
class Finished:
    """One job an engine ran: its output, or ``None`` and the ``error`` it raised; ``elapsed`` seconds."""

    job: "Job"
    output: JobOutput | None
    elapsed: float
    error: str | None = None


# ----- running one job (in whichever process the engine chose) -------------------------------------
def run_job(kind: str, config: dict[str, Any], device: str) -> tuple[JobOutput | None, float, str | None]:
    """Execute one job; ``(output, seconds, None)``, or ``(None, seconds, message)`` if it raised.

    A :class:`~robustnic.errors.RobustnicError` is reported by its message alone; any other exception
    with a short traceback. Nothing propagates: the grid goes on with the other jobs.
    """
    t0 = time.perf_counter()
    try:
        return execute(kind, config, device), time.perf_counter() - t0, None
    except Exception as exc:  # reported per job; the grid goes on
        detail = traceback.format_exc(limit=4) if not isinstance(exc, RobustnicError) else ""
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}\n{detail}".strip()


def _watch_parent(parent: int) -> None:
    """Exit this worker when the process that started it dies (e.g. ``kill -9`` of the runner)."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _worker_init(threads: int, parent: int) -> None:
    """Set up a pool worker: quiet warnings, ``threads`` torch threads, and exit with its parent."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def ray_task(kind: str, config: dict[str, Any], device: str, threads: int) -> tuple[JobOutput | None, float, str | None]:
    """The body of one Ray task: :func:`run_job` with ``threads`` torch threads and warnings off."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return run_job(kind, config, device)


# ----- engines ---------------------------------------------------------------------------------------
class Engine(abc.ABC):
    """Runs jobs and yields them finished; use as a context manager (start, then close).

    Subclasses implement :meth:`run`; :meth:`start` and :meth:`close` acquire and release what the
    engine runs on, and :meth:`resolve_device` turns a device name into the one every job uses.
    """

    name: str = ""

    def start(self) -> None:
        """Acquire what the engine needs (processes are started lazily by :meth:`run`)."""

    def close(self) -> None:
        """Release what :meth:`start` acquired; safe to call twice."""

    def __enter__(self) -> "Engine":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_device(self, device: str) -> str:
        """The device every job runs on, as a name (``auto`` resolved on this machine)."""
        return str(resolve_device(device))

    @abc.abstractmethod
    def run(self, jobs: Sequence["Job"], device: str) -> Iterator[Finished]:
        """Run ``jobs`` on ``device``; yield each as it finishes (in any order).

        Closing the iterator early (the driver was interrupted) cancels the jobs not yet started.
        """


class LocalEngine(Engine):
    """This machine: in-process for ``workers <= 1`` (or a single job), else a spawned process pool.

    Each worker runs ``threads`` torch threads; results do not depend on either number.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int = 1):
        self.workers = max(1, int(workers))
        self.threads = max(1, int(threads))

    def run(self, jobs: Sequence["Job"], device: str) -> Iterator[Finished]:
        if self.workers <= 1 or len(jobs) <= 1:
            yield from self._run_here(jobs, device)
        else:
            yield from self._run_pool(jobs, device)

    def _run_here(self, jobs: Sequence["Job"], device: str) -> Iterator[Finished]:
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                yield Finished(job, *run_job(job.kind, job.config, device))
        finally:
            torch.set_num_threads(old_threads)

    def _run_pool(self, jobs: Sequence["Job"], device: str) -> Iterator[Finished]:
        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_worker_init,
            initargs=(self.threads, os.getpid()),
        ) as pool:
            running = {pool.submit(run_job, j.kind, j.config, device): j for j in jobs}
            try:
                for fut in futures.as_completed(running):
                    yield Finished(running[fut], *fut.result())
            finally:  # early close or an error: drop what has not started (running jobs finish)
                for fut in running:
                    fut.cancel()


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`~robustnic.errors.RobustnicError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RobustnicError(RAY_MISSING) from None
    return ray


class RayEngine(Engine):
    """Each job a Ray task (``num_cpus=1``; ``num_gpus=1`` on CUDA); results come back to the driver.

    ``address`` joins a running cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); without it
    a local Ray instance starts with ``num_cpus`` CPUs (``None``: all of this machine's). When this
    process already has Ray initialised, that instance is used and left running. At most
    ``max_in_flight`` tasks are submitted at once (default: four per cluster CPU, at least 8), so a grid
    of any size keeps the driver's memory bounded. A task whose worker dies is retried ``max_retries``
    times by Ray, then reported failed like a job that raised.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        threads: int = 1,
        max_in_flight: int | None = None,
        max_retries: int = 1,
        init_kwargs: dict[str, Any] | None = None,
    ):
        self.address = address or None
        self.num_cpus = num_cpus
        self.threads = max(1, int(threads))
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.init_kwargs = dict(init_kwargs or {})
        self._ray: Any = None
        self._owns = False
        #: Seconds :meth:`start` took (``ray.init``; 0 when Ray was already running).
        self.startup_s = 0.0

    def start(self) -> None:
        ray = import_ray()
        self._ray = ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}
        if self.address is None and self.num_cpus is not None:
            kwargs["num_cpus"] = int(self.num_cpus)
        kwargs.update(self.init_kwargs)
        t0 = time.perf_counter()
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
            raise RobustnicError(f"cannot start or join {where}: {exc}") from None
        self._owns = True
        self.startup_s = time.perf_counter() - t0

    def close(self) -> None:
        if self._owns and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def _resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources()) if self._ray is not None else {}

    def resolve_device(self, device: str) -> str:
        """``cpu`` and ``mps`` as given; ``cuda`` needs GPUs in the cluster (each task gets one of Ray's
        choosing, so ``cuda:N`` is refused); ``auto`` is ``cuda`` when the cluster has GPUs, else ``cpu``."""
        name = str(device).strip().lower()
        gpus = self._resources().get("GPU", 0)
        if name == "auto":
            return "cuda" if gpus > 0 else "cpu"
        if name.startswith("cuda"):
            if name != "cuda":
                raise RobustnicError(f"device {name!r}: on the ray engine each job gets one GPU that Ray chooses; "
                                     "use --device cuda")
            if gpus <= 0:
                raise RobustnicError("device 'cuda' requested but the Ray cluster has no GPUs; use cpu or auto")
            return "cuda"
        if name in ("cpu", "mps"):
            return name
        return str(resolve_device(name))  # raises the usual error for an unknown name

    def run(self, jobs: Sequence["Job"], device: str) -> Iterator[Finished]:
        if self._ray is None:
            raise RobustnicError("RayEngine.run before start(): use the engine as a context manager")
        ray = self._ray
        task = ray.remote(ray_task).options(
            num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0, max_retries=self.max_retries,
        )
        limit = self.max_in_flight or max(8, 4 * int(self._resources().get("CPU", 2)))
        queue = list(reversed(jobs))  # pop() from the end keeps the spec's order
        running: dict[Any, tuple["Job", float]] = {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    job = queue.pop()
                    running[task.remote(job.kind, job.config, device, self.threads)] = (job, time.perf_counter())
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    job, submitted = running.pop(ref)
                    try:
                        output, elapsed, error = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died, the task was cancelled, ...
                        output, elapsed = None, time.perf_counter() - submitted
                        lines = str(exc).strip().splitlines()
                        error = f"{type(exc).__name__}: {lines[0] if lines else 'the Ray task failed'}"
                    yield Finished(job, output, elapsed, error)
        finally:  # early close or an error: cancel what is still queued or running (workers survive;
            # a driver that started its own Ray shuts it down right after, which ends them anyway)
            for ref in running:
                try:
                    ray.cancel(ref, force=False)
                except Exception:  # already finished, or the cluster is gone
                    pass


def make_engine(
    name: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
) -> Engine:
    """An engine by name: ``local`` with ``workers`` processes (default 1), or ``ray`` on a local instance
    with ``workers`` CPUs (default: all) or on the cluster at ``address``."""
    if name == "local":
        if address:
            raise RobustnicError("--address belongs to the ray engine (use --engine ray)")
        return LocalEngine(workers or 1, threads)
    if name == "ray":
        if address and workers:
            raise RobustnicError("--workers sets the CPUs of a local Ray instance; a cluster at --address "
                                 "brings its own (leave --workers out)")
        import_ray()  # fail early, with the install line
        return RayEngine(address=address, num_cpus=workers, threads=threads)
    raise RobustnicError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
