# shellcheck shell=bash
# The Docker engine for the deployment check (scripts/deploy-check.sh): Debian's packages, and
# a dockerd started by the check when none is running, without a container bridge and without
# iptables rules (every container of the check uses host networking; nothing leaves loopback).
#
#   source scripts/deploy/engine.sh
#   deploy_ensure_packages   # docker.io, docker-compose, debootstrap, python3-yaml (apt, once)
#   deploy_engine_start      # uses a running engine, or starts dockerd and remembers its pid
#   deploy_engine_stop       # stops the dockerd started by deploy_engine_start (and only it)
#   docker ...               # Debian's docker client (20.10; BuildKit built in)
#
# dockerd keeps its images (the stand-ins, the build cache) in /var/lib/docker, so a later run
# reuses them. Its log: $DEPLOY_CACHE/dockerd.log.

DEPLOY_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/huleedu/deploy-check"
# Debian's client, not another one earlier on PATH: its built-in BuildKit needs no buildx plugin.
DEPLOY_DOCKER="${HULEEDU_DOCKER:-/usr/bin/docker}"
DEPLOY_DOCKERD_PID=""

deploy_log() { printf '\033[1;36m[deploy]\033[0m %s\n' "$*" >&2; }

docker() { "$DEPLOY_DOCKER" "$@"; }

deploy_apt_install() {
  local sudo="" log
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  mkdir -p "$DEPLOY_CACHE"
  log="$DEPLOY_CACHE/apt.log"
  if ! { $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
    deploy_log "apt-get install $* failed; the end of its output ($log):"
    tail -n 20 "$log" >&2
    return 1
  fi
}

deploy_ensure_packages() {
  local missing=()
  [ -x /usr/bin/docker ] && [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
  if [ ${#missing[@]} -gt 0 ]; then
    deploy_log "not found: ${missing[*]}: installing Debian's packages"
    # docker.io's own service is not started: there is no init system here, and the check
    # starts the engine itself (below).
    deploy_apt_install "${missing[@]}"
  fi
  deploy_log "$("$DEPLOY_DOCKER" --version), docker-compose $(docker-compose version --short 2>/dev/null)"
}

deploy_engine_start() {
  mkdir -p "$DEPLOY_CACHE"
  if docker info >/dev/null 2>&1; then
    deploy_log "using the Docker engine already running (server $(docker version -f '{{.Server.Version}}'))"
    return 0
  fi
  local log="$DEPLOY_CACHE/dockerd.log"
  deploy_log "starting dockerd --bridge=none --iptables=false (log: $log)"
  # Its own session: a Ctrl-C in the terminal reaches the check, which then takes the stack down
  # before it stops the engine, not the engine itself.
  setsid dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 &
  DEPLOY_DOCKERD_PID=$!
  local start=$SECONDS
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$DEPLOY_DOCKERD_PID" 2>/dev/null; then
      DEPLOY_DOCKERD_PID=""
      deploy_log "BLOCKED: the Docker engine cannot run on this machine; dockerd ended with:"
      tail -n 15 "$log" >&2
      return 1
    fi
    if (( SECONDS - start > 60 )); then
      deploy_log "BLOCKED: dockerd did not answer within 60 s; its log:"
      tail -n 15 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
  deploy_log "dockerd $(docker version -f '{{.Server.Version}}') running (pid $DEPLOY_DOCKERD_PID), no bridge, no iptables"
}

deploy_engine_stop() {
  [ -n "$DEPLOY_DOCKERD_PID" ] || return 0
  local pid=$DEPLOY_DOCKERD_PID _
  DEPLOY_DOCKERD_PID=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { deploy_log "dockerd stopped"; return 0; }
    sleep 0.2
  done
  deploy_log "dockerd did not stop within 30 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
