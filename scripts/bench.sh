#!/usr/bin/env bash
# The performance benchmark (not part of the test suite): the services against the physical
# floor, a minimal Kafka relay with the same client settings, on one broker and one Redis.
#
#   scripts/bench.sh                     # full run: floor, latency, throughput (1000 batches),
#                                        # Redis calls per transition, RSS with 10,000 live
#                                        # batches and over a 100,000-event soak
#   scripts/bench.sh --batches 200 --live-batches 0 --soak-events 0     # quick run
#   (every run ends its throughput stage with a scale-out run: 2 orchestrators + 2 conductors,
#   topics with 6 partitions; --scale-out-batches 0 skips it)
#   scripts/bench.sh --help              # every option
#   BROKER=tansu scripts/bench.sh        # on tansu instead of Apache Kafka (the default)
#   scripts/bench.sh --redis-cluster     # the services on a Redis Cluster (3 masters, 3
#                                        # replicas; REDIS_MODE=cluster) instead of one Redis
#   scripts/bench.sh --redis-cluster --redis-wait-replicas 1   # ... every commit confirmed
#                                        # by a replica (REDIS_WAIT_REPLICAS=1)
#
# Installs the broker and redis-server when missing (once), builds the release binaries, starts
# its own broker and Redis on free ports (scripts/lib/infra.sh), runs target/release/huleedu-bench,
# prints the table and writes target/bench/results.json (or --out PATH). Stops everything it
# started when it ends, also on failure or Ctrl-C. Environment given to this script (e.g.
# KAFKA_FETCH_WAIT_MAX_MS) applies to the floor relay and the services alike.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/infra.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/huleedu/target}"
# --redis-cluster (this script's own option) starts a Redis Cluster and runs the services on
# it (huleedu-bench run --redis-mode cluster); every other option goes to huleedu-bench.
cluster=0
args=()
for arg in "$@"; do
  case "$arg" in
    -h|--help)
      cargo build --release --locked --quiet -p huleedu-bench
      echo "scripts/bench.sh [--redis-cluster] [huleedu-bench run options]"
      echo "  --redis-cluster: the services on a Redis Cluster (3 masters, 3 replicas) this script starts"
      echo
      exec "$CARGO_TARGET_DIR/release/huleedu-bench" run --help ;;
    --redis-cluster) cluster=1 ;;
    --redis-mode|--redis-mode=*|--redis)
      infra_log "$arg is set by this script (use --redis-cluster for a Redis Cluster)"; exit 2 ;;
    *) args+=("$arg") ;;
  esac
done

infra_ensure_tools
infra_log "building the release binaries (first time: several minutes)"
cargo build --release --locked --bins \
  -p batch-orchestrator -p batch-conductor -p els-simulator -p huleedu-bench
BIN="$CARGO_TARGET_DIR/release"

export BROKER
if [ "$cluster" = 1 ]; then
  infra_start --redis-cluster
  redis=(--redis "$INFRA_REDIS_CLUSTER" --redis-mode cluster)
else
  infra_start
  redis=(--redis "$REDIS_URL")
fi
infra_log "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/huleedu-bench" run --kafka "$KAFKA_BOOTSTRAP_SERVERS" "${redis[@]}" \
  --bin-dir "$BIN" ${args[@]+"${args[@]}"}
