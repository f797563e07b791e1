"""The FastAPI app factory. ``create_app(settings)`` is all a server (or a test) needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

from cloche import __version__
from cloche.agent import server as agent_server
from cloche.api import compat_jhansi, errors, ports, process_routes, routes_contexts
from cloche.api.middleware import BodyLimit, JsonByDefault
from cloche.api.routes import router
from cloche.api.state import AppState
from cloche.errors import StoreUnavailable
from cloche.jail.bwrap import bwrap_version
from cloche.metrics import CONTENT_TYPE_LATEST
from cloche.models import Health
from cloche.settings import Settings
from cloche.steps import StepTimings

MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: Settings | None = None, *, node_agent: bool = False) -> FastAPI:
    """The API server, or with ``node_agent`` a node agent: the same state and lifecycle, serving the agent
    protocol (``agent/server.py``) to API servers instead of the public API to users."""
    settings = settings or Settings()
    if node_agent and (settings.agents or settings.database_url is None):
        raise StoreUnavailable(
            "a node agent runs its own sandboxes on the database its API servers share: set CLOCHE_DATABASE_URL "
            "and leave CLOCHE_AGENTS empty"
        )
    app_state = AppState.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await app_state.start()
        try:
            yield
        finally:
            await app_state.stop()

    app = FastAPI(
        title="cloche",
        version=__version__,
        description="Sandboxes for AI-generated code whose dependencies install once and persist.",
        lifespan=lifespan,
    )
    app.state.cloche = app_state
    errors.install(app)
    if node_agent:
        app.include_router(agent_server.router)
    else:
        app.include_router(router)
        app.include_router(process_routes.router)
        app.include_router(ports.router)
        app.include_router(routes_contexts.router)
        app.include_router(compat_jhansi.router)  # the seed's clients: JHANSI_BASE_URL=<cloche>/jhansi

    @app.get("/health", response_model=Health, tags=["ops"])
    async def health() -> Health:
        return Health(status="ok", version=__version__, jail=bwrap_version())

    @app.get("/metrics", response_class=Response, tags=["ops"])
    async def metrics() -> Response:
        """Prometheus text exposition (no API key: it holds counts, never tenants' data)."""
        body = await asyncio.to_thread(app_state.metrics.render)  # may walk the environment store
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(JsonByDefault)
    if settings.step_timings:
        app.add_middleware(StepTimings)  # outermost: the clock starts before any other middleware
    return app
