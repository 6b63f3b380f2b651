"""Schemas that would take the engine down under the outlines backend are refused first.

outlines builds a DFA from each schema's regex, inside the engine process. For some
ordinary schemas (``{"type": "string", "maxLength": 24}``) that DFA grows exponentially:
vLLM gives up on the request after its compile timeout but cannot stop the build, which
runs on in its thread until an allocation fails and the process aborts, ending every
tenant's requests (docs/upstream/outlines-crash.md). Other schemas build millions of
transitions or take seconds. Which ones do is a property of the automaton, not of a short
list of schema features, so each new client schema is built once in a child process under
a time and memory limit (``outlines_probe``) and its verdict cached by digest.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from gateway import errors
from gateway.common.schema_checks import outlines_hazard, uses_keyword
from gateway.service.outlines_probe import MEMORY_EXIT
from gateway.service.schemas import ResolvedSchema

PROBE = Path(__file__).with_name("outlines_probe.py")
PARAM = "response_format.json_schema.schema"


@dataclass(frozen=True)
class ProbeLimits:
    """What a schema's automaton may cost. Within them the engine builds it well inside
    vLLM's 5 s compile timeout; its walk of the real vocabulary grows with ``max_states``
    (a 1,658-state schema: 0.7-2.6 s and 3.3 million transitions for a 49k vocabulary)."""

    seconds: float = 2.0
    memory_bytes: int = 1 << 30
    max_states: int = 2000
    max_running: int = 2  # probes at once, so distinct new schemas cannot fork without bound
    cache_size: int = 4096


def needs_probe(backend: str, schema: ResolvedSchema) -> bool:
    """Client schemas that can reach outlines: all of them under ``outlines``; under
    ``auto``, those with ``patternProperties`` (vLLM sends a schema that xgrammar refuses
    to outlines exactly then, for tokenizers like ours)."""
    if not schema.inline:
        return False  # an operator's schema is trusted as configured
    if backend == "outlines":
        return True
    return backend == "auto" and uses_keyword(schema.schema, "patternProperties")


class OutlinesGuard:
    def __init__(self, backend: str, limits: ProbeLimits | None = None) -> None:
        self.backend = backend
        self.limits = limits or ProbeLimits()
        self.num_probes = 0
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()  # digest -> refusal
        self._pending: dict[str, asyncio.Task[str | None]] = {}
        self._running = asyncio.Semaphore(self.limits.max_running)

    async def check(self, schema: ResolvedSchema) -> None:
        """Raise ``SchemaUnsupported`` if outlines cannot build ``schema``'s automaton
        within the limits. Concurrent requests with one new schema share one probe."""
        if not needs_probe(self.backend, schema):
            return
        if schema.digest in self._verdicts:
            self._verdicts.move_to_end(schema.digest)
            refusal = self._verdicts[schema.digest]
        else:
            task = self._pending.get(schema.digest)
            if task is None:
                task = asyncio.ensure_future(self._probe(schema))
                self._pending[schema.digest] = task
            refusal = await asyncio.shield(task)  # a cancelled waiter leaves it to others
        if refusal is not None:
            raise errors.SchemaUnsupported(refusal, param=PARAM)

    async def _probe(self, schema: ResolvedSchema) -> str | None:
        try:
            async with self._running:
                self.num_probes += 1
                refusal = await self._run(schema)
            self._verdicts[schema.digest] = refusal
            while len(self._verdicts) > self.limits.cache_size:
                self._verdicts.popitem(last=False)
            return refusal
        finally:
            del self._pending[schema.digest]

    async def _run(self, schema: ResolvedSchema) -> str | None:
        limits = self.limits
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", str(PROBE), str(limits.memory_bytes),
            str(math.ceil(limits.seconds) + 1),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(json.dumps(schema.schema).encode()), limits.seconds
            )
        except TimeoutError:
            return self._refusal(schema, f"did not finish within {limits.seconds:g} s")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        # An allocation that fails in native code aborts the process (as in the engine).
        if proc.returncode in (MEMORY_EXIT, -signal.SIGABRT):
            return self._refusal(schema, f"needs more than {limits.memory_bytes >> 20} MiB")
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # its CPU time limit
            return self._refusal(schema, f"did not finish within {limits.seconds:g} s")
        if proc.returncode != 0:  # the probe failed, not the schema: say so, loudly
            raise RuntimeError(f"the outlines probe failed: {err.decode()[-500:]}")
        found = json.loads(out)
        if "error" in found:
            return f"the outlines backend cannot enforce this schema: {found['error']}"
        if found["states"] > limits.max_states:
            return self._refusal(
                schema, f"has {found['states']} states; the limit is {limits.max_states}"
            )
        return None

    @staticmethod
    def _refusal(schema: ResolvedSchema, what: str) -> str:
        hazard = outlines_hazard(schema.schema)
        cause = f"; likely cause: {hazard}" if hazard else ""
        return (
            f"the outlines backend cannot compile this schema safely: its automaton {what}"
            f"{cause}. Use fewer or smaller length bounds and repetitions, or a deployment "
            "with the xgrammar backend"
        )
