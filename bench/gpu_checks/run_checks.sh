#!/usr/bin/env bash
# The GPU checks of issue 3 in one device-tool call: versions, `python -m gpuconv`, the determinism /
# coverage workload, compute-sanitizer (memcheck, racecheck, initcheck, synccheck) on its --small set, and
# the pytest suite (in the background, alongside the rest, by default).
#
#   bash bench/gpu_checks/run_checks.sh OUTDIR [STEP ...]
#   bash bench/gpu_checks/run_checks.sh --fingerprint        # the source-tree hash the logs record
#
# STEP: env selfcheck workload memcheck racecheck initcheck synccheck pytest, or all (the default: every
# step, pytest in the background from the start). Naming steps runs just those, in the order given,
# all in the foreground ("env" is always run first).
#
# Time: the whole script stops starting steps at GPU_CHECKS_DEADLINE seconds (default 520) and cuts each
# step at its own timeout (below) or at the deadline, whichever is first: one hung step cannot eat the
# device call (the tool's limit is 600 s). A step that got no time is reported SKIPPED.
#
# OUTDIR receives at most 5 files: summary.txt (one line per step), versions.txt, pytest-summary.txt,
# workload.txt (the full workload's lines) and logs.tar.gz (every log, the JUnit XML, nvidia-smi -q).
#
# Environment knobs (all optional):
#   GPU_CHECKS_DEADLINE=520    PYTEST_TIMEOUT=480    PYTEST_MAXFAIL=30    PYTEST_ARGS="tests"
#   PYTEST_BG=1 (0: with "all", run pytest last, in the foreground)
#   WORKLOAD_ONLY=REGEX        workload and sanitizer steps run only the checks whose name matches
#   GPU_CHECKS_DRY_RUN=1       no GPU: NumPy backend for selfcheck, workload --numpy, sanitizer steps without
#                              the sanitizer (checks this script's plumbing on a CPU machine)
#   PYTHON=python3

# shellcheck disable=SC2329  # the step functions run through `bash run_checks.sh --step NAME`
set -u
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}."
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
HERE="bench/gpu_checks"

cd "$(dirname "$0")/../.." || exit 2
SELF="$HERE/run_checks.sh"

fingerprint() {
    # sha256 over the sources that decide the results (same command locally and on the device)
    find gpuconv kernels tests bench -type f \( -name '*.py' -o -name '*.cu' -o -name '*.cuh' -o -name '*.sh' \) \
        -not -path '*/__pycache__/*' -not -path 'bench/results/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

if [ "${1:-}" = "--fingerprint" ]; then
    fingerprint
    exit 0
fi
INTERNAL_STEP=""
if [ "${1:-}" = "--step" ]; then
    INTERNAL_STEP=$2
    shift 2
fi
if [ -z "$INTERNAL_STEP" ] && [ $# -lt 1 ]; then
    sed -n '2,26p' "$SELF"
    exit 2
fi
if [ -z "$INTERNAL_STEP" ]; then
    OUTDIR=$1
    shift
    mkdir -p "$OUTDIR" || exit 2
    OUTDIR=$(cd "$OUTDIR" && pwd)
    LOGS=$(mktemp -d "${TMPDIR:-/tmp}/gpu-checks.XXXXXX")/logs
    mkdir -p "$LOGS"
    export OUTDIR LOGS
fi

DEADLINE=${GPU_CHECKS_DEADLINE:-520}
DRY=${GPU_CHECKS_DRY_RUN:-0}
export GPU_CHECKS_DRY_RUN=$DRY PYTHON
START=$(date +%s)
ALL_STEPS="env selfcheck workload memcheck racecheck initcheck synccheck"

if [ -n "$INTERNAL_STEP" ]; then
    MODE=internal
    STEPS=""
elif [ $# -eq 0 ] || [ "$1" = "all" ]; then
    MODE=all
    STEPS=$ALL_STEPS
else
    MODE=named
    STEPS="env"
    for s in "$@"; do
        case " $ALL_STEPS pytest " in
            *" $s "*) [ "$s" = env ] || STEPS="$STEPS $s" ;;
            *) echo "unknown step: $s (steps: $ALL_STEPS pytest)" >&2; exit 2 ;;
        esac
    done
fi

elapsed() { echo $(( $(date +%s) - START )); }

# run_step NAME TIMEOUT CMD...: runs CMD with its output in $LOGS/NAME.log, cut at min(TIMEOUT, deadline);
# writes "NAME STATUS rc=.. seconds" to $LOGS/NAME.status.
run_step() {
    local name=$1 limit=$2
    shift 2
    local left=$(( DEADLINE - $(elapsed) - 5 ))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 15 ]; then
        echo "$name SKIPPED (no time left before the ${DEADLINE}s deadline)" > "$LOGS/$name.status"
        echo "[$(elapsed)s] $name: SKIPPED (no time left)"
        return 0
    fi
    echo "[$(elapsed)s] $name: start (limit ${limit}s): $*"
    local t0 rc status
    t0=$(date +%s)
    {
        echo "# step $name, limit ${limit}s, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "# command: $*"
    } > "$LOGS/$name.log"
    # SIGINT first (python prints a traceback, pytest its summary and JUnit XML), SIGKILL 15 s later
    timeout --signal=INT --kill-after=15 "$limit" "$@" >> "$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=PASS ;;
        124|137) status="TIMEOUT (cut at ${limit}s)" ;;
        *) status="FAIL" ;;
    esac
    echo "$name $status rc=$rc $(( $(date +%s) - t0 ))s" > "$LOGS/$name.status"
    echo "[$(elapsed)s] $name: $status rc=$rc"
}

find_sanitizer() {
    local c
    for c in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
             /usr/local/cuda-*/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
             /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
        if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
    done
    return 1
}

# ------------------------------------------------------------------------------------------- steps

step_env() {
    {
        echo "date (UTC)             $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host                   $(hostname) $(uname -srm)"
        echo "source fingerprint     $(fingerprint)   (bash $HERE/run_checks.sh --fingerprint on the commit)"
        echo "git commit             $(git rev-parse HEAD 2>/dev/null || echo 'no .git here: match the fingerprint locally')"
        echo "cpus                   $(nproc)"
        echo "env                    $(env | grep -E '^(GPUCONV_|CUPY_|CUDA_VISIBLE|NVIDIA_TF32|TORCH_)' | tr '\n' ' ')"
        echo
        echo "== nvidia-smi"
        nvidia-smi 2>&1 || echo "nvidia-smi: not available"
        echo
        echo "== nvidia-smi --query-gpu"
        nvidia-smi --query-gpu=name,driver_version,vbios_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,compute_mode,mig.mode.current \
            --format=csv 2>&1 || true
        echo
        echo "== python versions"
        $PYTHON "$HERE/versions.py" 2>&1 | tee "$LOGS/python-versions.txt"
        echo
        echo "== tools"
        local cs
        if cs=$(find_sanitizer); then echo "compute-sanitizer: $cs"; "$cs" --version 2>&1 | tail -n 3; else echo "compute-sanitizer: NOT FOUND"; fi
        echo "ncu: $(command -v ncu || echo 'not on PATH')"; ncu --version 2>/dev/null | tail -n 1
        echo "nvcc: $(command -v nvcc || echo 'not on PATH')"; nvcc --version 2>/dev/null | tail -n 2
        echo
        echo "== pip list (relevant)"
        $PYTHON -m pip list 2>/dev/null | grep -iE '^(cupy|torch|numpy|nvidia-|hypothesis|pytest|fastrlock)' || true
    } > "$LOGS/versions.txt" 2>&1
    nvidia-smi -q > "$LOGS/nvidia-smi-q.txt" 2>&1 || true
    cp "$LOGS/versions.txt" "$OUTDIR/versions.txt"
    if [ "$DRY" = 1 ]; then
        $PYTHON "$HERE/versions.py" > /dev/null 2>&1
    else
        $PYTHON "$HERE/versions.py" --require-gpu > /dev/null 2>&1
    fi
}

step_selfcheck() {
    if [ "$DRY" = 1 ]; then $PYTHON -m gpuconv --backend numpy --no-bench; else $PYTHON -m gpuconv --backend cupy --no-bench; fi
}

step_workload() {
    local extra=()
    [ "$DRY" = 1 ] && extra=(--numpy)
    [ -n "${WORKLOAD_ONLY:-}" ] && extra+=(--only "$WORKLOAD_ONLY")
    $PYTHON "$HERE/workload.py" "${extra[@]}"
}

# step_sanitizer TOOL: the --small workload under compute-sanitizer TOOL, CuPy pools off; initcheck also
# without GPUCONV_POISON (outputs stay uninitialised, so an element never written is reported when read).
step_sanitizer() {
    local tool=$1 cs
    local wl=("$PYTHON" "$HERE/workload.py" --small --no-pool)
    [ "$tool" = initcheck ] && wl+=(--no-poison)
    [ -n "${WORKLOAD_ONLY:-}" ] && wl+=(--only "$WORKLOAD_ONLY")
    if [ "$DRY" = 1 ]; then
        echo "dry run: no sanitizer, workload only"
        "${wl[@]}" --numpy
        local rc=$?
        echo "========= ERROR SUMMARY: 0 errors"
        return "$rc"
    fi
    if ! cs=$(find_sanitizer); then
        echo "compute-sanitizer not found"
        return 3
    fi
    local opts=(--tool "$tool" --error-exitcode 1 --print-limit 200 --target-processes all --launch-timeout 120)
    # extra guard bytes around each allocation: an overrun that would land in a neighbouring array is reported
    if [ "$tool" = memcheck ] && "$cs" --help 2>/dev/null | grep -q -- '--padding'; then
        opts+=(--padding 4096)
    fi
    echo "# $cs ${opts[*]} ${wl[*]}"
    "$cs" "${opts[@]}" "${wl[@]}"
}

step_pytest() {
    local maxfail=${PYTEST_MAXFAIL:-30}
    # shellcheck disable=SC2086  # PYTEST_ARGS is a word list on purpose
    $PYTHON -m pytest ${PYTEST_ARGS:-tests} -q -p no:cacheprovider -rfEs --maxfail="$maxfail" --durations=25 \
        --junitxml="$LOGS/pytest-junit.xml"
}

pytest_summary() {
    {
        echo "# pytest: ${PYTEST_ARGS:-tests}, maxfail ${PYTEST_MAXFAIL:-30}; status: $(cat "$LOGS/pytest.status" 2>/dev/null)"
        echo "## last lines of the log"
        grep -E '^(FAILED|ERROR) ' "$LOGS/pytest.log" | head -n 60
        grep -E '(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$LOGS/pytest.log" | tail -n 1
        echo "## per backend (from the JUnit XML)"
        if [ -s "$LOGS/pytest-junit.xml" ]; then
            $PYTHON "$HERE/report.py" junit "$LOGS/pytest-junit.xml"
        else
            echo "no JUnit XML (pytest did not finish)"; tail -n 30 "$LOGS/pytest.log"
        fi
        echo "## slowest tests"
        sed -n '/slowest .*durations/,/^$/p' "$LOGS/pytest.log" | head -n 30
    } > "$OUTDIR/pytest-summary.txt" 2>&1
}

# A step runs as its own process (`bash run_checks.sh --step FUNCTION ...`) so that `timeout` can cut it.
if [ "$INTERNAL_STEP" != "" ]; then
    "$INTERNAL_STEP" "$@"
    exit $?
fi

# --------------------------------------------------------------------------------------------- run

echo "gpu checks: steps [$STEPS]$([ "$MODE" = all ] && [ "${PYTEST_BG:-1}" = 1 ] && echo ' + pytest in the background'), deadline ${DEADLINE}s, dry run $DRY, logs in $LOGS"

PYTEST_PID=""
for step in $STEPS; do
    case $step in
        env)
            run_step env 60 bash "$SELF" --step step_env
            if [ "$MODE" = all ] && [ "${PYTEST_BG:-1}" = 1 ]; then
                run_step pytest "${PYTEST_TIMEOUT:-480}" bash "$SELF" --step step_pytest &
                PYTEST_PID=$!
            fi
            ;;
        selfcheck) run_step selfcheck 180 bash "$SELF" --step step_selfcheck ;;
        workload) run_step workload 180 bash "$SELF" --step step_workload ;;
        memcheck|racecheck|initcheck|synccheck) run_step "$step" 150 bash "$SELF" --step step_sanitizer "$step" ;;
        pytest) run_step pytest "${PYTEST_TIMEOUT:-480}" bash "$SELF" --step step_pytest ;;
    esac
done
if [ "$MODE" = all ] && [ "${PYTEST_BG:-1}" != 1 ]; then
    run_step pytest "${PYTEST_TIMEOUT:-480}" bash "$SELF" --step step_pytest
fi
if [ -n "$PYTEST_PID" ]; then
    echo "[$(elapsed)s] waiting for pytest (pid $PYTEST_PID)"
    wait "$PYTEST_PID"
fi

# ------------------------------------------------------------------------------------------ summary

{
    echo "# gpuconv GPU checks, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(elapsed)s in all, fingerprint $(fingerprint)"
    grep -m1 -E 'Driver Version' "$LOGS/versions.txt" 2>/dev/null | sed 's/^[ |]*//; s/[ |]*$//'
    grep -E '^(gpu 0|cupy|cuda driver|cuda runtime|nvrtc|torch|torch cuda \(built for\)|torch cudnn) ' \
        "$LOGS/python-versions.txt" 2>/dev/null
    echo
    for step in $STEPS $( [ "$MODE" = all ] && echo pytest ); do
        cat "$LOGS/$step.status" 2>/dev/null || echo "$step NOT RUN"
        case $step in
            selfcheck) grep -cE '^\s*\[ *ok\]' "$LOGS/selfcheck.log" 2>/dev/null | sed 's/^/    self-check lines ok: /'
                       grep -E 'FAIL' "$LOGS/selfcheck.log" 2>/dev/null | head -n 10 | sed 's/^/    /' ;;
            workload) grep -E '^(coverage|[0-9]+ checks|  not launched|  failed:)' "$LOGS/workload.log" 2>/dev/null \
                          | head -n 40 | sed 's/^/    /' ;;
            memcheck|racecheck|initcheck|synccheck)
                if [ -f "$LOGS/$step.log" ]; then
                    $PYTHON "$HERE/report.py" sanitizer "$LOGS/$step.log" 2>&1 | head -n 25 | sed 's/^/    /'
                fi ;;
            pytest) [ -f "$LOGS/pytest.log" ] && pytest_summary
                    grep -E '(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$LOGS/pytest.log" 2>/dev/null \
                        | tail -n 1 | sed 's/^/    /'
                    grep -E '^(total|cupy|numpy|WARNING)' "$OUTDIR/pytest-summary.txt" 2>/dev/null | sed 's/^/    /' ;;
        esac
    done
} > "$LOGS/summary.txt" 2>&1
cp "$LOGS/summary.txt" "$OUTDIR/summary.txt"
[ -f "$LOGS/workload.log" ] && cp "$LOGS/workload.log" "$OUTDIR/workload.txt"
tar -czf "$OUTDIR/logs.tar.gz" -C "$(dirname "$LOGS")" logs
echo
cat "$OUTDIR/summary.txt"
echo
echo "files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
# exit 0 only when every step that ran passed
if grep -qvE ' PASS ' "$LOGS"/*.status 2>/dev/null; then exit 1; fi
exit 0
