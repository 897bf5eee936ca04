# shellcheck shell=bash
# Local infrastructure for tests and demos: a tansu broker and a redis-server, each on a free
# port with its data in a throw-away directory, stopped and removed when the calling script
# exits (normally, on failure or on Ctrl-C).
#
# Usage (from a bash script):
#   source "$(dirname "$0")/lib/infra.sh"
#   infra_ensure_tools            # installs tansu / redis-server when missing (idempotent)
#   infra_start [durable]         # exports KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, INFRA_DIR
#
# Nothing here touches a Redis or broker that was already running on this machine.

TANSU_VERSION="0.6.0"
export PATH="$HOME/.cargo/bin:$PATH"

infra_log() { printf '\033[1;34m[infra]\033[0m %s\n' "$*" >&2; }

infra_ensure_tools() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v curl >/dev/null 2>&1; then
    infra_log "curl not found: installing Debian's curl package"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq curl >/dev/null
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    infra_log "redis-server not found: installing Debian's redis-server package"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    # The package may start a system instance; we never use it.
  else
    infra_log "redis-server present: $(redis-server --version | cut -d' ' -f3)"
  fi
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    infra_log "tansu present: $(tansu --version 2>/dev/null | head -n1)"
  else
    infra_log "tansu $TANSU_VERSION not found: installing it with cargo (one time, about 10 minutes on 2 cores)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
  fi
}

# Print a TCP port on 127.0.0.1 that nothing listens on right now.
infra_free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p
  while :; do
    p=$(( (RANDOM % 20000) + 30000 ))
    (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# Wait until 127.0.0.1:$1 accepts connections (name $2, timeout $3 seconds).
infra_wait_port() {
  local port=$1 name=$2 timeout=${3:-30} start=$SECONDS
  until (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if (( SECONDS - start > timeout )); then
      infra_log "$name did not open port $port within ${timeout}s; its log:"
      tail -n 30 "$INFRA_DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

INFRA_PIDS=()

# Stop everything started, newest first (services before the broker and Redis they use).
infra_stop() {
  local i pid
  for (( i=${#INFRA_PIDS[@]}-1; i>=0; i-- )); do
    pid=${INFRA_PIDS[$i]}
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  INFRA_PIDS=()
  if [ -n "${INFRA_DIR:-}" ] && [ -d "$INFRA_DIR" ] && [ -z "${INFRA_KEEP:-}" ]; then
    rm -rf "$INFRA_DIR"
  fi
}

# Start tansu and redis-server on free ports. With "durable": tansu on SQLite and Redis with
# AOF (everysec), so either can be restarted without losing data.
infra_start() {
  local mode=${1:-memory}
  INFRA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/huleedu-infra.XXXXXX")
  export INFRA_DIR
  trap 'infra_stop' EXIT
  trap 'infra_stop; exit 130' INT
  trap 'infra_stop; exit 143' TERM

  local kport rport
  kport=$(infra_free_port)
  rport=$(infra_free_port)
  while [ "$rport" = "$kport" ]; do rport=$(infra_free_port); done

  local storage="memory://tansu/"
  [ "$mode" = durable ] && storage="sqlite://tansu.db"
  # tansu resolves a sqlite path relative to its working directory.
  (cd "$INFRA_DIR" && exec tansu broker \
      --listener-url "tcp://127.0.0.1:$kport" \
      --advertised-listener-url "tcp://127.0.0.1:$kport" \
      --storage-engine "$storage" >"$INFRA_DIR/tansu.log" 2>&1) &
  INFRA_PIDS+=("$!")
  export TANSU_PID=$!

  local aof=(--appendonly no)
  [ "$mode" = durable ] && aof=(--appendonly yes --appendfsync everysec)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" "${aof[@]}" \
      --dir "$INFRA_DIR" --daemonize no >"$INFRA_DIR/redis.log" 2>&1 &
  INFRA_PIDS+=("$!")
  export REDIS_PID=$!

  infra_wait_port "$kport" tansu 30
  infra_wait_port "$rport" redis 30
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kport"
  export REDIS_URL="redis://127.0.0.1:$rport"
  infra_log "broker (tansu, $mode) at $KAFKA_BOOTSTRAP_SERVERS, Redis at $REDIS_URL, data in $INFRA_DIR"
}
