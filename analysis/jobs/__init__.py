"""Background jobs: dataset sweeps and long single-text runs, executed on Dask outside the page's script run.

- ``records``: job records (parameters, status, progress, stored shards, result) in the share database.
- ``kinds``: what a job computes per dataset row (census scores, importance), the same in-process and on a worker.
- ``cluster``: the Dask client (embedded local cluster or ``ATLAS_DASK_SCHEDULER``) and the per-worker model.
- ``tasks``: the function a worker runs for one shard of rows.
- ``runner``: submitting, following, cancelling, resuming and finishing jobs.
"""
