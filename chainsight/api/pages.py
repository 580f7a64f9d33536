"""The pages people look at: sign-in (`/`), the dispatcher's live map (`/map`) and the quality
console (`/console`), with their static assets (`/static/...`).

The front end is built from `frontend/` (`npm ci && npm run build`, which scripts/bootstrap.sh
runs) into `chainsight/api/static/`. Pages and assets need no token: the pages ask for one
and send it with every API call. Everything they load comes from this server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from chainsight.api.context import context
from chainsight.api.errors import JSON, error

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/map": "map.html", "/console": "console.html"}
# Belt and braces: the browser itself refuses to load anything from elsewhere.
POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
          "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'")

router = APIRouter(include_in_schema=False)


def _page(name: str) -> Callable[[], Response]:
    """The route answering the built page `name` (a route without parameters)."""

    def answer() -> Response:
        path = STATIC / name
        if not path.is_file():
            return error(503, "the pages are not built: run scripts/bootstrap.sh "
                              "(npm ci && npm run build in frontend/)")
        return FileResponse(path, media_type="text/html", headers={
            "Content-Security-Policy": POLICY, "Cache-Control": "no-cache"})

    return answer


for route, page in PAGES.items():
    router.add_api_route(route, _page(page), methods=["GET"])


@router.get("/pages/profiles.json")
def profiles(request: Request) -> JSON:
    """The product profiles' temperature ranges, for the shipment panel's chart."""
    return JSON({name: {"min_c": p.min_c, "max_c": p.max_c}
                 for name, p in context(request).backend.profiles.items()})


def install(app: FastAPI) -> None:
    """Route the pages and serve the built assets (when built) on `app`."""
    app.include_router(router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
