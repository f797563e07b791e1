"""The FastAPI app factory. ``create_app(settings)`` is all a server (or a test) needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloche import __version__
from cloche.api import errors
from cloche.api.middleware import BodyLimit, JsonByDefault
from cloche.api.routes import router
from cloche.api.state import AppState
from cloche.jail.bwrap import bwrap_version
from cloche.models import Health
from cloche.settings import Settings

MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
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
    app.include_router(router)

    @app.get("/health", response_model=Health, tags=["ops"])
    async def health() -> Health:
        return Health(status="ok", version=__version__, jail=bwrap_version())

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(JsonByDefault)
    return app
