"""Background jobs: runs are rows in the store; a worker executes them.

- :mod:`fakevoice.jobs.runner`: the job function (train one run, write metrics and artefacts).
- :mod:`fakevoice.jobs.local`: the embedded default backend (a worker process with child processes).
- :mod:`fakevoice.jobs.ray_backend`: the same job function as Ray tasks, for GPU clusters.
"""
