"""Jobs on an existing Dask cluster: a real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

The scheduler and two single-threaded worker processes start once for this module (free ports, no dashboard)
and are stopped afterwards. Sweeps run through them via ``ATLAS_DASK_SCHEDULER`` and must equal the same rows
computed in this process; both workers take shards and keep the model they loaded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from distributed import Client

from analysis.datasets import Dataset
from analysis.datasets.generators import ioi_dataset, natural_text_dataset
from analysis.jobs import cluster
from analysis.jobs.cluster import ClusterError, dask_client
from analysis.jobs.records import JobStore
from analysis.jobs.runner import JobRequest, JobRunner
from analysis.runtime.loading import load_model
from analysis.share_store import ShareStore
from tests.browser_support import free_port
from tests.jobs_support import OPTIONS, assert_same_result, in_process, run_job, tiny_causal_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT = 120.0
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers run this module's probes without importing it


def _loaded_models() -> list[str]:
    """Run on a worker: the models its process holds."""
    return list(cluster._models)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """The address of a running scheduler with two worker processes (stopped after the module)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    processes = [
        subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                         cwd=ROOT, env=env, stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    processes.append(subprocess.Popen(
        [DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
        cwd=ROOT, env=env, stdout=open(logs / "workers.log", "w"), stderr=subprocess.STDOUT))
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def runner(scheduler, tmp_path_factory):
    """A job runner whose ``dask_client`` connects to the scheduler named by ATLAS_DASK_SCHEDULER."""
    previous = os.environ.get(cluster.SCHEDULER_ENV)
    os.environ[cluster.SCHEDULER_ENV] = scheduler
    try:
        yield JobRunner(JobStore(ShareStore(f"sqlite:///{tmp_path_factory.mktemp('db') / 'atlas.sqlite'}")),
                        dask_client)
    finally:
        if previous is None:
            os.environ.pop(cluster.SCHEDULER_ENV)
        else:
            os.environ[cluster.SCHEDULER_ENV] = previous


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return tiny_causal_folder(tmp_path_factory.mktemp("models") / "tiny-ioi-llama")


def test_the_app_connects_to_the_named_scheduler(runner, scheduler):
    client = dask_client()
    assert client.scheduler.address == scheduler and len(client.nthreads()) == 2
    assert client is dask_client()  # connected once


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_sweeps_through_scheduler_and_workers_equal_the_in_process_result(runner, folder, kind):
    request = JobRequest(kind, folder, load_model(folder).info.revision, ioi_dataset(24, seed=5), OPTIONS[kind], 64)
    record = run_job(runner, request)
    expected, errors = in_process(folder, request)
    assert_same_result(record.frame(), expected)
    assert record.row_errors == errors


def test_rows_are_sharded_across_both_workers_which_keep_their_model(runner, folder):
    client = dask_client()
    before = client.run(lambda: id(cluster.worker_model(folder)))
    run_job(runner, JobRequest("census", folder, "", Dataset("more", tuple(natural_text_dataset().texts) * 2), {}, 64))
    assert all(folder in models for models in client.run(_loaded_models).values())
    assert client.run(lambda: id(cluster.worker_model(folder))) == before  # loaded once per process, then kept


def test_a_real_model_sweep_through_the_cluster(runner, smollm2):
    """SmolLM2's census scores over IOI prompts, computed by the workers, equal this process's."""
    request = JobRequest("census", "smollm2-135m", smollm2.info.revision, ioi_dataset(6, seed=7), {}, 64)
    record = run_job(runner, request)
    expected, _ = in_process("smollm2-135m", request)
    assert_same_result(record.frame(), expected)
    assert record.frame()["head"].nunique() == 270


def test_an_unreachable_scheduler_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv(cluster.SCHEDULER_ENV, f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "2s")
    started = time.monotonic()
    with pytest.raises(ClusterError, match="Could not reach the Dask scheduler at tcp://127.0.0.1:"):
        dask_client()
    assert time.monotonic() - started < 30
