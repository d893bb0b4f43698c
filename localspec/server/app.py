"""The HTTP API: OpenAI's chat/completions/models endpoints over one Worker.

Every error a client sees is OpenAI's error object,
`{"error": {"message", "type", "param", "code"}}`: 400 for a request that
cannot be served (FastAPI's 422 included), 401 for a wrong key, 503 with
Retry-After when the queue is full or the target's rpc-servers are gone (until
they answer again), 500 for a bug (its traceback goes to the
server's log, never to the client).

A generation request is queued first and answered when its first event comes
back from the engine thread, so a prompt the engine rejects (too long for the
context, say) is a 400 even when streaming. While it waits, and while it
streams, a client that hangs up cancels its generation at the next step.
"""

import asyncio
import hmac
import inspect
import json
import secrets
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from localspec.errors import LocalspecError
from localspec.reasoning import END, START, Reasoning, reasoning_tokens
from localspec.server import stats, tools
from localspec.server.limits import BodyLimit, body_limit
from localspec.server.logprobs import WithLogprobs, token_bytes_of
from localspec.server.schemas import ChatRequest, CompletionRequest
from localspec.server.toolparse import ToolStream
from localspec.server.worker import Job, QueueFull, Start, Worker

RETRY_AFTER_S = 1
DISCONNECT_POLL_S = 0.25  # how often a queued request checks that its client is still there
PUBLIC_PATHS = ("/health",)
# On shutdown a stream is cancelled, then given this long to send its last
# chunk and [DONE] (less than uvicorn's timeout_graceful_shutdown in serve.py).
SHUTDOWN_GRACE_S = 2.0
_SSE_HAS_GRACE = "shutdown_event" in inspect.signature(EventSourceResponse.__init__).parameters


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class BearerKey:
    """ASGI middleware: with a key set, every path but /health needs
    `Authorization: Bearer KEY`, checked before the body is even read."""

    def __init__(self, app, key: str | None):
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope, receive, send):
        if self.key is not None and scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                response = error_response(
                    401,
                    "Incorrect API key provided.",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _param(loc: tuple) -> str | None:
    """pydantic's ("body", "messages", 0, "role") as OpenAI's "messages[0].role"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _validation_message(err: dict) -> tuple[str, str | None]:
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return f"We could not parse the JSON body of your request: {detail}", None
    param = _param(tuple(err.get("loc", ())))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        return (f"'{param}' is required" if param else "a JSON body is required"), param
    return (f"{param}: {msg}" if param else msg), param


class _Shape:
    """One response's id, timestamps and the objects it is written as."""

    object = ""

    def __init__(self, model: str, method: str, include_usage: bool):
        self.id = self.prefix + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.method = method
        self.include_usage = include_usage

    def _base(self, obj: str, choices: list) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def _stats(self, done: tuple) -> dict:
        _, result, methods, n_prompt = done
        return {
            "timings": stats.timings(result, n_prompt),
            "localspec": stats.localspec_stats(result, methods, self.method),
        }

    def _usage(self, done: tuple) -> dict:
        _, result, _, n_prompt = done
        return stats.usage(result, n_prompt)

    def _usage_chunk(self, done: tuple) -> list[dict]:
        if not self.include_usage:
            return []
        return [{**self._chunk([]), "usage": self._usage(done)}]

    def _chunk(self, choices: list) -> dict:
        out = self._base(self.chunk_object, choices)
        if self.include_usage:
            out["usage"] = None
        return out

    def step(self, text: str, tokens: tuple) -> list[dict]:
        """The chunks of one engine step's text (its tokens: see server/logprobs.py)."""
        return self.piece(text) if text else []


class ChatShape(_Shape):
    """With `reasoning`, a thinking model's reasoning is read apart from its
    answer and returned as `reasoning_content`; by `reasoning_format`, as
    llama-server's: "none" leaves it in `content` as written instead,
    "deepseek-legacy" does both. With `tools` (a ToolStream), the answer alone
    is read for tool calls. Both on the way out, streamed or whole, by the same code."""

    prefix = "chatcmpl-"
    chunk_object = "chat.completion.chunk"

    def __init__(
        self,
        model: str,
        method: str,
        include_usage: bool,
        tools: ToolStream | None,
        metrics: stats.Metrics,
        reasoning: Reasoning | None = None,
        reasoning_format: str = "deepseek",
    ):
        super().__init__(model, method, include_usage)
        self.tools = tools
        self.metrics = metrics
        self.reasoning = reasoning
        self.split = reasoning.split() if reasoning else None
        self.apart = reasoning_format != "none"  # the reasoning given as reasoning_content
        self.as_written = reasoning_format in ("none", "deepseek-legacy")  # and kept in content, tags and all
        self._written = ""  # (as_written) text read and not yet given out

    def _delta(self, delta: dict, finish: str | None = None) -> dict:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def opening(self) -> list[dict]:
        return [self._delta({"role": "assistant", "content": ""})]

    def piece(self, text: str) -> list[dict]:
        return self._parts(*self._separate(text))

    def _separate(self, text: str, last: bool = False) -> tuple[str, str, str]:
        """(reasoning, written, answer) of `text`, read on from what came
        before: `written` is the reasoning left in content as written, tags and all."""
        if self.split is None:
            return "", "", text
        reasoning, answer = self.split.finish() if last else self.split.push(text)
        reasoning = reasoning if self.apart else ""
        if not self.as_written:
            return reasoning, "", answer
        self._written += text
        if self.split.deciding:
            return reasoning, "", ""
        written, self._written = self._written[: len(self._written) - len(answer)], ""
        return reasoning, written, answer

    def _parts(self, reasoning: str, written: str, answer: str) -> list[dict]:
        out = [self._delta({"reasoning_content": reasoning})] if reasoning else []
        out += [self._delta({"content": written})] if written else []
        if not answer:
            return out
        if self.tools is None:
            return [*out, self._delta({"content": answer})]
        return [*out, *(self._delta(d) for d in self.tools.push(answer))]

    def _usage(self, done: tuple) -> dict:
        _, result, _, n_prompt = done
        n = reasoning_tokens(self.reasoning, result.pieces) if self.reasoning else 0
        return stats.usage(result, n_prompt, reasoning_tokens=n)

    def _finish_reason(self, result) -> str:
        if self.tools is None:
            return stats.finish_reason(result)
        self.metrics.add(tool_calls=len(self.tools.calls), tool_calls_malformed=self.tools.malformed)
        return "tool_calls" if self.tools.calls else stats.finish_reason(result)

    def closing(self, done: tuple) -> list[dict]:
        rest = self._parts(*self._separate("", last=True))
        rest += [self._delta(d) for d in self.tools.finish()] if self.tools else []
        final = {**self._delta({}, self._finish_reason(done[1])), **self._stats(done)}
        return [*rest, final, *self._usage_chunk(done)]

    def whole(self, done: tuple) -> dict:
        result = done[1]
        (r, w, a), (r2, w2, a2) = self._separate(result.text), self._separate("", last=True)
        reasoning, written, answer = r + r2, w + w2, a + a2
        if self.tools is None:
            message = {"role": "assistant", "content": written + answer}
        else:
            self.tools.push(answer)
            self.tools.finish()
            message = self.tools.message()
            if written:
                message["content"] = written + (message["content"] or "")
        if reasoning:
            message["reasoning_content"] = reasoning
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason(result)}
        return {
            **self._base("chat.completion", [choice]),
            "usage": self._usage(done),
            **self._stats(done),
        }


class CompletionShape(_Shape):
    prefix = "cmpl-"
    chunk_object = "text_completion"

    def _text(self, text: str, finish: str | None = None) -> dict:
        return self._chunk([{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])

    def opening(self) -> list[dict]:
        return []

    def piece(self, text: str) -> list[dict]:
        return [self._text(text)]

    def closing(self, done: tuple) -> list[dict]:
        final = {**self._text("", stats.finish_reason(done[1])), **self._stats(done)}
        return [final, *self._usage_chunk(done)]

    def whole(self, done: tuple) -> dict:
        _, result, _, n_prompt = done
        choice = {"text": result.text, "index": 0, "logprobs": None, "finish_reason": stats.finish_reason(result)}
        return {
            **self._base("text_completion", [choice]),
            "usage": stats.usage(result, n_prompt),
            **self._stats(done),
        }


def _data(obj: Any) -> dict:
    return {"data": json.dumps(obj, ensure_ascii=False)}


def create_app(worker: Worker, api_key: str | None = None) -> FastAPI:
    engine = worker.engine
    metrics = worker.metrics
    model_name = engine.target_name
    created = int(time.time())
    n_ctx = engine.target_ctx.n_ctx
    token_bytes = token_bytes_of(engine.target)
    template_tools = tools.TemplateTools.probe(model_name, engine.chat_template)
    call_tags = engine.single_tokens(template_tools.family.markers if template_tools.family else ())
    think_tags = engine.single_tokens((START, END))

    app = FastAPI(title="localspec", docs_url=None, redoc_url=None)
    # The last added runs first: the key is checked before the body is read.
    app.add_middleware(
        BodyLimit, limit=body_limit(n_ctx), n_ctx=n_ctx, on_refuse=lambda: metrics.add(invalid_requests=1)
    )
    app.add_middleware(BearerKey, key=api_key)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.add(invalid_requests=1)
        errors = exc.errors()
        message, param = _validation_message(errors[0]) if errors else ("invalid request", None)
        return error_response(400, message, param=param)

    @app.exception_handler(LocalspecError)
    async def _refused(request: Request, exc: LocalspecError):
        metrics.add(invalid_requests=1)
        return error_response(400, str(exc), param=getattr(exc, "param", None))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        metrics.add(invalid_requests=1)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        metrics.add(errors=1)
        return error_response(500, f"internal server error: {type(exc).__name__}", type_="server_error")

    def model_object() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "localspec"}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "running": worker.running, "waiting": worker.waiting}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_object()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id != model_name:
            return error_response(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return model_object()

    @app.get("/metrics")
    async def prometheus():
        gauges = {
            "requests_running": ("Generations running now (0 or 1).", worker.running),
            "requests_waiting": ("Requests waiting for the engine.", worker.waiting),
            "queue_limit": ("Requests allowed to wait (--queue).", worker.max_waiting),
        }
        return PlainTextResponse(metrics.exposition(gauges), media_type="text/plain; version=0.0.4")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        plan = tools.plan(body, template_tools)
        options = body.options(body.token_limit(n_ctx))
        if plan.parses:
            if options.grammar:  # (as llama-server: one grammar holds a reply, the tools' or the request's)
                raise tools.RequestError("give tools or a grammar/response_format, not both (or tool_choice none)", "tools")
            options.shown_specials = call_tags
            options.grammar, options.grammar_trigger = plan.grammar, plan.trigger
        # Off the event loop (a long history takes a while), and safe beside the
        # engine's thread: the template and the vocabulary alone.
        prompt = await asyncio.to_thread(engine.render_chat, plan.messages, plan.tools, body.template_kwargs())
        options.reasoning = Reasoning.of(engine.chat_template, prompt)
        if options.reasoning:
            options.shown_specials |= think_tags
        shape = ChatShape(
            model_name, engine.method, body.include_usage, plan.stream(), metrics,
            options.reasoning, body.reasoning_format or "deepseek",
        )  # fmt: skip
        shape = with_logprobs(shape, options)
        return await generate(
            request, body.stream, shape, lambda eng, cancel: eng.chat(plan.messages, options, cancel, rendered=prompt)
        )

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompt = body.prompt
        options = body.options(body.token_limit(n_ctx))
        shape = with_logprobs(CompletionShape(model_name, engine.method, body.include_usage), options, legacy=True)
        return await generate(request, body.stream, shape, lambda eng, cancel: eng.complete(prompt, options, cancel))

    def with_logprobs(shape: _Shape, options, legacy: bool = False):
        return WithLogprobs(shape, token_bytes, legacy) if options.logprobs is not None else shape

    async def generate(request: Request, stream: bool, shape: _Shape, start: Start) -> Response:
        job = Job(start=start, loop=asyncio.get_running_loop(), stream=stream)
        try:
            worker.submit(job)
        except QueueFull:
            metrics.add(requests_rejected=1)
            return error_response(
                503,
                f"The server is busy: {worker.max_waiting} requests are already waiting. Retry later.",
                type_="server_error",
                code="queue_full",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            first = await next_or_hangup(job, request)
        except BaseException:  # the handler itself cancelled (shutdown)
            job.cancel.set()
            raise
        if first is None:
            return Response(status_code=499)  # nobody is listening any more
        if first[0] != "step" and first[0] != "done":
            return failure(first)
        if not stream:
            return JSONResponse(shape.whole(first))
        shutdown = anyio.Event() if _SSE_HAS_GRACE else None
        grace = {"shutdown_event": shutdown, "shutdown_grace_period": SHUTDOWN_GRACE_S} if shutdown else {}
        return EventSourceResponse(events(job, first, shape, shutdown), sep="\n", **grace)

    async def next_or_hangup(job: Job, request: Request):
        """The job's next message, or None (and the job cancelled) if the client left."""
        getter = asyncio.ensure_future(job.out.get())
        while True:
            done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_S)
            if done:
                return getter.result()
            if await request.is_disconnected():
                getter.cancel()
                job.cancel.set()
                return None

    def failure(item: tuple) -> JSONResponse:
        kind, exc = item
        if kind == "invalid":
            metrics.add(invalid_requests=1)
            return error_response(400, str(exc))
        if kind == "unavailable":
            # Each request tries the servers again (Engine.generate), so a client that retries gets through once they are back.
            return error_response(503, str(exc), type_="server_error", code="backend_unavailable",
                                  headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        return error_response(500, f"internal server error: {type(exc).__name__}", type_="server_error")

    async def events(job: Job, first: tuple, shape: _Shape, shutdown: anyio.Event | None):
        # sse-starlette cancels this generator when the client disconnects;
        # `finally` then stops the generation at its next step. On shutdown
        # the generation is stopped the same way and the stream ends normally.
        watcher = asyncio.ensure_future(cancel_when(shutdown, job)) if shutdown else None
        try:
            for obj in shape.opening():
                yield _data(obj)
            item = first
            while item[0] == "step":
                for obj in shape.step(item[1], item[2]):
                    yield _data(obj)
                item = await job.out.get()
            if item[0] == "done":
                for obj in shape.closing(item):
                    yield _data(obj)
            else:
                yield _data(json.loads(failure(item).body))
            yield {"data": "[DONE]"}
        finally:
            job.cancel.set()
            if watcher:
                watcher.cancel()

    async def cancel_when(event: anyio.Event, job: Job) -> None:
        await event.wait()
        job.cancel.set()

    return app
