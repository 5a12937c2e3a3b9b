"""Where jobs run: a Dask distributed cluster, embedded by default or named by ``ATLAS_DASK_SCHEDULER``.

Embedded: a ``LocalCluster`` of ``ATLAS_DASK_WORKERS`` worker processes (default: one per CPU core beyond
the first, at least one), one thread each, bound to 127.0.0.1 with no dashboard, started once per process on
first use. Its workers run at the lowest OS priority (``ATLAS_WORKER_NICE``, default 19), so interactive
sessions on the same machine keep the CPU when they need it and jobs get the rest. With
``ATLAS_DASK_SCHEDULER=tcp://host:8786`` the app connects to an existing cluster instead (its workers need this
project importable and the models available). Each worker process loads a model once and keeps it
(``worker_model``).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from analysis.runtime.handle import ModelHandle
from analysis.runtime.loading import load_model

SCHEDULER_ENV = "ATLAS_DASK_SCHEDULER"
WORKERS_ENV = "ATLAS_DASK_WORKERS"
NICE_ENV = "ATLAS_WORKER_NICE"
CONNECT_TIMEOUT = "20s"
DEFAULT_NICE = "19"  # the lowest priority: jobs get the CPU time interactive sessions leave
MODELS_PER_WORKER = 2

_clients: dict[str, Client] = {}  # scheduler address ("" = embedded) -> client
_clients_lock = threading.Lock()
_models: OrderedDict[str, ModelHandle] = OrderedDict()
_models_lock = threading.Lock()


class ClusterError(RuntimeError):
    """The Dask cluster cannot be reached or started."""


def embedded_workers() -> int:
    """Worker processes of the embedded cluster: ``ATLAS_DASK_WORKERS`` or one per core beyond the first."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 2) - 1)


def lower_priority(niceness: int) -> None:
    """Raise the niceness of every thread of this process to ``niceness`` (Linux sets it per thread)."""
    tasks = Path("/proc/self/task")
    thread_ids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for thread_id in thread_ids:
        try:
            if os.getpriority(os.PRIO_PROCESS, thread_id) < niceness:
                os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
        except OSError:  # the thread ended meanwhile, or the OS refuses: the job just runs at normal priority
            continue


class LowPriorityWorker(WorkerPlugin):
    """Lowers a worker process's CPU priority when it starts (threads it creates later inherit it)."""

    name = "atlas-low-priority"

    def __init__(self, niceness: int):
        self.niceness = niceness

    def setup(self, worker) -> None:
        lower_priority(self.niceness)


def _connect(address: str) -> Client:
    if address:
        try:
            return Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"Could not reach the Dask scheduler at {address} ({error}); check "
                               f"{SCHEDULER_ENV}.") from error
    cluster = LocalCluster(n_workers=embedded_workers(), threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, processes=True)
    client = Client(cluster, set_as_default=False)
    client.register_plugin(LowPriorityWorker(int(os.environ.get(NICE_ENV, DEFAULT_NICE))))
    return client


def dask_client() -> Client:
    """The client of ``ATLAS_DASK_SCHEDULER``'s cluster, or of the embedded one; connected or started once."""
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status not in ("running", "connecting", "newly-created"):
            client = _clients[address] = _connect(address)
        return client


def close_clients() -> None:
    """Close this process's Dask clients, and stop the embedded cluster's workers."""
    with _clients_lock:
        for client in _clients.values():
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        _clients.clear()


def worker_count(client: Client) -> int:
    """How many workers the cluster has now (at least one, for sharding)."""
    return max(1, len(client.nthreads()))


def worker_model(name: str) -> ModelHandle:
    """The model ``name`` in this process, loaded on first use and kept (the least recently used one goes)."""
    with _models_lock:
        if name not in _models:
            _models[name] = load_model(name)
            while len(_models) > MODELS_PER_WORKER:
                _models.popitem(last=False)
        _models.move_to_end(name)
        return _models[name]
