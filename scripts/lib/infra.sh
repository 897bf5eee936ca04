# shellcheck shell=bash
# Local infrastructure for tests and demos: a Kafka-protocol broker and a redis-server, each on
# a free port with its data in a throw-away directory, stopped and removed when the calling
# script exits (normally, on failure or on Ctrl-C).
#
# The broker is Apache Kafka (KRaft, from Maven Central: scripts/lib/kafka.sh) or tansu (a
# Kafka-compatible broker in Rust, installed with cargo), chosen by BROKER=kafka|tansu; or
# BROKER=external: a broker that already runs, at $KAFKA_BOOTSTRAP_SERVERS (nothing is started
# or installed for it; plaintext only).
#
# Usage (from a bash script):
#   source "$(dirname "$0")/lib/infra.sh"
#   infra_ensure_tools [kafka] [tansu]   # installs what is missing (idempotent); default: $BROKER
#   infra_start [--durable] [--secure] [--redis-cluster] [--redis-replica]  # starts $BROKER and Redis; exports
#                                        # KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, INFRA_DIR
#
# --durable: Redis with AOF (everysec) and tansu on SQLite, so either can be restarted without
# losing data (Apache Kafka always keeps its data in files).
#
# Apache Kafka's log directory is in memory (/dev/shm) when that has INFRA_KAFKA_MEMORY_MIB
# (default 2048) free, else in INFRA_DIR on disk; INFRA_KAFKA_DATA=memory or disk insists on
# one (auto: the default). The data is thrown away when the script ends either way, and on a
# disk that stalls a write now and then (ext4 on this project's build machine) every such stall
# holds a Produce for tens of milliseconds (docs/infrastructure.md). Exported: INFRA_KAFKA_DIR
# (the broker's --dir) and INFRA_KAFKA_DATA_ON (memory or disk). A directory left in /dev/shm
# by a script that was killed (or kept with INFRA_KEEP) is removed by the next start.
# --secure (Apache Kafka only): also TLS and SASL listeners with throw-away certificates and
# users (scripts/lib/kafka-broker.sh), exported as INFRA_KAFKA_SSL, INFRA_KAFKA_MTLS,
# INFRA_KAFKA_SASL_SSL (host:port), INFRA_TLS_DIR (certificates: scripts/lib/certs.sh),
# INFRA_KAFKA_SCRAM and INFRA_KAFKA_PLAIN (user:password); and a second redis-server that
# speaks only TLS (--port 0 --tls-port) with the default user off and one ACL user, exported as
# INFRA_REDIS_TLS (rediss://user:password@127.0.0.1:port; CA: $INFRA_TLS_DIR/ca.pem).
# --redis-replica: the Redis at REDIS_URL gets a replica (INFRA_REDIS_REPLICA_PORT), so
# REDIS_WAIT_REPLICAS=1 can be confirmed on one Redis too.
# --redis-cluster: also a Redis Cluster of six redis-server processes (three masters, one
# replica each: scripts/lib/redis-cluster.sh), exported as INFRA_REDIS_CLUSTER (the seed URLs,
# comma-separated, for REDIS_MODE=cluster) and INFRA_REDIS_CLUSTER_PORTS (space-separated);
# with --secure as well, a second one that speaks only TLS (between its nodes too) with the
# default user off and the services' ACL user, exported as INFRA_REDIS_CLUSTER_TLS
# (rediss://user:password@... seed URLs; CA: $INFRA_TLS_DIR/ca.pem).
#
# Nothing here touches a Redis or broker that was already running on this machine.

INFRA_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$INFRA_LIB/kafka.sh"
source "$INFRA_LIB/certs.sh"

TANSU_VERSION="0.6.0"
export PATH="$HOME/.cargo/bin:$PATH"
BROKER="${BROKER:-kafka}"

infra_log() { printf '\033[1;34m[infra]\033[0m %s\n' "$*" >&2; }

infra_check_broker() {
  case "$1" in
    kafka|tansu) ;;
    external)
      if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        infra_log "BROKER=external needs KAFKA_BOOTSTRAP_SERVERS (host:port of the running broker)"
        exit 2
      fi ;;
    *) infra_log "BROKER=$1 is not known: use BROKER=kafka (Apache Kafka), tansu or external"; exit 2 ;;
  esac
}

infra_ensure_tools() {
  local brokers=("$@")
  [ ${#brokers[@]} -gt 0 ] || brokers=("$BROKER")
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local missing=()
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)  # infra_free_port
  if [ ${#missing[@]} -gt 0 ]; then
    infra_log "not found: ${missing[*]}: installing Debian's packages"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    # The redis-server package may start a system instance; we never use it.
  fi
  infra_log "redis-server present: $(redis-server --version | cut -d' ' -f3)"
  local b
  for b in "${brokers[@]}"; do
    infra_check_broker "$b"
    if [ "$b" = external ]; then
      infra_log "broker: the running one at $KAFKA_BOOTSTRAP_SERVERS"
    elif [ "$b" = kafka ]; then
      kafka_ensure
    elif command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
      infra_log "tansu present: $(tansu --version 2>/dev/null | head -n1)"
    else
      infra_log "tansu $TANSU_VERSION not found: installing it with cargo (one time, about 10 minutes on 2 cores)"
      cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
    fi
  done
}

# What only the test command needs: headless Chromium and its WebDriver (the console's browser
# test), Prometheus and promtool (the alert rules' tests and the monitoring test) — Debian's
# chromium, chromium-driver and prometheus packages, installed when missing. A Prometheus the
# package may start as a system service is never used (the tests start their own).
infra_ensure_test_tools() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    infra_log "not found: ${missing[*]}: installing Debian's packages (browser and monitoring tests)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  infra_log "chromium present: $(chromium --version 2>/dev/null | head -n1)"
  infra_log "prometheus present: $(prometheus --version 2>&1 | head -n1)"
}

# Print a TCP port on 127.0.0.1 that nothing listens on right now, never printed before by this
# shell. Picked at random below the kernel's ephemeral range (32768 and up on Linux), as the test
# kit does (tests/src/stack.rs free_port): a port from bind(0) can come back from the next call
# before its server binds it, and an outgoing connection can take a stopped server's port. The
# ports handed out are listed in $INFRA_PORTS_GIVEN (one file per shell, removed by infra_stop).
INFRA_PORTS_GIVEN="${TMPDIR:-/tmp}/huleedu-ports-$$"
infra_free_port() {
  python3 - "$INFRA_PORTS_GIVEN" <<'PY'
import random, socket, sys
given_file = sys.argv[1]
try:
    given = set(open(given_file).read().split())
except OSError:
    given = set()
try:
    below = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    below = 32768
low = max(10000, below - 20000)
for _ in range(10000):
    if low < below:
        port = random.randrange(low, below)
    else:  # an unusual ephemeral range: let the kernel pick
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    if str(port) in given:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    with open(given_file, "a") as f:
        f.write(f"{port}\n")
    print(port)
    sys.exit(0)
sys.exit("no free port found on 127.0.0.1")
PY
}

# Print $1 distinct free ports.
infra_free_ports() {
  local n=$1 p ports=()
  while [ ${#ports[@]} -lt "$n" ]; do
    p=$(infra_free_port)
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  echo "${ports[@]}"
}

# Wait until 127.0.0.1:$1 accepts connections (name $2, timeout $3 seconds, pid $4 whose exit
# ends the wait early).
infra_wait_port() {
  local port=$1 name=$2 timeout=${3:-30} pid=${4:-} start=$SECONDS
  until (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if (( SECONDS - start > timeout )) || { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; }; then
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
  rm -f "$INFRA_PORTS_GIVEN"
  if [ -n "${INFRA_DIR:-}" ] && [ -d "$INFRA_DIR" ] && [ -z "${INFRA_KEEP:-}" ]; then
    rm -rf "$INFRA_DIR"
  fi
  if [ "${INFRA_KAFKA_DATA_ON:-}" = memory ] && [ -d "${INFRA_KAFKA_DIR:-}" ] && [ -z "${INFRA_KEEP:-}" ]; then
    rm -rf "$INFRA_KAFKA_DIR"
  fi
}

# Remove broker directories in /dev/shm whose script (the pid in the name) no longer runs: a
# killed script cannot clean up, and memory is not given back until someone does.
infra_sweep_shm() {
  local d pid
  for d in /dev/shm/huleedu-kafka.*; do
    [ -d "$d" ] || continue
    pid=${d#/dev/shm/huleedu-kafka.}
    pid=${pid%%.*}
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    kill -0 "$pid" 2>/dev/null || rm -rf "$d" 2>/dev/null || true
  done
}

# Choose Apache Kafka's directory (see the top of this file); sets and exports INFRA_KAFKA_DIR
# and INFRA_KAFKA_DATA_ON.
infra_kafka_dir() {
  local mode=${INFRA_KAFKA_DATA:-auto} need=${INFRA_KAFKA_MEMORY_MIB:-2048} free_kib=0
  case "$mode" in
    auto|memory|disk) ;;
    *) infra_log "INFRA_KAFKA_DATA=$mode is not known: use auto, memory or disk"; return 2 ;;
  esac
  case "$need" in
    ''|*[!0-9]*) infra_log "INFRA_KAFKA_MEMORY_MIB=$need is not a number of MiB"; return 2 ;;
  esac
  infra_sweep_shm
  if [ "$mode" != disk ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [ "${free_kib:-0}" -ge $(( need * 1024 )) ]; then
      INFRA_KAFKA_DIR=$(mktemp -d "/dev/shm/huleedu-kafka.$$.XXXXXX")
      INFRA_KAFKA_DATA_ON=memory
      export INFRA_KAFKA_DIR INFRA_KAFKA_DATA_ON
      return 0
    fi
  fi
  if [ "$mode" = memory ]; then
    infra_log "INFRA_KAFKA_DATA=memory: /dev/shm has $(( ${free_kib:-0} / 1024 )) MiB free, INFRA_KAFKA_MEMORY_MIB asks for $need"
    return 2
  fi
  INFRA_KAFKA_DIR="$INFRA_DIR/kafka"
  INFRA_KAFKA_DATA_ON=disk
  export INFRA_KAFKA_DIR INFRA_KAFKA_DATA_ON
}

infra_start_tansu() {
  local kport=$1 durable=$2
  local storage="memory://tansu/"
  [ "$durable" = 1 ] && storage="sqlite://tansu.db"
  # tansu resolves a sqlite path relative to its working directory.
  (cd "$INFRA_DIR" && exec tansu broker \
      --listener-url "tcp://127.0.0.1:$kport" \
      --advertised-listener-url "tcp://127.0.0.1:$kport" \
      --storage-engine "$storage" >"$INFRA_DIR/broker.log" 2>&1) &
  INFRA_PIDS+=("$!")
  export BROKER_PID=$!
  infra_wait_port "$kport" broker 30 "$BROKER_PID"
}

# A random password (hex).
infra_password() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# A redis-server on a TLS port only, with one ACL user (the default user is off) that has the
# least privileges the services need (docs/managed-services.md).
infra_start_redis_tls() {
  local port user=huleedu pw
  port=$(infra_free_port)
  pw=$(infra_password)
  mkdir -p "$INFRA_DIR/redis-tls"
  redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 \
      --tls-cert-file "$INFRA_TLS_DIR/server.pem" --tls-key-file "$INFRA_TLS_DIR/server.key" \
      --tls-ca-cert-file "$INFRA_TLS_DIR/ca.pem" --tls-auth-clients no \
      --save "" --appendonly no --dir "$INFRA_DIR/redis-tls" \
      --user default off \
      --user "$user" on ">$pw" "${INFRA_REDIS_SERVICE_ACL[@]}" \
      --daemonize no >"$INFRA_DIR/redis-tls.log" 2>&1 &
  INFRA_PIDS+=("$!")
  infra_wait_port "$port" redis-tls 30 "$!"
  export INFRA_REDIS_TLS="rediss://$user:$pw@127.0.0.1:$port"
}

# A replica of the Redis on port $1 (for REDIS_WAIT_REPLICAS on one Redis), in sync when this
# returns; its port in INFRA_REDIS_REPLICA_PORT.
infra_start_redis_replica() {
  local master=$1 port start=$SECONDS
  port=$(infra_free_port)
  mkdir -p "$INFRA_DIR/redis-replica"
  redis-server --port "$port" --bind 127.0.0.1 --replicaof 127.0.0.1 "$master" \
      --repl-diskless-sync-delay 0 --save "" --appendonly no --dir "$INFRA_DIR/redis-replica" \
      --daemonize no >"$INFRA_DIR/redis-replica.log" 2>&1 &
  INFRA_PIDS+=("$!")
  infra_wait_port "$port" redis-replica 30 "$!"
  until redis-cli -p "$port" info replication 2>/dev/null | grep -q '^master_link_status:up'; do
    if (( SECONDS - start > 30 )); then
      infra_log "the Redis replica on port $port is not in sync within 30 s"; return 1
    fi
    sleep 0.1
  done
  export INFRA_REDIS_REPLICA_PORT=$port
}

# The Redis ACL of the services' user (docs/managed-services.md): every key, no channels, the
# read, write, scripting and connection commands, none of the dangerous ones; and CLUSTER SLOTS,
# which a cluster client needs to learn the slot map (without it, every command of the store's
# tests fails on the TLS cluster: tried).
INFRA_REDIS_SERVICE_ACL=("~*" resetchannels -@all +@read +@write +@scripting +@connection -@dangerous)
INFRA_REDIS_CLUSTER_ACL=("${INFRA_REDIS_SERVICE_ACL[@]}" "+cluster|slots")

# A Redis Cluster: six nodes on free ports (client and cluster-bus ports), joined. With --tls
# (needs $INFRA_TLS_DIR): TLS only, also between the nodes, the default user off, an admin user
# to create the cluster, a replication user, and the services' least-privilege user.
infra_start_redis_cluster() {
  local tls=0 ports=() port bus i urls=() extra=() name=redis-cluster
  [ "${1:-}" = --tls ] && { tls=1; name=redis-cluster-tls; }
  read -r -a ports <<<"$(infra_free_ports 12)"
  local cli_args="" user=huleedu pw
  pw=$(infra_password)
  if [ "$tls" = 1 ]; then
    local admin_pw repl_pw
    admin_pw=$(infra_password) repl_pw=$(infra_password)
    extra=(--tls-cluster yes --tls-replication yes
           --tls-cert-file "$INFRA_TLS_DIR/server.pem" --tls-key-file "$INFRA_TLS_DIR/server.key"
           --tls-ca-cert-file "$INFRA_TLS_DIR/ca.pem" --tls-auth-clients no
           --user default off
           --user admin on ">$admin_pw" "~*" "&*" +@all
           --user repl on ">$repl_pw" +psync +replconf +ping
           --masteruser repl --masterauth "$repl_pw"
           --user "$user" on ">$pw" "${INFRA_REDIS_CLUSTER_ACL[@]}")
    cli_args="--tls --cacert $INFRA_TLS_DIR/ca.pem --user admin --pass $admin_pw --no-auth-warning"
  fi
  for i in 0 1 2 3 4 5; do
    port=${ports[$i]} bus=${ports[$((i + 6))]}
    if [ "$tls" = 1 ]; then
      "$INFRA_LIB/redis-cluster.sh" node "$INFRA_DIR/$name/$port" "$port" "$bus" \
          --port 0 --tls-port "$port" "${extra[@]}" >"$INFRA_DIR/$name-$port.log" 2>&1 &
      urls+=("rediss://$user:$pw@127.0.0.1:$port")
    else
      "$INFRA_LIB/redis-cluster.sh" node "$INFRA_DIR/$name/$port" "$port" "$bus" \
          >"$INFRA_DIR/$name-$port.log" 2>&1 &
      urls+=("redis://127.0.0.1:$port")
    fi
    INFRA_PIDS+=("$!")
    infra_wait_port "$port" "$name-$port" 30 "$!"
  done
  REDIS_CLI_ARGS="$cli_args" "$INFRA_LIB/redis-cluster.sh" create "${ports[@]:0:6}"
  if [ "$tls" = 1 ]; then
    INFRA_REDIS_CLUSTER_TLS=$(IFS=,; echo "${urls[*]}")
    export INFRA_REDIS_CLUSTER_TLS
  else
    INFRA_REDIS_CLUSTER=$(IFS=,; echo "${urls[*]}")
    export INFRA_REDIS_CLUSTER
    export INFRA_REDIS_CLUSTER_PORTS="${ports[*]:0:6}"
  fi
}

infra_start_kafka() {
  local kport=$1 secure=$2
  infra_kafka_dir || return
  local args=(--dir "$INFRA_KAFKA_DIR" --port "$kport" --controller-port "$(infra_free_port)")
  if [ "$secure" = 1 ]; then
    local ssl mtls sasl
    read -r ssl mtls sasl <<<"$(infra_free_ports 3)"
    export INFRA_TLS_DIR="$INFRA_DIR/tls"
    certs_make "$INFRA_TLS_DIR"
    infra_start_redis_tls
    export INFRA_KAFKA_SSL="127.0.0.1:$ssl" INFRA_KAFKA_MTLS="127.0.0.1:$mtls" INFRA_KAFKA_SASL_SSL="127.0.0.1:$sasl"
    export INFRA_KAFKA_SCRAM="huleedu-scram:$(infra_password)"
    export INFRA_KAFKA_PLAIN="huleedu-plain:$(infra_password)"
    args+=(--tls-dir "$INFRA_TLS_DIR" --ssl-port "$ssl" --mtls-port "$mtls" --sasl-ssl-port "$sasl"
           --scram-user "$INFRA_KAFKA_SCRAM" --plain-user "$INFRA_KAFKA_PLAIN")
  fi
  "$INFRA_LIB/kafka-broker.sh" "${args[@]}" >"$INFRA_DIR/broker.log" 2>&1 &
  INFRA_PIDS+=("$!")
  export BROKER_PID=$!
  infra_wait_port "$kport" broker 90 "$BROKER_PID"
}

# Start $BROKER and redis-server on free ports (options: see the top of this file).
infra_start() {
  local durable=0 secure=0 cluster=0 replica=0 arg
  for arg in "$@"; do
    case "$arg" in
      --durable) durable=1 ;;
      --secure) secure=1 ;;
      --redis-cluster) cluster=1 ;;
      --redis-replica) replica=1 ;;
      *) infra_log "infra_start: unknown option $arg"; return 2 ;;
    esac
  done
  infra_check_broker "$BROKER"
  if [ "$secure" = 1 ] && [ "$BROKER" != kafka ]; then
    infra_log "TLS and SASL listeners need Apache Kafka (tansu has none): BROKER=kafka"
    return 2
  fi
  INFRA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/huleedu-infra.XXXXXX")
  export INFRA_DIR
  # Only a broker directory this shell chose is removed by its infra_stop (not one named in the
  # environment by a calling script).
  unset INFRA_KAFKA_DIR INFRA_KAFKA_DATA_ON
  trap 'infra_stop' EXIT
  trap 'infra_stop; exit 130' INT
  trap 'infra_stop; exit 143' TERM

  local kport rport
  read -r kport rport <<<"$(infra_free_ports 2)"

  local aof=(--appendonly no)
  [ "$durable" = 1 ] && aof=(--appendonly yes --appendfsync everysec)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" "${aof[@]}" \
      --dir "$INFRA_DIR" --daemonize no >"$INFRA_DIR/redis.log" 2>&1 &
  INFRA_PIDS+=("$!")
  export REDIS_PID=$!

  local what="Apache Kafka $KAFKA_VERSION"
  case "$BROKER" in
    kafka) infra_start_kafka "$kport" "$secure"; what="$what, its log directory $( [ "$INFRA_KAFKA_DATA_ON" = memory ] && echo "in memory" || echo "on disk")" ;;
    tansu) infra_start_tansu "$kport" "$durable"; what="tansu $TANSU_VERSION" ;;
    external) kport=${KAFKA_BOOTSTRAP_SERVERS#*:}; what="already running" ;;
  esac
  infra_wait_port "$rport" redis 30 "$REDIS_PID"
  if [ "$replica" = 1 ]; then
    infra_start_redis_replica "$rport"
    what="$what; a replica of Redis at port $INFRA_REDIS_REPLICA_PORT"
  fi
  if [ "$cluster" = 1 ]; then
    infra_start_redis_cluster
    what="$what; Redis Cluster at ${INFRA_REDIS_CLUSTER%%,*},... (ports $INFRA_REDIS_CLUSTER_PORTS)"
    if [ "$secure" = 1 ]; then
      infra_start_redis_cluster --tls
      what="$what; a TLS-only Redis Cluster with ACL users"
    fi
  fi
  [ "$BROKER" = external ] || export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kport"
  export REDIS_URL="redis://127.0.0.1:$rport"
  [ "$secure" = 1 ] && what="$what; TLS at $INFRA_KAFKA_SSL, mTLS at $INFRA_KAFKA_MTLS, SASL_SSL at $INFRA_KAFKA_SASL_SSL; Redis over TLS at ${INFRA_REDIS_TLS##*@}"
  infra_log "broker ($what) at $KAFKA_BOOTSTRAP_SERVERS, Redis at $REDIS_URL, data in $INFRA_DIR"
}
