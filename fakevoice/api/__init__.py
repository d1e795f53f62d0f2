"""The HTTP API: verdicts for one clip or a batch, models, runs and verdict history.

``fakevoice api`` serves :func:`create_app` under uvicorn; OpenAPI lives at ``/docs``.
"""

from __future__ import annotations

from fakevoice.api.app import create_app

__all__ = ["create_app"]
