"""A throwaway S3-compatible server on loopback for the object-storage tests.

moto's server mode (``python -m moto.server``, from ``moto[server]``) answers the real S3
HTTP API, so the tests drive boto3 unmocked, over a socket, as a replica would drive S3
or MinIO. It keeps everything in memory and is gone when the process stops. It accepts
any credentials; the tests pass dummy ones to the client explicitly (``S3Server``'s
fields), never through the process environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"  # dummies: moto accepts any credentials
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION


def require_moto_server() -> None:
    """moto with its server extra (flask), or a skip (a failure under CI)."""
    missing = [m for m in ("moto", "flask", "flask_cors") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"moto[server] is not installed (missing {', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def s3_server(timeout_s: float = 30) -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port, yield it once it answers, stop it."""
    require_moto_server()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(tempfile.gettempdir()),
        )  # fmt: skip
        try:
            _wait(process, url, log, timeout_s)
            yield S3Server(url)
        finally:
            process.terminate()  # moto exits cleanly on SIGTERM
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait(process: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as answer:
                answer.read()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > end:
                raise RuntimeError(f"moto server did not answer at {url}: {_tail(log)}") from None
            time.sleep(0.1)


def _tail(log: IO[bytes]) -> str:
    """The end of what the server printed (the file it writes to, read from the start)."""
    log.seek(0)
    return log.read()[-2000:].decode("utf-8", "replace")
