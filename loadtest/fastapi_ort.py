"""The strongest Python peer of skl2go: the same model.onnx behind FastAPI +
uvicorn + ONNX Runtime, the way their documentation recommends.

    python -m loadtest.fastapi_ort [--models models] [--bind 127.0.0.1:28081] [--workers N]

One uvicorn worker process per core, each with one InferenceSession per
model (one intra-op thread: processes use the cores, as the Go replicas do),
an async endpoint reading the raw body and answering with orjson, on uvloop
and httptools (what `pip install 'uvicorn[standard]'` brings, named
explicitly so that uvicorn never falls back to asyncio's loop and pure-Python
h11, slower and costlier per request: BENCHMARKS.md). Same API
shape and same 4xx errors as the gunicorn baseline: the body is parsed and
checked by loadtest/baseline.py's own functions, so both refuse bad input
alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from loadtest import baseline
from loadtest.baseline import ClientError, Served
from train import repository


def load_session(version_dir: Path, meta: dict) -> ort.InferenceSession:
    """One InferenceSession on the version's model.onnx, one thread per run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = version_dir / meta.get("files", {}).get("onnx", {}).get("path", repository.MODEL_FILE)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predictions(model: Served, feeds: dict[str, np.ndarray]) -> list:
    """One answer per row, as the baseline and the Go server give them."""
    outputs = model.pipeline.run(None, feeds)
    if model.task == "classification":
        labels, probabilities = outputs[0].tolist(), outputs[1].tolist()
        return [{"label": label, "probabilities": p} for label, p in zip(labels, probabilities)]
    return outputs[0].reshape(-1).tolist()


def create_app(models_dir: str | Path | None = None) -> FastAPI:
    """The peer app serving the latest version of every model in models_dir
    (default: $SKL2GO_BASELINE_MODELS, else ./models)."""
    warnings.filterwarnings("ignore", message="Found unknown categories")
    models = baseline.load_latest(models_dir or os.environ.get("SKL2GO_BASELINE_MODELS", "models"), load=load_session)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> Response:
        return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> Response:
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        messages = {404: f"no such endpoint: {request.method} {request.url.path}",
                    405: f"method {request.method} not allowed"}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/v1/models/{rest:path}")
    async def predict(rest: str, request: Request) -> Response:
        if not rest.endswith(":predict"):
            raise ClientError(404, f"no such endpoint: POST {request.url.path}")
        model = baseline.find(models, rest.removesuffix(":predict"))
        content_type = request.headers.get("content-type")
        if content_type and content_type.split(";")[0].strip() != "application/json":
            raise ClientError(415, f"Content-Type must be application/json, got {content_type}")
        body = await request.body()
        if len(body) > baseline.MAX_BODY_BYTES:
            raise ClientError(413, f"request body too large: the limit is {baseline.MAX_BODY_BYTES} bytes")
        columns = baseline.decode_columns(model, baseline.parse_body(body))
        feeds = {name: column.reshape(-1, 1) for name, column in columns.items()}
        payload = {"predictions": predictions(model, feeds), "model": model.name, "version": model.version}
        return Response(orjson.dumps(payload), media_type="application/json")

    return app


def uvicorn_command(models_dir: str | Path, bind: str, workers: int | None = None) -> list[str]:
    """uvicorn with one worker process per core, serving create_app(models_dir)."""
    host, port = bind.rsplit(":", 1)
    return [sys.executable, "-m", "uvicorn", "--factory", "loadtest.fastapi_ort:app_from_env",
            "--host", host, "--port", port, "--workers", str(workers or os.cpu_count() or 1),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]


def uvicorn_env(models_dir: str | Path) -> dict[str, str]:
    """The baseline's one-thread environment, and the models for the factory."""
    return {**baseline.gunicorn_env(), "SKL2GO_BASELINE_MODELS": str(Path(models_dir).resolve())}


def app_from_env() -> FastAPI:
    """uvicorn's --factory entry: the models from $SKL2GO_BASELINE_MODELS."""
    return create_app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fastapi_ort", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models", help="model repository (default: models)")
    parser.add_argument("--bind", default="127.0.0.1:28081", help="address to listen on")
    parser.add_argument("--workers", type=int, default=None, help="uvicorn workers (default: one per core)")
    args = parser.parse_args(argv)
    command = uvicorn_command(args.models, args.bind, args.workers)
    os.execve(command[0], command, uvicorn_env(args.models))


if __name__ == "__main__":
    main()
