#!/usr/bin/env bash
# What the device `run` calls execute on the GPU host (benchmarks/GPU_KIT.md; the calls themselves are printed
# by `python benchmarks/gpu_kit_prepare.py make`):
#
#   bash benchmarks/gpu_kit.sh store          every call but the last: keep the teacher's part carried in it in /tmp
#   bash benchmarks/gpu_kit.sh run [BUDGET]   the last call: join and check the teacher, install the carried wheels,
#                                             convert the teacher, run gpu_check.py on CUDA for BUDGET s (240)
#
# Results land in $OUT: gpu_report.json (written as it goes), device_vectors.tar (the CUDA-made vectors),
# gpu_kit.log (all output). Exit status: gpu_check's (1: a check failed), or 3-6 for a kit step that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_kit_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export LMZIP_RUNTIME=reference                 # the torch reference model on every device (the oracle on the CPU)
export LMZIP_HOME=${LMZIP_HOME:-/tmp/lmzip_home}  # the converted teacher, tables, sha256 records
export LMZIP_WHEEL_DIR=${LMZIP_WHEEL_DIR:-/tmp/gpu_kit/wheel}  # where `join` puts the teacher's source wheel
SITE=/tmp/gpu_kit_site
# For a rehearsal on a CPU machine (GPU_KIT.md): GPU_KIT_DEVICE=cpu GPU_KIT_ARGS=--tiny GPU_KIT_SKIP_WHEELS=1
DEVICE=${GPU_KIT_DEVICE:-cuda}
EXTRA=${GPU_KIT_ARGS:-}

case "${1:-}" in
  store) exec "$PY" benchmarks/gpu_kit_prepare.py store ;;
  run) ;;
  *) echo "usage: $0 store | run [BUDGET_S]" >&2; exit 2 ;;
esac
BUDGET=${2:-240}
T0=$(date +%s)
log() { echo "[gpu_kit +$(( $(date +%s) - T0 )) s] $*"; }

kit() {
  log "host $(uname -n), $("$PY" --version 2>&1), $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  # 0. The native coder and predictor, built from source for this Python (an extension built here is
  #    for 3.11), in the background while the teacher is joined and converted: on a GPU the host's side
  #    of every step runs natively when it is there (codec.coding_native), in numpy when it is not.
  local native_pid=""
  if [ -z "${GPU_KIT_SKIP_NATIVE:-}" ]; then
    ( LMZIP_BUILD_JOBS=$(nproc) "$PY" setup.py -q build_ext --inplace > /tmp/native_build.log 2>&1 ) &
    native_pid=$!
  fi
  # 1. The teacher's parts: joined and checked first (a cold machine lost the stored part: fail in seconds).
  "$PY" benchmarks/gpu_kit_prepare.py join || return 3
  # 2. The wheels the host lacks (constriction, zstandard, gguf, platformdirs), on PYTHONPATH.
  if [ -n "${GPU_KIT_SKIP_WHEELS:-}" ]; then
    log "wheels: using what this Python has (GPU_KIT_SKIP_WHEELS)"
  elif ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu_kit/wheels/*.whl; then
    log "pip install failed; unpacking the wheels instead"
    "$PY" -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" "$SITE" .gpu_kit/wheels/*.whl || return 4
  fi
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import constriction, zstandard, gguf, platformdirs, torch, lmzip.coding.codec; print('imports ok: torch', torch.__version__, 'cuda', torch.cuda.is_available())" || return 5
  # 3. The teacher converted and checked against models/registry.json (seconds; skipped if already there).
  "$PY" -c "
import time; t = time.time()
from lmzip.model import zoo
print('teacher:', zoo.pull('smollm2-135m'), f'({time.time() - t:.1f} s)')" || return 6
  if [ -n "$native_pid" ]; then
    wait "$native_pid"
    if "$PY" -c "from lmzip import native; assert native.available(), native.unavailable_reason()" 2>>/tmp/native_build.log; then
      log "native coder and predictor built ($(ls lmzip/native/_native*.so 2>/dev/null | head -1))"
    else
      log "native build failed (tail of native_build.log below); the host's side runs in numpy"
      tail -5 /tmp/native_build.log
    fi
  fi
  log "teacher in place; gpu_check.py for ${BUDGET} s"
  # 4. The check itself; timeout only as a last resort (it stops itself at its budget).
  # shellcheck disable=SC2086  # EXTRA is a list of options
  timeout -k 10 $(( BUDGET + 60 )) "$PY" benchmarks/gpu_check.py --device "$DEVICE" --out "$OUT" --budget-s "$BUDGET" $EXTRA
  local rc=$?
  log "gpu_check.py exit status $rc; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
  return $rc
}

kit 2>&1 | tee "$OUT/gpu_kit.log"
exit "${PIPESTATUS[0]}"
