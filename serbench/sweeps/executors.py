"""Where a sweep's tasks run: in this process, one after another, or on Ray (local or a cluster).

Both take the same list of :class:`Task` (each naming the tasks whose results it needs) and report
each outcome to the driver as it comes, ``done(task, value)`` or ``failed(task, reason)``; a task
whose input failed is not run and is reported failed, naming that input. The task functions are
the same (:func:`serbench.sweeps.tasks.call`), so the results are too.
"""
from __future__ import annotations

import logging
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field

from serbench.errors import SerbenchError
from serbench.sweeps import tasks as task_functions


@dataclass
class Task:
    id: str                     # unique and readable: "fold distilhubert/speaker-kfold/probe/seed0 #2"
    kind: str                   # build | embed | fold (serbench.sweeps.tasks.FUNCTIONS)
    args: tuple                 # plain data
    deps: list[str] = field(default_factory=list)   # tasks whose results are appended to args, in order
    gpu: bool = False           # asks Ray for a GPU (float embedding, fine-tuning, when the cluster has one)
    inputs: dict = field(default_factory=dict)      # what to print when it fails
    cell: object = None         # a fold task's sweep cell (driver side only; never sent to a worker)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class InProcess:
    """Every task here, in list order (which is dependency order)."""

    name = "in-process"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, tasks: list[Task], done, failed) -> None:
        results: dict[str, object] = {}
        bad: dict[str, str] = {}
        needed = {d for t in tasks for d in t.deps}   # results kept only for tasks that feed others
        for t in tasks:
            broken = [d for d in t.deps if d in bad]
            if broken:
                bad[t.id] = f"not run: its input {broken[0]!r} failed"
                failed(t, bad[t.id])
                continue
            try:
                value = task_functions.call(t.kind, self.threads, t.args, *(results[d] for d in t.deps))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a failed task is reported; the rest of the grid goes on
                bad[t.id] = _reason(exc)
                failed(t, bad[t.id], traceback.format_exc())
                continue
            if t.id in needed:
                results[t.id] = value
            done(t, value)


class OnRay:
    """The tasks as Ray tasks: ``address`` ``"local"`` starts a Ray on this machine's cores (or
    ``cpus``), anything else (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) joins a
    running cluster. Each task asks for ``cpus_per_task`` CPUs (and uses that many threads) and
    for a GPU only when it uses one; a task's inputs travel as object references, so a fold task
    starts as soon as its embed tasks are done, on any node."""

    def __init__(self, address: str = "local", cpus: int | None = None, cpus_per_task: int = 1):
        try:
            import ray
        except ImportError as exc:
            raise SerbenchError("--ray needs Ray: pip install 'serbench[ray]'") from exc
        self.ray, self.address, self.cpus_per_task = ray, address, int(cpus_per_task)
        from serbench import paths

        env = {"env_vars": {"SERBENCH_HOME": str(paths.home()), "PYTHONWARNINGS": "ignore"}}
        try:
            if address == "local":
                n = cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
                ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False, runtime_env=env,
                         ignore_reinit_error=True, logging_level=logging.WARNING)
            else:
                ray.init(address=address, log_to_driver=False, runtime_env=env, ignore_reinit_error=True,
                         logging_level=logging.WARNING)
        except Exception as exc:   # no cluster at that address, a port taken, ...
            raise SerbenchError(f"--ray {address}: could not {'start' if address == 'local' else 'join'} Ray: "
                                f"{type(exc).__name__}: {exc}") from exc
        self.gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.name = f"ray ({address}: {ray.cluster_resources().get('CPU', 0):.0f} CPUs" \
                    f"{', GPU' if self.gpus else ''})"
        self._remote = ray.remote(max_retries=0)(task_functions.call)

    def close(self) -> None:
        self.ray.shutdown()

    def run(self, tasks: list[Task], done, failed) -> None:
        ray = self.ray
        refs, pending = {}, {}
        for t in tasks:
            opts = {"num_cpus": self.cpus_per_task}
            if t.gpu and self.gpus:
                opts["num_gpus"] = 1
            # inputs as top-level arguments: Ray resolves them (fetching across nodes) before it runs
            ref = self._remote.options(**opts).remote(t.kind, self.cpus_per_task, t.args, *[refs[d] for d in t.deps])
            refs[t.id] = ref
            pending[ref] = t
        users = Counter(d for t in tasks for d in t.deps)   # a result is dropped once its users have it

        def release(t: Task) -> None:
            for d in t.deps:
                users[d] -= 1
                if users[d] == 0:
                    refs.pop(d, None)   # Ray frees an object when no reference is left
            if users[t.id] == 0:
                refs.pop(t.id, None)

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                t = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as exc:   # the task raised, its worker died, ...
                    broken = [d for d in t.deps if d in refs and not self._ok(refs[d])]
                    if broken:
                        failed(t, f"not run: its input {broken[0]!r} failed")
                    else:
                        cause = getattr(exc, "cause", None) or exc
                        failed(t, _reason(cause), str(exc))
                    release(t)
                    continue
                release(t)
                done(t, value)

    def _ok(self, ref) -> bool:
        try:
            self.ray.get(ref)
            return True
        except self.ray.exceptions.RayError:
            return False
