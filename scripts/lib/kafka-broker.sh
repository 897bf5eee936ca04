#!/usr/bin/env bash
# One Apache Kafka broker for local runs and tests, in the foreground: KRaft combined mode
# (broker and controller in one process, node 1), data and configuration under DIR. The first
# start formats DIR's storage; later starts on the same DIR reuse it (topics, messages and
# committed offsets survive a SIGKILL and restart). The process becomes the JVM (exec), so a
# signal to this script's pid reaches the broker itself.
#
#   scripts/lib/kafka-broker.sh --dir DIR --port PORT --controller-port PORT \
#       [--tls-dir D --ssl-port P --mtls-port P --sasl-ssl-port P \
#        --scram-user NAME:PASSWORD --plain-user NAME:PASSWORD]
#
# Listeners, all on 127.0.0.1:
#   PLAINTEXT      --port             no TLS, no authentication
#   CONTROLLER     --controller-port  KRaft quorum (internal)
#   SSL            --ssl-port         TLS, server certificate from D (scripts/lib/certs.sh);
#                                     a client certificate is verified when one is sent
#   MTLS           --mtls-port        TLS with a client certificate required (mutual TLS)
#   SASL_SSL       --sasl-ssl-port    TLS + SASL: SCRAM-SHA-256 and SCRAM-SHA-512 for the
#                                     --scram-user (credentials written at format time), PLAIN
#                                     for the --plain-user
# The broker's jars come from scripts/lib/kafka.sh (kafka_ensure installs them; this script
# does not download). Heap: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m). Log: stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/kafka.sh"

dir="" port="" cport="" tls="" ssl_port="" mtls_port="" sasl_port="" scram="" plain=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --controller-port) cport=$2; shift 2 ;;
    --tls-dir) tls=$2; shift 2 ;;
    --ssl-port) ssl_port=$2; shift 2 ;;
    --mtls-port) mtls_port=$2; shift 2 ;;
    --sasl-ssl-port) sasl_port=$2; shift 2 ;;
    --scram-user) scram=$2; shift 2 ;;
    --plain-user) plain=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "kafka-broker.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] && [ -n "$port" ] && [ -n "$cport" ] || {
  echo "kafka-broker.sh: --dir, --port and --controller-port are required" >&2; exit 2; }
if [ -n "$tls" ] && { [ -z "$ssl_port" ] || [ -z "$mtls_port" ] || [ -z "$sasl_port" ] || [ -z "$scram" ] || [ -z "$plain" ]; }; then
  echo "kafka-broker.sh: --tls-dir needs --ssl-port, --mtls-port, --sasl-ssl-port, --scram-user and --plain-user" >&2
  exit 2
fi

libs=$(kafka_libs)
[ -f "$libs/.complete" ] || {
  echo "kafka-broker.sh: Apache Kafka $KAFKA_VERSION is not installed in $libs (scripts/test.sh and scripts/run.sh install it; or: source scripts/lib/kafka.sh && kafka_ensure)" >&2
  exit 1; }
mkdir -p "$dir/data"
dir=$(cd "$dir" && pwd)

listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
if [ -n "$tls" ]; then
  tls=$(cd "$tls" && pwd)
  listeners="$listeners,SSL://127.0.0.1:$ssl_port,MTLS://127.0.0.1:$mtls_port,SASL_SSL://127.0.0.1:$sasl_port"
  protocols="$protocols,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL"
fi
advertised=${listeners/,CONTROLLER:\/\/127.0.0.1:$cport/}

cat >"$dir/server.properties" <<PROPS
# Written by scripts/lib/kafka-broker.sh: a single-node test broker (not for production).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
log.dirs=$dir/data
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The services create their topics; nothing appears by accident.
auto.create.topics.enable=false
# A broker restarted after a SIGKILL registers again at once: the controller keeps the dead
# incarnation's registration for this long (default 9 s).
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
# Tests join groups often and use short session time-outs (the default minimum is 6 s).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
PROPS

if [ -n "$tls" ]; then
  pw=$(cat "$tls/store.password")
  cat >>"$dir/server.properties" <<PROPS
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$pw
ssl.truststore.type=PKCS12
ssl.truststore.location=$tls/truststore.p12
ssl.truststore.password=$pw
listener.name.ssl.ssl.client.auth=requested
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${plain%%:*}="${plain#*:}";
PROPS
fi

cat >"$dir/log4j2.properties" <<'LOG'
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
# Start-up, group membership and rebalances: what a test failure's diagnosis needs.
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.group.name = org.apache.kafka.coordinator.group
logger.group.level = info
LOG

java_opts=(${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties")

if [ ! -f "$dir/data/meta.properties" ]; then
  # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding. Not one that starts
  # with '-': the storage tool's argument parser would take it for an option.
  cluster_id=-
  while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  format=(format --cluster-id "$cluster_id" --config "$dir/server.properties")
  if [ -n "$tls" ]; then
    format+=(--add-scram "SCRAM-SHA-256=[name=${scram%%:*},password=${scram#*:}]"
             --add-scram "SCRAM-SHA-512=[name=${scram%%:*},password=${scram#*:}]")
  fi
  java -cp "$libs/*" "${java_opts[@]}" kafka.tools.StorageTool "${format[@]}" >"$dir/format.log" 2>&1 || {
    echo "kafka-broker.sh: formatting the storage in $dir/data failed:" >&2
    tail -n 20 "$dir/format.log" >&2
    exit 1; }
fi

exec java -cp "$libs/*" "${java_opts[@]}" kafka.Kafka "$dir/server.properties"
