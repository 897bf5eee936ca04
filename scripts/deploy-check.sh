#!/usr/bin/env bash
# The deployment check: builds the image from the Dockerfile as it is, starts the stack of
# docker-compose.yml (Kafka, Redis, conductor, orchestrator, console, and the demo profile's
# reference worker) in containers, proves it works, and takes everything down again.
#
#   scripts/deploy-check.sh          # the whole check (see docs/deployment.md)
#   scripts/deploy-check.sh --cold   # first remove the stand-in images, the project's image and
#                                    # the engine's build cache (to measure a cold run)
#
# What it proves, in order; each step fails with a message naming what failed and the last log
# lines of the container concerned:
#   1. the image builds (build time and image size are printed), runs as uid 10001 and holds no
#      compiler and no sources;
#   2. the services start in their containers as that non-root user and become healthy through
#      the compose file's health checks; every container listens on 127.0.0.1 only; Kafka keeps
#      its data on its volume and Redis appends to its AOF;
#   3. `hulectl demo` (run from the image) against the containers ends with every pipeline
#      completed, no phase run twice, and the failed essays on the failed-essay DLQ; the
#      console lists the demo batch and draws its three pipelines;
#   4. `docker-compose restart batch-orchestrator` in the middle of a pipeline loses nothing:
#      the pipeline ends with the right numbers, every phase dispatched once;
#   5. `docker-compose down -v` leaves no container, volume or network of the stack behind.
#
# The machines this runs on reach no image registry and use only the loopback network, so:
# Debian's docker.io, docker-compose and debootstrap are installed when missing; dockerd is
# started with --bridge=none --iptables=false unless an engine is already running (and stopped
# at the end if the check started it); the images the two files name are replaced by local
# stand-ins made once (scripts/deploy/standins.sh); the stack runs from a rendered variant of
# docker-compose.yml with host networking, 127.0.0.1 and free ports
# (scripts/deploy/render-compose.py). Everything the check starts is stopped when it ends, also
# on failure or Ctrl-C. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/infra.sh           # infra_free_ports; scripts/lib/kafka.sh (KAFKA_VERSION)
source scripts/deploy/engine.sh
source scripts/deploy/standins.sh

cold=0
for arg in "$@"; do
  case "$arg" in
    --cold) cold=1 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

IMAGE="huleedu-pipeline:latest"
APP_SERVICES=(batch-conductor batch-orchestrator pipeline-console els-simulator)
ALL_SERVICES=(kafka redis "${APP_SERVICES[@]}")
RUN_UID=10001
# The reference worker's simulated work per essay in the check's stack: a 20-essay phase takes
# about 3 s, long enough to restart the orchestrator in the middle of a pipeline.
SIM_LATENCY_MS=150

check_start=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/huleedu-deploy.XXXXXX")
PROJECT="huleedu-deploy-$(basename "$WORK" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')"
COMPOSE_FILE="$WORK/compose/docker-compose.yml"
STACK_UP=0
export OPERATOR_TOKEN
OPERATOR_TOKEN="deploy-check-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

dc() { docker-compose --ansi never -p "$PROJECT" -f "$COMPOSE_FILE" --profile demo "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  rm -f "$INFRA_PORTS_GIVEN"
  # Helper containers of this run (hulectl), then the stack, then the engine if it is ours.
  local helpers
  helpers=$(docker ps -aq --filter "label=huleedu.deploy-check=$PROJECT" 2>/dev/null)
  [ -z "$helpers" ] || echo "$helpers" | xargs "$DEPLOY_DOCKER" rm -f >/dev/null 2>&1
  if [ "$STACK_UP" = 1 ]; then
    deploy_log "taking the stack down (docker-compose down -v)"
    dc down -v --remove-orphans -t 20 >"$WORK/down-cleanup.log" 2>&1 || tail -n 20 "$WORK/down-cleanup.log" >&2
  fi
  deploy_engine_stop
  if [ -n "${HULEEDU_DEPLOY_KEEP_WORK:-}" ]; then
    deploy_log "work folder kept: $WORK"
  else
    standin_rm_rootfs "$WORK/debian-rootfs"
    rm -rf "$WORK"
  fi
  case "$status" in
    0) ;;
    130|143) deploy_log "the deployment check was interrupted after $(elapsed "$check_start"); everything it started is stopped" ;;
    *) deploy_log "the deployment check FAILED (exit $status) after $(elapsed "$check_start")" ;;
  esac
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

elapsed() {
  local s=$(( SECONDS - $1 ))
  if (( s >= 60 )); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

cid() { dc ps -q "$1" 2>/dev/null; }

# The last log lines of a service's container.
service_logs() {
  local svc=$1 n=${2:-30} id
  id=$(cid "$svc")
  if [ -z "$id" ]; then
    echo "  (no container for $svc)" >&2
    return 0
  fi
  echo "---- last $n log lines of $svc ($(docker inspect -f '{{.State.Status}}' "$id" 2>/dev/null)) ----" >&2
  docker logs --tail "$n" "$id" 2>&1 | sed 's/^/  /' >&2
  local health
  health=$(docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{"\n"}}{{end}}{{end}}' "$id" 2>/dev/null | grep -v '^$' | tail -n 2)
  [ -z "$health" ] || { echo "---- last health checks of $svc ----" >&2; echo "$health" | sed 's/^/  /' >&2; }
}

# Fail the check: what failed, then the logs of the containers concerned.
fail() {
  local msg=$1; shift
  deploy_log "FAILED: $msg"
  local svc
  for svc in "$@"; do service_logs "$svc" 40; done
  exit 1
}

step() { deploy_log ""; deploy_log "== $* =="; }
ok() { deploy_log "ok: $*"; }

json() { /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }

deploy_ensure_packages
deploy_engine_start

# ---------------------------------------------------------------------------------------------
step "stand-ins for the images that cannot be pulled here"
if [ "$cold" = 1 ]; then
  deploy_log "--cold: removing the stand-ins, $IMAGE and the engine's build cache"
  docker image rm -f "$IMAGE" >/dev/null 2>&1 || true
  standins_remove
  docker builder prune -af >/dev/null
fi
t=$SECONDS
standins_ensure "$WORK"
standins_time=$(elapsed $t)
if [ ${#STANDINS_MADE[@]} -gt 0 ]; then
  standins_note="made in $standins_time: ${STANDINS_MADE[*]}"
else
  standins_note="present, reused"
fi
ok "stand-ins $standins_note"

# ---------------------------------------------------------------------------------------------
step "1. the image builds from the Dockerfile"
t=$SECONDS
if ! DOCKER_BUILDKIT=1 docker build --network host --progress plain --label huleedu.deploy-check=image \
      -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  deploy_log "the end of the build log:"
  tail -n 40 "$WORK/build.log" >&2
  fail "docker build of the Dockerfile failed"
fi
build_time=$(elapsed $t)
# The check's earlier builds of the image, now untagged.
docker image prune -f --filter label=huleedu.deploy-check=image >/dev/null
image_size=$(standin_size "$IMAGE")
ok "built $IMAGE in $build_time; image size $image_size"
uid=$(docker run --rm --network none "$IMAGE" id -u) || fail "the image does not run (docker run $IMAGE id -u)"
[ "$uid" = "$RUN_UID" ] || fail "the image runs as uid $uid, not $RUN_UID"
leftovers=$(docker run --rm --network none "$IMAGE" sh -c \
  'for c in cargo rustc cc gcc ld; do command -v $c; done; ls -d /src /usr/local/cargo /usr/local/rustup 2>/dev/null' || true)
[ -z "$leftovers" ] || fail "the runtime image holds build tools or sources: $leftovers"
for bin in batch-orchestrator batch-conductor els-simulator hulectl pipeline-console; do
  docker run --rm --network none "$IMAGE" "$bin" --help >/dev/null 2>&1 || fail "the image's $bin does not run ($bin --help)"
done
ok "runs as uid $RUN_UID; no compiler, no sources; every binary starts"

# ---------------------------------------------------------------------------------------------
step "2. the stack starts in its containers and becomes healthy"
read -r P_KAFKA P_CONTROLLER P_REDIS P_BCS P_BOS P_SIM P_CON P_PROM <<<"$(infra_free_ports 8)"
mkdir -p "$WORK/compose"
/usr/bin/python3 scripts/deploy/render-compose.py docker-compose.yml "$COMPOSE_FILE" \
  --port "9092=$P_KAFKA" --port "9093=$P_CONTROLLER" --port "6379=$P_REDIS" \
  --port "4002=$P_BCS" --port "5000=$P_BOS" --port "4010=$P_SIM" --port "8080=$P_CON" --port "9090=$P_PROM" \
  --env "els-simulator:SIM_ESSAY_LATENCY_MS=$SIM_LATENCY_MS" \
  || fail "rendering the check's variant of docker-compose.yml failed"
dc config -q || fail "docker-compose does not accept the rendered compose file ($COMPOSE_FILE)"
KAFKA="127.0.0.1:$P_KAFKA" BOS_URL="http://127.0.0.1:$P_BOS" BCS_URL="http://127.0.0.1:$P_BCS" SIM_URL="http://127.0.0.1:$P_SIM" CONSOLE_URL="http://127.0.0.1:$P_CON"
deploy_log "compose project $PROJECT: Kafka $KAFKA (controller :$P_CONTROLLER), Redis :$P_REDIS, conductor :$P_BCS, orchestrator :$P_BOS, console :$P_CON, worker :$P_SIM"
t=$SECONDS
STACK_UP=1
if ! dc up -d --no-build >"$WORK/up.log" 2>&1; then
  sed 's/^/  /' "$WORK/up.log" | tail -n 20 >&2
  bad=()
  for svc in "${ALL_SERVICES[@]}"; do
    id=$(cid "$svc")
    st=$([ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" || echo "not created")
    [ "$st" = healthy ] || bad+=("$svc")
  done
  fail "docker-compose up failed; not healthy: ${bad[*]:-?}" "${bad[@]}"
fi

# Every container healthy (compose's own health checks), within 4 minutes.
wait_healthy() {
  local deadline=$((SECONDS + ${2:-240})) svc id st pending
  local services
  read -ra services <<<"$1"
  while :; do
    pending=()
    for svc in "${services[@]}"; do
      id=$(cid "$svc")
      [ -n "$id" ] || fail "$svc has no container" 
      st=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
      case "$st" in
        "running healthy") ;;
        "running unhealthy") fail "$svc is unhealthy (its compose health check fails)" "$svc" ;;
        "running none") fail "$svc has no health check" "$svc" ;;
        exited*|dead*) fail "$svc stopped: $st (exit code $(docker inspect -f '{{.State.ExitCode}}' "$id"))" "$svc" ;;
        *) pending+=("$svc") ;;
      esac
    done
    [ ${#pending[@]} -eq 0 ] && return 0
    (( SECONDS < deadline )) || fail "not healthy in time: ${pending[*]}" "${pending[@]}"
    sleep 1
  done
}
wait_healthy "${ALL_SERVICES[*]}"
healthy_time=$(elapsed $t)
ok "all ${#ALL_SERVICES[@]} containers healthy in $healthy_time: ${ALL_SERVICES[*]}"

for svc in "${APP_SERVICES[@]}"; do
  id=$(cid "$svc")
  pid=$(docker inspect -f '{{.State.Pid}}' "$id")
  puid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  [ "$puid" = "$RUN_UID" ] || fail "$svc runs as uid $puid, not the non-root $RUN_UID" "$svc"
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ "$cmd" == *"$svc"* ]] || fail "$svc's container runs '$cmd', not $svc" "$svc"
done
ok "${APP_SERVICES[*]} run as uid $RUN_UID (their main process, seen from the host)"

for svc in "${ALL_SERVICES[@]}"; do
  policy=$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$(cid "$svc")")
  [ "$policy" = unless-stopped ] || [ "$policy" = always ] \
    || fail "$svc has restart policy '${policy:-none}': after a crash or a reboot of the engine it stays down while the services wait for it"
done
ok "every container comes back after a crash or an engine restart (restart: unless-stopped)"

ss -ltnpH >"$WORK/listen.txt"
for svc in "${ALL_SERVICES[@]}"; do
  pid=$(docker inspect -f '{{.State.Pid}}' "$(cid "$svc")")
  addrs=$(grep "pid=$pid," "$WORK/listen.txt" | awk '{print $4}' | sort -u | tr '\n' ' ')
  [ -n "$addrs" ] || fail "$svc (pid $pid) listens on no TCP port" "$svc"
  for a in $addrs; do
    # Java reports its IPv4 sockets as IPv4-mapped IPv6 addresses.
    [[ "$a" == 127.0.0.1:* || "$a" == "[::ffff:127.0.0.1]:"* ]] || fail "$svc listens on $a, not only on 127.0.0.1" "$svc"
  done
done
ok "every container listens on 127.0.0.1 only"

kafka_id=$(cid kafka)
log_dirs=$(docker exec "$kafka_id" sh -c 'grep "^log.dirs=" /opt/kafka/config/server.properties || echo "log.dirs unset (the broker uses /tmp/kafka-logs)"')
docker exec "$kafka_id" test -f /var/lib/kafka/data/meta.properties \
  || fail "Kafka does not keep its data on its volume /var/lib/kafka/data ($log_dirs): topics and offsets would be lost when the container is replaced" kafka
ok "Kafka keeps its data on its volume ($log_dirs)"
redis_id=$(cid redis)
redis_aof=$(docker exec "$redis_id" redis-cli -p "$P_REDIS" config get appendonly | tail -n 1)
fsync=$(docker exec "$redis_id" redis-cli -p "$P_REDIS" config get appendfsync | tail -n 1)
{ [ "$redis_aof" = yes ] && [ "$fsync" = everysec ]; } || fail "Redis runs with appendonly=$redis_aof appendfsync=$fsync, not AOF everysec" redis
ok "Redis appends to its AOF (everysec) in /data"

# hulectl from the image, on the host network, against the containers.
hulectl() {
  docker run --rm --network host --label "huleedu.deploy-check=$PROJECT" \
    -e NO_COLOR=1 -e OPERATOR_TOKEN "$IMAGE" \
    hulectl --kafka "$KAFKA" --bos-url "$BOS_URL" --bcs-url "$BCS_URL" --sim-url "$SIM_URL" --color never "$@"
}

# ---------------------------------------------------------------------------------------------
step "3. the demo against the containers"
batch="deploy-demo-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
t=$SECONDS
set +e
hulectl demo --batch "$batch" --timeout 120 2>&1 | tee "$WORK/demo.log" | sed 's/^/  | /' >&2
demo_status=${PIPESTATUS[0]}
set -e
demo_time=$(elapsed $t)
[ "$demo_status" = 0 ] || fail "hulectl demo ended with exit code $demo_status (see its output above)" "${APP_SERVICES[@]}"
grep -q "RESULT: all 3 pipelines ended; no phase ran twice" "$WORK/demo.log" \
  || fail "the demo's verdict is not 'all 3 pipelines ended; no phase ran twice'" "${APP_SERVICES[@]}"
hulectl status --batch "$batch" --json >"$WORK/demo-status.json" 2>"$WORK/demo-status.err" \
  || fail "hulectl status --batch $batch failed: $(cat "$WORK/demo-status.err")" batch-orchestrator batch-conductor
verdict=$(json '
h = (d.get("orchestrator") or {}).get("history") or []
bad = [p["requested_pipeline"] + ": " + p["final_status"] for p in h if p["final_status"] not in ("completed_successfully", "completed_with_failures")]
active = (d.get("orchestrator") or {}).get("active_pipeline")
if len(h) != 3: print(f"the orchestrator lists {len(h)} finished pipelines, not 3")
elif bad: print("pipelines not completed: " + ", ".join(bad))
elif active: print("a pipeline is still active")
else: print("ok " + ", ".join(p["requested_pipeline"] + " " + p["final_status"] for p in h))
' <"$WORK/demo-status.json")
[[ "$verdict" == ok* ]] || fail "demo batch $batch: $verdict" batch-orchestrator
failed_ids=$(json 'print(" ".join(sorted(d["orchestrator"]["phase_results"]["spellcheck"]["failed_essay_ids"])))' <"$WORK/demo-status.json")
hulectl dlq list --batch "$batch" --json >"$WORK/demo-dlq.json" 2>"$WORK/demo-dlq.err" \
  || fail "hulectl dlq list --batch $batch failed: $(cat "$WORK/demo-dlq.err")" batch-conductor
dlq_ids=$(json 'print(" ".join(sorted(r["essay_id"] for r in d["failed_essays"])))' <"$WORK/demo-dlq.json")
poison=$(json 'print(len(d.get("poison", [])))' <"$WORK/demo-dlq.json")
[ -n "$failed_ids" ] || fail "no essay failed spellcheck in the demo batch $batch (expected 3)" els-simulator
[ "$dlq_ids" = "$failed_ids" ] \
  || fail "failed-essay DLQ of $batch holds [$dlq_ids], the orchestrator reports [$failed_ids] failed" batch-conductor
[ "$poison" = 0 ] || fail "$poison poison messages of $batch on the <topic>.DLQ topics" "${APP_SERVICES[@]}"
ok "demo in $demo_time: ${verdict#ok }; no phase ran twice; failed essays on the DLQ: $dlq_ids"
# The console in its container shows the demo batch with its three pipelines.
console_page=$(curl -fsS "$CONSOLE_URL/batches/$batch") || fail "the console does not serve the demo batch's page ($CONSOLE_URL/batches/$batch)" pipeline-console
lanes=$(grep -o '<section class="lane"' <<<"$console_page" | wc -l)
[ "$lanes" = 3 ] || fail "the console's page of $batch draws $lanes pipeline timelines, not 3" pipeline-console
curl -fsS "$CONSOLE_URL/batches" | grep -q "data-batch=\"$batch\"" || fail "the console's batch list does not list $batch" pipeline-console
ok "the console ($CONSOLE_URL) lists $batch and draws its 3 pipelines"

# ---------------------------------------------------------------------------------------------
step "4. docker-compose restart of the orchestrator in the middle of a pipeline"
rbatch="deploy-restart-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
rfail="\"$rbatch-e04\", \"$rbatch-e11\", \"$rbatch-e17\""
curl -fsS -X POST "$SIM_URL/v1/batches" -H 'content-type: application/json' \
  -d "{\"batch_id\": \"$rbatch\", \"essay_count\": 20, \"fail\": {\"spellcheck\": [$rfail]}}" >/dev/null \
  || fail "registering batch $rbatch with the reference worker failed" els-simulator
submit_name="$PROJECT-submit"
docker run -d --name "$submit_name" --network host --label "huleedu.deploy-check=$PROJECT" \
  -e NO_COLOR=1 "$IMAGE" hulectl --kafka "$KAFKA" --color never \
  submit --batch "$rbatch" --pipeline comprehensive --wait --timeout 300 >/dev/null
bos_id=$(cid batch-orchestrator)
started_before=$(docker inspect -f '{{.State.StartedAt}}' "$bos_id")
# Wait until the pipeline is in its second phase (spellcheck done, nlp dispatched and running).
deadline=$((SECONDS + 120))
phase=""
while :; do
  phase=$(curl -fsS "$BOS_URL/v1/batches/$rbatch/status" 2>/dev/null | json '
a = d.get("active_pipeline")
print("%s %d" % (a["current_phase"], len(a["runs"])) if a else "")' 2>/dev/null || true)
  [[ "$phase" == *" 2" ]] && break
  (( SECONDS < deadline )) || fail "the comprehensive pipeline of $rbatch did not reach its second phase within 120 s (now: '${phase:-no active pipeline}')" batch-orchestrator els-simulator
  sleep 0.2
done
deploy_log "pipeline comprehensive of $rbatch is running ${phase% *} (phase 2 of 4): restarting the orchestrator"
t=$SECONDS
dc restart -t 30 batch-orchestrator >"$WORK/restart.log" 2>&1 || fail "docker-compose restart batch-orchestrator failed: $(tail -n 3 "$WORK/restart.log")" batch-orchestrator
restart_time=$(elapsed $t)
started_after=$(docker inspect -f '{{.State.StartedAt}}' "$bos_id")
[ "$started_after" != "$started_before" ] || fail "the orchestrator's container did not restart" batch-orchestrator
wait_healthy batch-orchestrator 120
ok "orchestrator restarted in $restart_time and healthy again"
deadline=$((SECONDS + 300))
while [ "$(docker inspect -f '{{.State.Running}}' "$submit_name")" = true ]; do
  (( SECONDS < deadline )) || fail "hulectl submit --wait for $rbatch did not end within 300 s" batch-orchestrator els-simulator
  sleep 0.5
done
submit_status=$(docker inspect -f '{{.State.ExitCode}}' "$submit_name")
docker logs "$submit_name" >"$WORK/submit.log" 2>&1
sed 's/^/  | /' "$WORK/submit.log" >&2
[ "$submit_status" = 0 ] || fail "the pipeline across the restart did not complete (hulectl submit --wait exit $submit_status)" batch-orchestrator
{ grep -q "completed_with_failures" "$WORK/submit.log" && grep -q "17 successful, 3 failed" "$WORK/submit.log"; } \
  || fail "the pipeline across the restart did not end completed_with_failures with 17 successful, 3 failed" batch-orchestrator
counts=$(curl -fsS "$SIM_URL/v1/counts/$rbatch") || fail "reading the worker's dispatch counts failed" els-simulator
dispatch=$(echo "$counts" | json '
p = d["phases"]
want = ["spellcheck", "nlp", "cj_assessment", "ai_feedback"]
bad = ["%s %d" % (k, p.get(k, {}).get("dispatched", 0)) for k in want if p.get(k, {}).get("dispatched", 0) != 1]
print("ok" if not bad else "dispatched not once: " + ", ".join(bad))')
[ "$dispatch" = ok ] || fail "batch $rbatch across the restart: $dispatch" batch-orchestrator els-simulator
hulectl dlq list --batch "$rbatch" --kind essays --json >"$WORK/restart-dlq.json" 2>/dev/null || fail "hulectl dlq list --batch $rbatch failed" batch-conductor
rdlq=$(json 'print(len({r["essay_id"] for r in d["failed_essays"]}))' <"$WORK/restart-dlq.json")
[ "$rdlq" = 3 ] || fail "batch $rbatch: $rdlq failed essays on the DLQ, not 3" batch-conductor
rstatus=$(curl -fsS "$BOS_URL/v1/batches/$rbatch/status" | json '
h = d["history"]
print("ok" if len(h) == 1 and h[0]["final_status"] == "completed_with_failures" and not d["active_pipeline"]
      and h[0]["successful_essay_count"] == 17 and h[0]["failed_essay_count"] == 3 else json.dumps(h)[:300])')
[ "$rstatus" = ok ] || fail "the orchestrator's record of $rbatch after the restart: $rstatus" batch-orchestrator
ok "nothing lost: comprehensive ended completed_with_failures (17 ok / 3 failed), each of the 4 phases dispatched once, 3 failed essays on the DLQ"

# ---------------------------------------------------------------------------------------------
step "5. docker-compose down -v leaves nothing behind"
dc down -v --remove-orphans -t 20 >"$WORK/down.log" 2>&1 || { tail -n 20 "$WORK/down.log" >&2; fail "docker-compose down -v failed"; }
STACK_UP=0
label="label=com.docker.compose.project=$PROJECT"
left_c=$(docker ps -aq --filter "$label")
left_v=$(docker volume ls -q --filter "$label")
left_n=$(docker network ls -q --filter "$label")
[ -z "$left_c$left_v$left_n" ] || fail "left after down -v: containers [$left_c] volumes [$left_v] networks [$left_n]"
for p in $P_KAFKA $P_CONTROLLER $P_REDIS $P_BCS $P_BOS $P_SIM; do
  ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || fail "port $p still answers after down -v"
done
ok "no container, volume, network or listening port of the stack left"

deploy_log ""
deploy_log "deployment check passed in $(elapsed $check_start)"
deploy_log "  stand-ins        $standins_note"
deploy_log "  image build      $build_time"
deploy_log "  image size       $image_size ($IMAGE)"
deploy_log "  stack healthy    $healthy_time after docker-compose up"
deploy_log "  demo             $demo_time"
deploy_log "  restart (BOS)    $restart_time"
