#!/usr/bin/env bash
# The main job: start the whole local system and run the demonstration.
#
#   scripts/run.sh            # start broker, Redis, conductor, orchestrator, reference worker
#                             # and the operator console (http://127.0.0.1:8080 when free);
#                             # run cj_assessment → nlp → ai_feedback on a 20-essay batch;
#                             # print the report (it ends with the batch's console page);
#                             # stop everything
#   scripts/run.sh --keep     # same, then keep the stack running until Ctrl-C
#   scripts/run.sh --no-demo  # start the stack and keep it running (no demonstration)
#   scripts/run.sh --redis-cluster  # the services on a local Redis Cluster (3 masters + 3
#                             # replicas; REDIS_MODE=cluster, REDIS_WAIT_REPLICAS=1); combines
#                             # with --keep / --no-demo
#   BROKER=tansu scripts/run.sh   # the same on tansu instead of Apache Kafka (the default)
#   BROKER=external KAFKA_BOOTSTRAP_SERVERS=host:port scripts/run.sh   # on a running broker
#
# Installs the broker and redis-server when missing (once), builds the binaries, and stops
# everything it started when it ends, also on failure or Ctrl-C. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/infra.sh

keep=0
demo=1
cluster=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --no-demo) demo=0; keep=1 ;;
    --redis-cluster) cluster=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/huleedu/target}"
infra_ensure_tools
infra_log "building the services (first time: a few minutes)"
cargo build --workspace --bins --locked --quiet
BIN="$CARGO_TARGET_DIR/debug"

if [ "$cluster" = 1 ]; then
  infra_start --durable --redis-cluster
  # The services keep their state on the cluster; a commit counts once a replica has it.
  export REDIS_MODE=cluster REDIS_URL="$INFRA_REDIS_CLUSTER" REDIS_WAIT_REPLICAS="${REDIS_WAIT_REPLICAS:-1}"
  infra_log "services on the Redis Cluster at $REDIS_URL (REDIS_WAIT_REPLICAS=$REDIS_WAIT_REPLICAS)"
else
  infra_start --durable
fi

export OPERATOR_TOKEN="${OPERATOR_TOKEN:-local-operator-token}"
export RUST_LOG="${RUST_LOG:-info,librdkafka=warn}"
BCS_PORT=$(infra_free_port); BOS_PORT=$(infra_free_port); SIM_PORT=$(infra_free_port)
# The operator console on its default port when free (a stable address to bookmark).
CON_PORT=8080
case " $BCS_PORT $BOS_PORT $SIM_PORT " in *" 8080 "*) CON_PORT=$(infra_free_port) ;; esac
python3 -c 'import socket; socket.socket().bind(("127.0.0.1", 8080))' 2>/dev/null || CON_PORT=$(infra_free_port)
export BCS_URL="http://127.0.0.1:$BCS_PORT" BOS_URL="http://127.0.0.1:$BOS_PORT" SIM_URL="http://127.0.0.1:$SIM_PORT"
export CONSOLE_URL="http://127.0.0.1:$CON_PORT"

start_service() {
  local name=$1; shift
  env "$@" LOG_FORMAT=json "$BIN/$name" >"$INFRA_DIR/$name.log" 2>&1 &
  INFRA_PIDS+=("$!")
}
start_service batch-conductor HTTP_ADDR="127.0.0.1:$BCS_PORT"
start_service batch-orchestrator HTTP_ADDR="127.0.0.1:$BOS_PORT" BCS_URL="$BCS_URL"
start_service els-simulator HTTP_ADDR="127.0.0.1:$SIM_PORT"
start_service pipeline-console HTTP_ADDR="127.0.0.1:$CON_PORT" KAFKA_CONSUMER_GROUP=pipeline-console

wait_ready() {
  local name=$1 url=$2 start=$SECONDS
  until curl -fsS "$url/readyz" >/dev/null 2>&1; do
    if (( SECONDS - start > 60 )); then
      infra_log "$name is not ready after 60 s; last log lines:"
      tail -n 20 "$INFRA_DIR/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
}
wait_ready batch-conductor "$BCS_URL"
wait_ready batch-orchestrator "$BOS_URL"
wait_ready els-simulator "$SIM_URL"
wait_ready pipeline-console "$CONSOLE_URL"
infra_log "stack ready: orchestrator $BOS_URL, conductor $BCS_URL, worker $SIM_URL, console $CONSOLE_URL (logs in $INFRA_DIR)"

if [ "$demo" = 1 ]; then
  "$BIN/hulectl" --kafka "$KAFKA_BOOTSTRAP_SERVERS" --bos-url "$BOS_URL" --bcs-url "$BCS_URL" --sim-url "$SIM_URL" demo --console-url "$CONSOLE_URL"
fi

if [ "$keep" = 1 ]; then
  cat <<TXT

The stack keeps running until you press Ctrl-C. The operator console: $CONSOLE_URL
(the operator token for its forms: $OPERATOR_TOKEN). In another terminal:

  export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS BOS_URL=$BOS_URL BCS_URL=$BCS_URL SIM_URL=$SIM_URL OPERATOR_TOKEN=$OPERATOR_TOKEN
  $BIN/hulectl --help
  curl -s -X POST \$SIM_URL/v1/batches -H 'content-type: application/json' -d '{"batch_id":"my-batch","essay_count":5}'
  $BIN/hulectl submit --batch my-batch --pipeline nlp --wait
  $BIN/hulectl status --batch my-batch

Logs: $INFRA_DIR/*.log
TXT
  INFRA_KEEP=""
  while true; do sleep 3600; done
else
  infra_log "done; run 'scripts/run.sh --keep' to keep the stack running and explore it"
fi
