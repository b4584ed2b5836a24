"""The gateway's Swagger UI (/docs), served with its own assets: no CDN, so it works offline and air-gapped.

FastAPI's `get_swagger_ui_html` points at jsDelivr for swagger-ui-bundle.js and swagger-ui.css and at
fastapi.tiangolo.com for the favicon (fastapi/openapi/docs.py, its defaults): a browser without the
internet got a blank page. The files come from the `swagger-ui-bundle` package (spec-first/swagger_ui_bundle:
`swagger_ui_path` is its vendored Swagger UI dist folder), pinned in constraints.txt, and are served from
/docs/assets/, behind the same basic auth as /docs itself (services/gateway.py `_Edge`).

Example::

    add_docs(app, openapi_url="/openapi.json", title="mlops gateway")
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# The only files the page needs; nothing else of the package's folder is served.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


def assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def add_docs(app: FastAPI, *, openapi_url: str, title: str) -> None:
    folder = assets_dir()

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png")

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str):
        if name not in ASSETS:  # the app's handler answers in its usual error shape
            raise HTTPException(404, f"no such documentation asset: {name}")
        return FileResponse(folder / name, media_type=ASSETS[name])
