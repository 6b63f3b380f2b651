from __future__ import annotations

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
