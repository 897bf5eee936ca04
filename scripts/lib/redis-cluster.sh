#!/usr/bin/env bash
# A Redis Cluster of local redis-server processes on 127.0.0.1, for tests, demos and benchmarks:
# three masters and one replica each (six nodes), every node with its data in its own directory.
#
#   redis-cluster.sh node DIR PORT BUS_PORT [redis-server options...]
#       Run one cluster node in the foreground (exec): client port PORT, cluster bus BUS_PORT,
#       its nodes.conf in DIR, so a node killed and started again with the same DIR and ports
#       rejoins under its old identity (as a replica if its replica was promoted meanwhile).
#   redis-cluster.sh create PORT...
#       Join running nodes into one cluster (the first half become masters, one replica each for
#       the rest) and wait until every node reports cluster_state:ok and every replica is in sync.
#
# REDIS_CLUSTER_NODE_TIMEOUT_MS (default 2000): how long a master may be silent before its
# replica takes over (cluster-node-timeout). REDIS_CLI_ARGS: extra redis-cli arguments for
# `create` (e.g. "--tls --cacert ca.pem --user admin --pass secret" for a TLS cluster with ACL
# users; the nodes then get their TLS and user options after BUS_PORT).
set -euo pipefail

log() { printf '\033[1;34m[redis-cluster]\033[0m %s\n' "$*" >&2; }

cmd=${1:-}
shift || true
case "$cmd" in
  node)
    dir=$1 port=$2 bus=$3
    shift 3
    mkdir -p "$dir"
    exec redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout "${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}" \
      --repl-diskless-sync-delay 0 \
      --save "" --appendonly no --dir "$dir" --daemonize no "$@"
    ;;
  create)
    [ $# -ge 6 ] || { log "create needs at least six ports (three masters, three replicas)"; exit 2; }
    nodes=()
    for p in "$@"; do nodes+=("127.0.0.1:$p"); done
    # shellcheck disable=SC2206
    cli=(redis-cli ${REDIS_CLI_ARGS:-})
    "${cli[@]}" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    deadline=$((SECONDS + 60))
    for p in "$@"; do
      until "${cli[@]}" -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
        if (( SECONDS > deadline )); then
          log "node $p: cluster not ok within 60 s"; "${cli[@]}" -p "$p" cluster info >&2 || true; exit 1
        fi
        sleep 0.1
      done
      until info=$("${cli[@]}" -p "$p" info replication 2>/dev/null) \
          && { grep -q '^role:master' <<<"$info" || grep -q '^master_link_status:up' <<<"$info"; }; do
        if (( SECONDS > deadline )); then
          log "node $p: replica not in sync within 60 s"; exit 1
        fi
        sleep 0.1
      done
    done
    # Every node must also know the whole slot map (gossip takes a moment after create).
    for p in "$@"; do
      until [ "$("${cli[@]}" -p "$p" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = "$#" ]; do
        if (( SECONDS > deadline )); then log "node $p: does not know all $# nodes within 60 s"; exit 1; fi
        sleep 0.1
      done
    done
    log "cluster of $# nodes ok (ports $*)"
    ;;
  *)
    log "usage: redis-cluster.sh node DIR PORT BUS_PORT [options...] | create PORT..."
    exit 2
    ;;
esac
