"""``dgprm serve``: step rewards over HTTP where RL runs.

- :func:`create_app` (:mod:`.app`) — the FastAPI app over an already built
  :class:`~dgprm.scoring.StepScorer` (``/v1/score``, OpenRLHF's ``/get_reward``,
  ``/health``, ``/v1/tree``, ``/metrics``);
- :class:`ServeMetrics` (:mod:`.metrics`) — the counters ``/metrics`` reports;
- :func:`serve` — run the app with uvicorn until stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dgprm.serve.app import create_app, tree_summary
from dgprm.serve.metrics import ServeMetrics

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeMetrics", "create_app", "serve", "tree_summary"]


async def serve(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, access_log: bool = True
) -> None:
    """Run ``app`` with uvicorn on ``host:port`` until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, access_log=access_log, log_level="info", lifespan="off"
    )
    await uvicorn.Server(config).serve()
