#!/usr/bin/env bash
# kafka-run-class.sh of the apache/kafka stand-in: runs a class of Apache Kafka with the jars in
# /opt/kafka/libs, honouring the distribution's KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_LOG4J_OPTS and KAFKA_OPTS (same defaults). The distribution's -name, -loggc and
# -daemon options are accepted and ignored (the process stays in the foreground).
set -euo pipefail
base_dir=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    -name) shift 2 ;;
    -loggc|-daemon) shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "USAGE: $0 classname [opts]" >&2; exit 1; }
heap=${KAFKA_HEAP_OPTS:--Xmx256M}
perf=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml}
# shellcheck disable=SC2086 # the option strings are lists of JVM options
exec java $heap $perf $log4j ${KAFKA_OPTS:-} -cp "$base_dir/libs/*" "$@"
