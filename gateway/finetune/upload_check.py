"""Reading an uploaded training file the way training will, outside the gateway's process.

``python -m gateway.finetune.upload_check <file>`` runs the training readers on the file
and prints one JSON line: ``{"rows": n}``, or ``{"error": message}`` for data training
could not read. Every failure the data can cause is such an answer naming the line (a
row nested too deeply for the JSON reader, a CSV field over the ``csv`` module's limit,
an integer too long to read), not a crash; anything else exits non-zero.

Why a process: the readers hold every row in memory and take seconds on a large file
(issue 33: 1,000,000 rows took the gateway from 795 MB to 1.5 GB and another tenant's
classify from 0.09 s to 2-4 s while a thread read them). A child process takes that
memory with it when it exits, runs at nice 19, and never holds the event loop's
interpreter lock.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.common.usage import UsageError
from gateway.training.data import load_examples

log = logging.getLogger(__name__)
CHECK = (sys.executable, "-m", "gateway.finetune.upload_check")
NICE = 19  # CPU when serving leaves some (at nice 10 a neighbour's classify p50 doubled)
# What a row's content can make the readers raise (beyond their own UsageError):
# JSON nested past the interpreter's recursion limit, an integer over 4,300 digits
# (ValueError), a CSV field over 131,072 characters (csv.Error).
DATA_ERRORS = (RecursionError, ValueError, csv.Error)


def count_rows(path: Path) -> dict[str, Any]:
    """``{"rows": n}`` or ``{"error": message}``; messages name ``path`` and the line."""
    try:
        return {"rows": len(load_examples(path, confidence=0.9))}
    except UsageError as exc:
        return {"error": str(exc)}
    except DATA_ERRORS as exc:
        line = _failing_line(path)
        where = f"{path}:{line}" if line else str(path)
        return {"error": f"{where}: {_reason(exc)}"}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    if isinstance(exc, csv.Error):
        return f"not readable as CSV ({exc})"
    return f"a value cannot be read ({str(exc)[:80]})"  # e.g. an integer of 5,000 digits


def _failing_line(path: Path) -> int | None:
    """The line (as an editor counts them) the readers could not get past."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            for _row in reader:
                pass
        except csv.Error:
            return reader.line_num
        return None
    for number, line in enumerate(text.splitlines(), start=1):  # the readers' own split
        try:
            _decode_row(line)
        except DATA_ERRORS:
            return number
    return None


def _decode_row(line: str) -> None:
    """What the readers decode of a row: the row, and the answer inside it."""
    if not line.strip():
        return
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return  # the readers say so themselves
    if not isinstance(row, dict):
        return
    messages = row.get("messages")
    answers = [row.get("completion")]
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        answers.append(messages[-1].get("content"))
    for answer in answers:
        if isinstance(answer, str):
            with contextlib.suppress(json.JSONDecodeError):
                json.loads(answer)


def check_in_child(path: Path, timeout_s: float) -> dict[str, Any]:
    """``count_rows`` in a child process at a lower priority. A child that crashes or
    runs past ``timeout_s`` is the gateway's failure: a typed 500 with an error id."""
    command = ["nice", "-n", str(NICE), *CHECK, str(path)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise errors.traced(
            errors.GatewayError, f"reading the upload took over {timeout_s:g} s", log, exc
        ) from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace")[-2000:]
        log.error("the upload check exited with %s: %s", done.returncode, detail)
        raise errors.traced(errors.GatewayError, "the upload could not be read", log)
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    print(json.dumps(count_rows(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
