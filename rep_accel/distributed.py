"""Running independent pieces of work on Ray (https://docs.ray.io), or serially without it.

    with distributed.session(workers=2) as engine:       # a local Ray instance of 2 CPUs
        for index, result in engine.map(run_shard, shards):
            ...                                            # results in the order of `shards`

    with distributed.session(address="10.0.0.1:6379") as engine:   # an existing cluster
        ...

Ray is an optional extra (`pip install 'rep-accel[ray]'`). Without it, or with
`serial=True`, `session` gives a `SerialEngine` that runs the same function on the same
items in the same order in this process, so a distributed run and a serial one compute
exactly the same thing. This module is the only one that imports ray.

Every item runs as one Ray task (one CPU). A task whose worker process dies (killed, out
of memory, node lost) is run again by Ray, up to `max_retries` times; its result is
delivered once, so no item is lost or counted twice. A task that raises an exception is
not retried: the exception reaches the caller (a RepAccelError stays one).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .errors import RepAccelError

#: How often Ray runs a task again after its worker process died.
DEFAULT_MAX_RETRIES = 3
#: Tasks kept submitted per CPU: enough to keep every CPU busy, few enough that the
#: arguments in flight (e.g. image shards) stay a bounded amount of memory.
IN_FLIGHT_PER_CPU = 2
INSTALL_HINT = "pip install 'rep-accel[ray]'"


def ray_available() -> bool:
    """True when the `ray` package is installed."""
    return importlib.util.find_spec("ray") is not None


@dataclass
class SerialEngine:
    """Runs every item in this process, in order. `reason` says why this is not Ray."""

    reason: str = "serial run requested"
    workers: int = 1
    name: str = "serial"

    def put(self, value):
        """A handle to `value` for `map`'s shared arguments (the value itself here)."""
        return value

    def map(self, function: Callable, items: Iterable, *shared) -> Iterator[tuple[int, object]]:
        """Yield (index, function(item, *shared)) for every item, in order."""
        for index, item in enumerate(items):
            yield index, function(item, *shared)


class RayEngine:
    """Runs every item as a Ray task on the connected cluster; `map` yields in item order.

    Only IN_FLIGHT_PER_CPU x CPUs items are submitted at a time, so `items` may be a
    generator that reads its data lazily: memory stays flat however many items there are.
    """

    def __init__(self, ray, max_retries: int, description: str):
        self._ray = ray
        self.max_retries = int(max_retries)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.name = description
        self._remote = {}

    def put(self, value):
        """Store `value` once in Ray's object store; pass the handle as a shared argument
        of `map` (workers fetch it once each, see `shared_value`)."""
        return SharedRef([self._ray.put(value)])

    def _task(self, function: Callable):
        if function not in self._remote:
            name = getattr(function, "__module__", None) or "__main__"
            if name != "__main__" and name.split(".")[0] != "rep_accel" and name in sys.modules:
                # A function of a script or test module (benchmarks/, tests/) that a worker cannot
                # import by name: it travels by value, as functions of __main__ do.
                self._ray.cloudpickle.register_pickle_by_value(sys.modules[name])
            self._remote[function] = self._ray.remote(num_cpus=1, max_retries=self.max_retries,
                                                      retry_exceptions=False)(function)
        return self._remote[function]

    def map(self, function: Callable, items: Iterable, *shared) -> Iterator[tuple[int, object]]:
        """Yield (index, function(item, *shared)) for every item, in the order of `items`."""
        ray = self._ray
        task = self._task(function)
        window = IN_FLIGHT_PER_CPU * self.workers
        pending: dict = {}          # object ref -> item index
        done: dict[int, object] = {}
        source = enumerate(items)
        try:
            yield from self._drain(ray, task, window, pending, done, source, shared)
        finally:
            for ref in pending:  # the caller stopped early (an error): do not leave tasks running
                ray.cancel(ref)

    def _drain(self, ray, task, window, pending, done, source, shared):
        next_out = 0
        exhausted = False
        while True:
            while not exhausted and len(pending) + len(done) < window:
                try:
                    index, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending[task.remote(item, *shared)] = index
            if not pending and not done:
                return
            if pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    done[index] = _get(ray, ref, index, self.max_retries)
            while next_out in done:
                yield next_out, done.pop(next_out)
                next_out += 1


@dataclass
class SharedRef:
    """A value stored once in Ray's object store, wrapped in a list so that Ray hands the
    task the reference (not the value) and `shared_value` can fetch it once per worker."""

    refs: list


#: The one shared value a worker process holds: (key, build function, value). The key is
#: the object ref's id for Ray, the handle object itself for the serial engine (held here,
#: so that no other object can take its id while it is cached).
_WORKER_CACHE: list = []


def shared_value(handle, build: Callable | None = None):
    """In a task: the value behind a `put` handle, fetched (and passed through `build`,
    e.g. to construct a simulator) once per worker process and cached; a plain value
    (the serial engine's handle) is passed through `build` once per process too. A new
    handle replaces the cached value (one run at a time per worker)."""
    key = handle.refs[0].hex() if isinstance(handle, SharedRef) else handle
    if _WORKER_CACHE:
        cached_key, cached_build, value = _WORKER_CACHE[0]
        same = cached_key == key if isinstance(handle, SharedRef) else cached_key is key
        if same and cached_build is build:
            return value
    if isinstance(handle, SharedRef):
        import ray
        value = ray.get(handle.refs[0])
    else:
        value = handle
    value = build(value) if build is not None else value
    _WORKER_CACHE[:] = [(key, build, value)]
    return value


def _get(ray, ref, index: int, max_retries: int):
    """ray.get, with a task's RepAccelError re-raised as itself (Ray wraps it), and a
    task whose worker died on every attempt reported as one line."""
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
        raise RepAccelError(f"item {index}: its worker died on all {max_retries + 1} attempt(s) "
                            f"({type(e).__name__}); see the Ray logs (/tmp/ray/session_latest/logs), "
                            f"or raise --max-retries") from None
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, RepAccelError):
            raise RepAccelError(str(cause)) from None
        raise


@contextlib.contextmanager
def session(workers: int | None = None, address: str | None = None, serial: bool = False,
            max_retries: int = DEFAULT_MAX_RETRIES):
    """An engine to `map` work on: Ray when installed, else (or with serial=True) serial.

    workers: CPUs of the local Ray instance started here (default: all cores); address:
    join an existing cluster instead (`ray start --head` prints it; "auto" finds a local
    one). If Ray is already initialized in this process (e.g. by a test), that instance is
    used and left running; an instance started here is shut down on exit.
    """
    if workers is not None and workers < 1:
        raise RepAccelError(f"--workers {workers} must be at least 1")
    if serial:
        if address is not None:
            raise RepAccelError("--address joins a Ray cluster; it cannot be combined with a serial run")
        yield SerialEngine("serial run requested")
        return
    if not ray_available():
        if address is not None:
            raise RepAccelError(f"--address {address}: joining a Ray cluster needs Ray: {INSTALL_HINT}")
        yield SerialEngine(f"Ray is not installed ({INSTALL_HINT}); running serially in this process")
        return
    import ray

    started = False
    if ray.is_initialized():
        description = "Ray (already running in this process)"
    else:
        try:
            if address is not None:
                ray.init(address=address, include_dashboard=False, log_to_driver=True)
                description = f"Ray cluster at {address}"
            else:
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=True)
                description = "local Ray instance"
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RepAccelError(f"cannot start or join {where} ({e}); check `ray status`, or drop --address "
                                f"to start a local instance") from None
        started = True
    try:
        engine = RayEngine(ray, max_retries, description)
        engine.name = f"{description}, {engine.workers} CPU(s)"
        yield engine
    finally:
        if started:
            ray.shutdown()
