"""Child process of ``grammar_guard``: builds outlines' automaton for one JSON Schema under
an address-space and CPU limit, and prints what it found as one JSON line.

Run as a script (``python -I outlines_probe.py MEMORY_BYTES CPU_SECONDS``, the schema on
stdin), so that it imports only the standard library and ``outlines_core``, never the
gateway: it starts in tens of milliseconds and holds no more than the automaton.

The vocabulary is the 256 single bytes. The blow-ups found (docs/upstream/outlines-crash.md)
are in the regex-to-DFA step, which does not depend on the vocabulary; the engine's own
walk of its vocabulary then costs in proportion to the states counted here.

Exit status 0 with ``{"states": n}`` or ``{"error": message}`` (outlines refuses the
schema); ``{"limit": "memory"}`` with status 3; killed by a signal when a limit is hit in
native code (an allocation failure aborts the process).
"""

from __future__ import annotations

import json
import resource
import sys

MEMORY_EXIT = 3


def main() -> int:
    memory_bytes, cpu_s = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    import outlines_core
    import outlines_core.json_schema

    schema = sys.stdin.read()
    vocabulary = outlines_core.Vocabulary(256, {bytes([b]): [b] for b in range(256)})
    try:
        regex = outlines_core.json_schema.build_regex_from_schema(schema)
        index = outlines_core.Index(regex, vocabulary)
    except MemoryError:
        print(json.dumps({"limit": "memory"}))
        return MEMORY_EXIT
    except ValueError as exc:  # what vLLM reports as "cannot enforce this schema"
        print(json.dumps({"error": str(exc)[:300]}))
        return 0
    print(json.dumps({"states": len(index.get_transitions())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
