from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.cli import build_parser, main


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["model", "pull", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    assert "usage: gateway" in capsys.readouterr().out


def test_serve_flags_parse() -> None:
    args = build_parser().parse_args(["serve", "--port", "9000", "--adapter", "demo=v2"])
    assert (args.port, args.adapter) == (9000, ["demo=v2"])


def test_keys_new_and_hash_agree(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import json

    assert main(["keys", "new"]) == 0
    made = json.loads(capsys.readouterr().out)
    monkeypatch.setattr("sys.stdin", io.StringIO(made["api_key"] + "\n"))
    assert main(["keys", "hash"]) == 0
    assert capsys.readouterr().out.strip() == made["key_hash"]


def test_serve_refuses_a_request_head_over_max_header_bytes() -> None:
    """uvicorn as ``gateway serve`` configures it, in front of a trivial app: a request
    head still incomplete past the cap is refused and never reaches the app (finding 9 of
    issue 21: uvicorn's default httptools parser buffered a header of any size)."""
    import socket
    import threading

    import uvicorn

    from gateway.cli.listeners import serve_options
    from gateway.config import Settings

    seen: list[str] = []

    async def app(scope: dict, receive: object, send: Callable) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    options = {**serve_options(Settings(max_header_bytes=2048)), "lifespan": "off"}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    listener = socket.create_server(("127.0.0.1", 0))  # bound before the server runs
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()

    def status(path: str, pad: int, end: str) -> bytes:
        """The status line answering a head with a ``pad``-byte header, sent up to ``end``
        (nothing, when the head is left incomplete as a slow or hostile client leaves it)."""
        with socket.create_connection(listener.getsockname(), timeout=30) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * pad}{end}".encode())
            return conn.recv(64).split(b"\r\n")[0]

    try:
        assert status("/small", 1500, "\r\n\r\n") == b"HTTP/1.1 200 OK"
        assert status("/big", 4096, "") == b"HTTP/1.1 400 Bad Request"
    finally:
        server.should_exit = True
        thread.join()
        listener.close()
    assert seen == ["/small"]
