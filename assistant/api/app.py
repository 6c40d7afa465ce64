"""The FastAPI application: thin routes over `assistant.api.service.Service`.

Blocking work (answering, searching, Chroma reads, uploads) runs in the thread pool, so requests
overlap where the libraries let them (the encoder and Chroma release the GIL); ingest runs in a
background thread with a job id. OpenAPI docs at /docs.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.api import openai_format as oa
from assistant.api.service import ApiError, Service, answer_error
from assistant.config import Settings
from assistant.store import KnowledgeBaseMissing, StoreError

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})
UPLOAD_OVERHEAD_BYTES = 1024 * 1024  # multipart boundaries and headers around the files


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _error_response(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                    param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(oa.error_body(message, type_, code, param), status_code=status, headers=headers)


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: the API key (constant-time compare) on every route but /health, then the
    request-size limit (Content-Length, and the bytes actually received)."""

    def __init__(self, app, settings: Settings):
        self.app = app
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._key = ("Bearer " + key).encode() if key else b""
        self._json_limit = int(settings.api_max_request_mb * 1024 * 1024)
        self._upload_limit = int(settings.max_upload_mb * 1024 * 1024) + UPLOAD_OVERHEAD_BYTES

    def _limit(self, scope) -> int:
        path = scope.get("path", "")
        if scope.get("method") == "POST" and path.startswith("/v1/kbs/") and path.endswith("/documents"):
            return self._upload_limit
        return self._json_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self._key and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._key):
                return await _send_json(send, 401, oa.error_body(
                    "missing or wrong API key: send `Authorization: Bearer <ASSISTANT_API_KEY>`",
                    "authentication_error", "invalid_api_key"), [(b"www-authenticate", b"Bearer")])
        limit = self._limit(scope)
        too_large = oa.error_body(f"the request is larger than the limit of {limit / 1024 / 1024:g} MB",
                                  "invalid_request_error", "request_too_large")
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return await _send_json(send, 413, too_large)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, too_large)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(service.warm)
        yield

    # FastAPIOffline: the /docs page's scripts and styles come from the package, never from a CDN
    app = FastAPIOffline(
        title="summit-assistant",
        description="Grounded, cited answers about your documents: an OpenAI-compatible chat-completions route "
        "(`model` = knowledge base) plus search, documents and ingest jobs.",
        version="0.1.0",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the Swagger validator
    )
    app.state.service = service
    app.add_middleware(Guard, settings=settings)

    # --- errors, all in the OpenAI shape
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error_response(exc.status, exc.message, exc.type, exc.code, exc.param)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):
        from assistant.chain import safe_message

        if isinstance(exc, KnowledgeBaseMissing):
            return _error_response(404, safe_message(exc, settings), code="model_not_found")
        return _error_response(503, safe_message(exc, settings), "service_unavailable", "store_unavailable")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'bad value')}"
        return _error_response(400, message, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error_response(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        from assistant.chain import safe_message

        log.exception("internal error on %s", request.url.path)
        return _error_response(500, safe_message(exc, settings), "server_error", "internal_error")

    # --- routes
    @app.get("/health", tags=["service"])
    def health() -> dict:
        return {"status": "ok", "generator": settings.resolved_generator, "default_kb": settings.kb,
                "pid": os.getpid()}

    @app.get("/v1/models", tags=["openai"])
    def models() -> dict:
        return {"object": "list", "data": [_model(kb) for kb in service.kbs()]}

    @app.get("/v1/models/{model}", tags=["openai"])
    def model(model: str) -> dict:
        service.assistant(model)
        return _model(model)

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(body: oa.ChatRequest):
        try:
            question, history = oa.conversation(body.messages)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="messages") from None
        answer = await run_in_threadpool(service.ask, body.model, question, history)
        if answer.error:
            raise answer_error(answer)
        if not body.stream:
            return oa.completion(answer, body.model, question, history, body.sources_in_text)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        events = oa.stream_events(answer, body.model, question, history, body.sources_in_text, include_usage)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/search", tags=["knowledge bases"])
    async def search(body: oa.SearchRequest) -> list[dict[str, Any]]:
        query = body.query.strip()
        if not query:
            raise ApiError(400, "The query is empty: please type a query.", code="invalid_question", param="query")
        if len(query) > settings.max_question_chars:
            raise ApiError(413, f"The query is too long ({len(query):,} characters; the limit is "
                           f"{settings.max_question_chars:,}). Please shorten it.", code="question_too_long",
                           param="query")
        k = body.k or settings.top_k
        passages = await run_in_threadpool(service.search, body.kb or settings.kb, query, k)
        return [p.model_dump() for p in passages]

    @app.get("/v1/kbs", tags=["knowledge bases"])
    def kbs() -> list[dict[str, Any]]:
        return [{"name": s["name"], "documents": s["documents"], "passages": s["passages"],
                 "default": s["name"] == settings.kb} for s in service.kb_summaries()]

    @app.get("/v1/kbs/{kb}/documents", tags=["knowledge bases"])
    def documents(kb: str) -> list[dict[str, Any]]:
        return service.documents(kb)

    @app.post("/v1/kbs/{kb}/documents", tags=["knowledge bases"], status_code=202)
    async def upload(kb: str, request: Request):
        """Multipart upload (field `files`, one or more; optional `replace=true`). The files that pass the
        Library page's rules are saved, then the knowledge base is indexed in the background: poll
        `GET /v1/jobs/{id}`. 400 when every file was refused."""
        form = await request.form(max_files=100)
        try:
            files = []
            for item in form.getlist("files") + form.getlist("file"):
                if isinstance(item, str):
                    raise ApiError(400, "`files` must be file parts (multipart/form-data)", param="files")
                files.append((item.filename or "", await item.read()))
            if not files:
                raise ApiError(400, "no file: send one or more `files` parts (multipart/form-data)", param="files")
            replace = str(form.get("replace", "")).lower() in ("1", "true", "yes", "on")
        finally:
            await form.close()  # spooled temporary files go at once
        results, job = await run_in_threadpool(service.upload, kb, files, replace)
        if not any(r["ok"] for r in results):
            refused = "; ".join(f"{r['name']}: {r['message']}" for r in results)
            raise ApiError(400, f"refused: {refused}", code="upload_refused", param="files")
        return JSONResponse({"kb": kb, "files": results, "job": job}, status_code=202 if job else 200)

    @app.delete("/v1/kbs/{kb}/documents/{name:path}", tags=["knowledge bases"])
    def delete_document(kb: str, name: str) -> dict:
        if not service.delete(kb, name):
            raise ApiError(404, f"no document {name!r} in knowledge base {kb!r}", code="document_not_found")
        return {"kb": kb, "deleted": name}

    @app.get("/v1/jobs/{job_id}", tags=["knowledge bases"])
    def job(job_id: str) -> dict:
        found = service.jobs.get(job_id)
        if found is None:
            raise ApiError(404, f"no job {job_id!r}", code="job_not_found")
        return found

    return app


def _model(kb: str) -> dict:
    return {"id": kb, "object": "model", "created": 0, "owned_by": "summit-assistant"}
