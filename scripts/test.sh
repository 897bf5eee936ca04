#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration and end-to-end tests
# against a real broker (tansu) and a real Redis that this script starts on free ports and stops
# at the end. Installs tansu and redis-server first when they are missing. Idempotent.
#
# Extra arguments are passed to `cargo test` (e.g. scripts/test.sh -p huleedu-it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/infra.sh

# One build directory shared by every checkout and CI run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/huleedu/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

infra_ensure_tools

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> building services and tests"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run

infra_start
# The tests find the broker and Redis here; they never use the defaults (6379/9092).
export HULEEDU_TEST_KAFKA="$KAFKA_BOOTSTRAP_SERVERS"
export HULEEDU_TEST_REDIS="$REDIS_URL"
unset KAFKA_BOOTSTRAP_SERVERS REDIS_URL
echo "==> cargo test"
log="$INFRA_DIR/cargo-test.log"
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: the sum of every test binary's result line
# (libtest's "test result: ... N passed; M failed" and the end-to-end harness's "N passed, M failed").
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
  END { printf "\ntotal: %d passed, %d failed\n", p, f }
' "$log"
exit "$status"
