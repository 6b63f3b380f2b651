"""vLLM's own scheduler series, under vLLM's names, for routers that pick a server by them.

The Kubernetes Gateway API Inference Extension's endpoint picker (llm-d's scorers) reads
``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``
and, for LoRA affinity, ``vllm:lora_requests_info{max_lora, running_lora_adapters,
waiting_lora_adapters}`` from each server's ``/metrics``. The engine runs in-process here,
so vLLM's own Prometheus loggers are not installed; these are set from the same scheduler
stats vLLM's would read (names, labels and meanings as in ``vllm/v1/metrics/loggers.py``,
vllm 0.32).

One difference: the adapter lists name adapters as clients call them (``banking77``, or
``name@version`` for a version that is not current), since that is what a router compares
with a request's ``model``; vLLM lists its internal LoRA names. And where vLLM adds a new
``vllm:lora_requests_info`` series per distinct label set (the newest has the latest
timestamp as its value), only the newest is kept here, so the page does not grow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge

LABELS = ("model_name", "engine")


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.",
            LABELS, registry=registry,
        )  # fmt: skip
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            LABELS, registry=registry,
        )  # fmt: skip
        self.kv_cache = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
            LABELS, registry=registry,
        )  # fmt: skip
        self.lora_info = Gauge(
            "vllm:lora_requests_info", "Running stats on lora requests.",
            ("max_lora", "waiting_lora_adapters", "running_lora_adapters"), registry=registry,
        )  # fmt: skip
        # record() runs once per engine step, in the event loop beside the requests: a
        # ``labels()`` lookup takes a lock and builds a key, so the children are kept.
        self._children: dict[str, tuple[Gauge, Gauge, Gauge]] = {}
        self._lora_key: tuple[str, str, str] | None = None
        self._lora_child: Gauge | None = None

    def record(
        self,
        model_name: str,
        *,
        running: int,
        waiting: int,
        kv_cache_usage: float,
        max_lora: int,
        running_adapters: Iterable[str],
        waiting_adapters: Iterable[str],
        public_name: Callable[[str], str],
    ) -> None:
        children = self._children.get(model_name)
        if children is None:
            labels = {"model_name": model_name, "engine": "0"}
            children = (self.running.labels(**labels), self.waiting.labels(**labels),
                        self.kv_cache.labels(**labels))  # fmt: skip
            self._children[model_name] = children
        children[0].set(running)
        children[1].set(waiting)
        children[2].set(kv_cache_usage)
        key = (
            str(max_lora),
            ",".join(dict.fromkeys(map(public_name, waiting_adapters))),
            ",".join(dict.fromkeys(map(public_name, running_adapters))),
        )
        if key != self._lora_key or self._lora_child is None:
            self.lora_info.clear()  # only the newest label set stays
            self._lora_child = self.lora_info.labels(
                max_lora=key[0], waiting_lora_adapters=key[1], running_lora_adapters=key[2]
            )
            self._lora_key = key
        self._lora_child.set_to_current_time()
