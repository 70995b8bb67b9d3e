#!/usr/bin/env bash
# The GPU path in one command: the Triton, autograd, compile and GPU-scenario tests on CUDA
# (TRITON_INTERPRET=0), then the workload table against the peers, written to $OUT (or
# benchmarks/results): gpu_run.log (every stage's output, in order), gpu_tests.xml, gpu.json, gpu_results.md,
# gpu_host.json, gpu_host.md, gpu_tuning.json (the switches that wait for a GPU, decided) and gpu_summary.md:
# eight files, the most the lent GPU machine sends back from $OUT.
#   bash benchmarks/gpu_check.sh            on a CUDA machine (H100 / H200 class: under 6 minutes)
#   bash benchmarks/gpu_check.sh --dry-run  anywhere: the same code paths on the CPU under
#                                           TRITON_INTERPRET=1 at tiny sizes (CI runs this)
# It runs under the machine's own torch and triton and installs nothing from an index: wheels found in
# .whl/ (kornia, say) are installed first. A missing package (pytest-xdist, torchvision, kornia) is
# said and skipped; it never stops the rest. Each stage has its own timeout (GPU_CHECK_TEST_TIMEOUT,
# GPU_CHECK_BENCH_TIMEOUT, GPU_CHECK_HOST_TIMEOUT), which keeps what ran; the summary and the decisions
# (benchmarks/gpu_decide.py) come last.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
T_TESTS=${GPU_CHECK_TEST_TIMEOUT:-240}
T_BENCH=${GPU_CHECK_BENCH_TIMEOUT:-270}
T_HOST=${GPU_CHECK_HOST_TIMEOUT:-60}
# A stage's timeout interrupts (SIGINT) rather than terminates: pytest then stops, still writes its JUnit XML
# and summary of the tests that ran (SIGTERM kills it with neither), and the benchmarks have written each row
# as it came. What does not stop within 20 s more is killed.
stage() { local t=$1; shift; timeout -s INT -k 20 "$t" "$@"; }
LOG="$DEST/gpu_run.log"
note() { echo "gpu_check: $*" | tee -a "$DEST/gpu_summary.md"; }
: > "$DEST/gpu_summary.md"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/fk-site .whl/*.whl \
        && export PYTHONPATH=/tmp/fk-site:${PYTHONPATH:-} || note "the wheels in .whl/ did not install"
fi
# focalkit from the source tree (the C kernel is a CPU matter; no build here)
$PY -c "import focalkit" 2>/dev/null || export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
if [ $DRY = 1 ]; then
    export TRITON_INTERPRET=1
    TESTS="tests/backends/test_triton.py tests/backends/test_triton_device.py tests/test_gpu_scenarios.py tests/test_bad_labels.py"
    XDIST=""
else
    export TRITON_INTERPRET=0
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 2
    TESTS="tests/backends/test_triton.py tests/backends/test_triton_device.py tests/backends/test_ops.py tests/test_autograd.py tests/test_gpu_scenarios.py tests/test_bad_labels.py tests/test_batched_grads.py tests/backends/test_quality_kernels.py tests/test_compile.py tests/test_no_host_read.py"
    XDIST=""
    if $PY -c "import xdist" 2>/dev/null; then XDIST="-n 8"; else note "pytest-xdist is missing: tests run in one process"; fi
fi
for m in torchvision kornia liger_kernel; do
    $PY -c "import $m" 2>/dev/null || note "$m is not importable here: its rows and parity tests are skipped"
done

# 1. the tests (the conftest keeps TRITON_INTERPRET as set here)
start=$(date +%s)
stage $T_TESTS $PY -m pytest -q -p no:cacheprovider -o addopts="" -rs $XDIST --junitxml="$DEST/gpu_tests.xml" \
    $TESTS > "$LOG" 2>&1
rc_tests=$?
[ $rc_tests = 124 ] && note "tests: stopped at their ${T_TESTS} s timeout; the report holds the tests that ran"
tail -25 "$LOG"
t_tests=$(( $(date +%s) - start ))
n_gpu=$($PY -m pytest -q -p no:cacheprovider -o addopts="" --collect-only -m gpu $TESTS 2>/dev/null | grep -c "::")

# 2. the workload table
start=$(date +%s)
ARGS="--out $DEST"
[ $DRY = 1 ] && ARGS="$ARGS --dry-run"
echo "==== gpu_check: the workload table (benchmarks/bench_gpu.py)" >> "$LOG"
stage $T_BENCH $PY benchmarks/bench_gpu.py $ARGS >> "$LOG" 2>&1
rc_bench=$?
[ $rc_bench = 124 ] && note "workloads: stopped at their ${T_BENCH} s timeout; gpu.json holds the rows that ran"
t_bench=$(( $(date +%s) - start ))

# 3. the host's time per step taken apart (Python, Triton's launches, torch's own op), last of the timings
start=$(date +%s)
HARGS="--out $DEST"
[ $DRY = 1 ] && HARGS="$HARGS --dry-run"
echo "==== gpu_check: the host's time per step (benchmarks/host_profile.py)" >> "$LOG"
stage $T_HOST $PY benchmarks/host_profile.py $HARGS >> "$LOG" 2>&1
rc_host=$?
[ $rc_host = 124 ] && note "host_profile.py: stopped at its ${T_HOST} s timeout; gpu_host.json holds the rows that ran"
[ $rc_host = 0 ] || note "host_profile.py: rc $rc_host (gpu_run.log)"
t_bench=$(( t_bench + $(date +%s) - start ))

# 4. the summary, last
$PY - "$DEST" "$rc_tests" "$rc_bench" "$t_tests" "$t_bench" "$n_gpu" <<'EOF' | tee -a "$DEST/gpu_summary.md"
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from gpu_decide import outcomes_from_xml
dest, rc_t, rc_b, t_t, t_b, n_gpu = sys.argv[1:]
outcomes = outcomes_from_xml(Path(dest) / "gpu_tests.xml")
res = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped")}
if not outcomes:
    print("no test report")
print()
print("| stage | result | seconds |")
print("|---|---|---|")
print(f"| tests | {res['passed']} passed, {res['failed']} failed, {res['skipped']} skipped (rc {rc_t}); "
      f"{n_gpu} tests marked gpu | {t_t} |")
md = Path(dest) / "gpu_results.md"
rows = [l for l in md.read_text().splitlines() if l.startswith("| ") and "---" not in l][1:] if md.exists() else []
print(f"| workloads | {len(rows)} rows (rc {rc_b}) | {t_b} |")
print()
if md.exists():
    print(md.read_text())
host = Path(dest) / "gpu_host.md"
if host.exists():
    print("\n".join(host.read_text().split("\n\ncProfile")[0].splitlines()))
EOF
# 5. the switches that wait for a GPU, decided by the rules in gpu_decide.py (a tuning file to time again with)
$PY benchmarks/gpu_decide.py "$DEST" | tee -a "$DEST/gpu_summary.md" || note "gpu_decide.py failed"
echo "gpu_check: tests rc=$rc_tests, bench rc=$rc_bench, host rc=$rc_host; results in $DEST"
[ $rc_tests = 0 ] && [ $rc_bench = 0 ] && [ $rc_host = 0 ]
