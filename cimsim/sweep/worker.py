"""What a sweep prepares on every Dask worker before its first point.

`WarmWorker` is a Dask `WorkerPlugin` (registered by `cimsim.sweep.engine.connect`, so it
also runs on a worker that joins later, e.g. one the nanny restarted after a crash): it
imports the simulator, so the first point of each worker does not pay for the imports
(about 0.3 s of CPU; they are part of the cluster start instead), and then moves every
object alive at that point (Dask's and cimsim's modules, about 90,000 objects) into the
permanent generation with `gc.freeze()`, so the full collections the simulation triggers
do not traverse them again and again. Neither changes what a point computes.

This module imports Dask distributed (the optional extra `cimsim[sweep]`); the engine
imports it only once Dask is known to be there.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

WARM_MODULES = ("cimsim.runner", "cimsim.sweep.task", "cimsim.hw.noc", "cimsim.hw.lockstep_noc")
"""Imported on every worker: the run pipeline and the modules it imports lazily."""


class WarmWorker(WorkerPlugin):
    """Import the simulator on the worker, then `gc.freeze()` what is alive."""

    name = "cimsim-warm-worker"
    """Registering the plugin again replaces it (and runs `setup` again, harmlessly)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        """Also stop the worker's HTTP server (Prometheus metrics, health): on a LocalCluster that
        cimsim started, nothing but the Dask protocol listens, and only on the loopback address."""

    def setup(self, worker: Any) -> None:
        """Run once per worker, before it runs a point."""
        server = getattr(worker, "http_server", None) if self.quiet else None
        if server is not None:
            server.stop()
        for module in WARM_MODULES:
            importlib.import_module(module)
        gc.collect()
        gc.freeze()
