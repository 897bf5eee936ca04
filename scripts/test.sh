#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration, end-to-end, chaos
# and shutdown tests against a real broker and a real Redis that this script starts on free
# ports and stops at the end. Installs what is missing first (Apache Kafka from Maven Central,
# tansu with cargo, redis-server, chromium, chromium-driver and prometheus with apt).
# Idempotent.
#
#   scripts/test.sh                  # everything on Apache Kafka (with its TLS and SASL
#                                    # listeners and a TLS Redis for the security tests), the
#                                    # store tests again over TLS, the store tests and every
#                                    # end-to-end scenario again on a Redis Cluster (the store
#                                    # tests also on a TLS cluster with an ACL user), the
#                                    # end-to-end smoke subset on tansu, then the deployment
#                                    # check (Docker image and compose stack,
#                                    # scripts/deploy-check.sh)
#   BROKER=tansu scripts/test.sh     # everything on tansu (no smoke run on a second broker)
#   scripts/test.sh ARGS...          # extra arguments go to `cargo test` (e.g. -p huleedu-it);
#                                    # then the runs after it (TLS store, Redis Cluster, tansu
#                                    # smoke, deployment check) are skipped
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/infra.sh
if [ "$BROKER" = external ]; then
  infra_log "the test command starts (and kills and restarts) brokers of its own: use BROKER=kafka or tansu."
  infra_log "Integration tests alone against a running broker: HULEEDU_TEST_KAFKA=host:port HULEEDU_TEST_REDIS=redis://... cargo test -p huleedu-it --test integration -- kafka_plumbing:: (docs/infrastructure.md)"
  exit 2
fi
infra_check_broker "$BROKER"

# One build directory shared by every checkout and CI run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/huleedu/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

# The runs after `cargo test` (store over TLS, Redis Cluster, smoke on tansu, deployment check):
# only for a whole run on Apache Kafka.
smoke=0
[ "$BROKER" = kafka ] && [ $# -eq 0 ] && smoke=1
if [ "$smoke" = 1 ]; then infra_ensure_tools kafka tansu; else infra_ensure_tools "$BROKER"; fi
infra_ensure_test_tools

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> building services and tests"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run

secure=()
[ "$BROKER" = kafka ] && secure=(--secure)
infra_start "${secure[@]}" --redis-cluster --redis-replica
# The tests find the broker and Redis here; they never use the defaults (6379/9092). Stacks the
# end-to-end, chaos and demo tests start themselves run the same broker (HULEEDU_TEST_BROKER).
export HULEEDU_TEST_BROKER="$BROKER"
export HULEEDU_TEST_KAFKA="$KAFKA_BOOTSTRAP_SERVERS"
export HULEEDU_TEST_REDIS="$REDIS_URL"
# Replicas behind each master of the test Redis (the store's WAIT test counts on it): one here,
# none for the TLS Redis, one per master on the clusters.
export HULEEDU_TEST_REDIS_REPLICAS=1
if [ "$BROKER" = kafka ]; then
  export HULEEDU_TEST_KAFKA_SSL="$INFRA_KAFKA_SSL" HULEEDU_TEST_KAFKA_MTLS="$INFRA_KAFKA_MTLS"
  export HULEEDU_TEST_KAFKA_SASL_SSL="$INFRA_KAFKA_SASL_SSL" HULEEDU_TEST_TLS_DIR="$INFRA_TLS_DIR"
  export HULEEDU_TEST_KAFKA_SCRAM="$INFRA_KAFKA_SCRAM" HULEEDU_TEST_KAFKA_PLAIN="$INFRA_KAFKA_PLAIN"
  export HULEEDU_TEST_REDIS_TLS="$INFRA_REDIS_TLS"
fi
unset KAFKA_BOOTSTRAP_SERVERS REDIS_URL
log="$INFRA_DIR/cargo-test.log"
set +e
echo "==> cargo test (broker: $BROKER)"
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$smoke" = 1 ]; then
  echo "==> the store's integration tests again, over TLS with an ACL user"
  HULEEDU_TEST_REDIS="$INFRA_REDIS_TLS" HULEEDU_TEST_REDIS_CA="$INFRA_TLS_DIR/ca.pem" HULEEDU_TEST_REDIS_REPLICAS=0 \
    cargo test --locked -p huleedu-it --test integration -- store:: 2>&1 | tee -a "$log"
  tls_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$tls_status
  echo "==> on a Redis Cluster (3 masters + 3 replicas): the store's integration tests, then every end-to-end scenario (REDIS_WAIT_REPLICAS=1 on the main stack)"
  HULEEDU_TEST_REDIS_MODE=cluster HULEEDU_TEST_REDIS="$INFRA_REDIS_CLUSTER" \
    cargo test --locked -p huleedu-it --test integration -- store:: 2>&1 | tee -a "$log"
  cluster_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$cluster_status
  echo "==> the store's integration tests on a TLS-only Redis Cluster with an ACL user"
  HULEEDU_TEST_REDIS_MODE=cluster HULEEDU_TEST_REDIS="$INFRA_REDIS_CLUSTER_TLS" \
    HULEEDU_TEST_REDIS_CA="$INFRA_TLS_DIR/ca.pem" \
    cargo test --locked -p huleedu-it --test integration -- store:: 2>&1 | tee -a "$log"
  cluster_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$cluster_status
  HULEEDU_TEST_REDIS_MODE=cluster cargo test --locked -p huleedu-it --test e2e 2>&1 | tee -a "$log"
  cluster_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$cluster_status
  echo "==> end-to-end smoke subset on tansu"
  HULEEDU_TEST_BROKER=tansu cargo test --locked -p huleedu-it --test e2e -- --smoke 2>&1 | tee -a "$log"
  smoke_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$smoke_status
  echo "==> deployment check: the image and the compose stack in containers (scripts/deploy-check.sh)"
  scripts/deploy-check.sh 2>&1 | tee -a "$log"
  deploy_status=${PIPESTATUS[0]}
  [ "$status" -ne 0 ] || status=$deploy_status
  [ "$deploy_status" -eq 0 ] && echo "deploy-check: 1 passed, 0 failed" | tee -a "$log" \
    || echo "deploy-check: 0 passed, 1 failed" | tee -a "$log"
fi
set -e
# One closing line for the whole run: the sum of every test binary's result line
# (every "test result: ... N passed; M failed" line, and the deployment check's "N passed, M failed").
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
  END { printf "\ntotal: %d passed, %d failed\n", p, f }
' "$log"
exit "$status"
