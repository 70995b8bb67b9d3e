#!/usr/bin/env bash
# The Triton kernels on a real GPU, in one command (issue 13): tests on CUDA with TRITON_INTERPRET=0,
# then forward + backward timings against the peers, written to $OUT (or benchmarks/results).
#   bash benchmarks/gpu_check.sh            on a CUDA machine (H100/H200 class: under 8 minutes)
#   bash benchmarks/gpu_check.sh --dry-run  anywhere: the same code paths on the CPU under
#                                           TRITON_INTERPRET=1 at tiny sizes (CI runs this)
# The GPU machine has torch, triton, torchvision, pytest, hypothesis and mpmath; kornia and fvcore,
# if wanted, travel as wheels in .whl/ (see the device README); nothing is fetched.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/fk-site .whl/*.whl && \
        export PYTHONPATH=/tmp/fk-site:${PYTHONPATH:-}
fi
# 1. focalkit itself: an editable install builds the native kernel; where pip cannot, the source tree.
if ! $PY -c "import focalkit" 2>/dev/null; then
    $PY -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
fi
if [ $DRY = 1 ]; then
    export TRITON_INTERPRET=1
    TESTS="tests/backends/test_triton.py tests/backends/test_triton_device.py"
else
    export TRITON_INTERPRET=0
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 2
    TESTS="tests/backends/test_triton.py tests/backends/test_triton_device.py tests/test_autograd.py"
fi
# 2. the tests (the conftest keeps TRITON_INTERPRET as set here)
$PY -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tee "$DEST/gpu_tests.log"
rc_tests=${PIPESTATUS[0]}
# 3. the timings
ARGS="--out $DEST"
[ $DRY = 1 ] && ARGS="$ARGS --dry-run"
$PY benchmarks/bench_gpu.py $ARGS 2>&1 | tee "$DEST/gpu_bench.log"
rc_bench=${PIPESTATUS[0]}
echo "gpu_check: tests rc=$rc_tests, bench rc=$rc_bench; results in $DEST"
[ $rc_tests = 0 ] && [ $rc_bench = 0 ]
