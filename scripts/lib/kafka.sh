# shellcheck shell=bash
# Apache Kafka for local runs and tests: the broker's jars from Maven Central, resolved once into
# a cache under the user's cache directory and reused by every later run.
#
#   source scripts/lib/kafka.sh
#   kafka_ensure            # installs the jars when missing (needs java and mvn; installs
#                           # Debian's packages for them when missing); prints nothing
#   kafka_libs              # the folder with the jars (java -cp "$(kafka_libs)/*")
#   kafka_maven_resolve DIR WHAT <deps.xml   # any Maven dependencies into DIR (all or nothing)
#
# The broker itself is started by scripts/lib/kafka-broker.sh (one process in the foreground).
# Nothing here downloads anything once the cache is complete.

# The pinned broker version (org.apache.kafka:kafka_2.13 on Maven Central) and the log4j
# binding its SLF4J logging goes through.
KAFKA_VERSION="4.1.1"
KAFKA_LOG4J_VERSION="2.24.3"

kafka_log() { printf '\033[1;34m[kafka]\033[0m %s\n' "$*" >&2; }

# Where the jars of the pinned version live (HULEEDU_KAFKA_LIBS overrides it).
kafka_libs() {
  if [ -n "${HULEEDU_KAFKA_LIBS:-}" ]; then
    echo "$HULEEDU_KAFKA_LIBS"
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/huleedu/kafka/$KAFKA_VERSION/libs"
  fi
}

kafka_apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Install the broker's jars when the cache is not complete. Idempotent; the one step that
# downloads (from Maven Central, through Maven and its local repository ~/.m2).
kafka_ensure() {
  local libs
  libs=$(kafka_libs)
  if ! command -v java >/dev/null 2>&1; then
    kafka_log "java not found: installing Debian's openjdk-17-jre-headless"
    kafka_apt_install openjdk-17-jre-headless
  fi
  if [ -f "$libs/.complete" ]; then
    kafka_log "Apache Kafka $KAFKA_VERSION present: $libs"
    return 0
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    kafka_log "mvn not found: installing Debian's maven"
    kafka_apt_install maven
  fi
  kafka_log "Apache Kafka $KAFKA_VERSION not found: resolving it from Maven Central into $libs (once)"
  kafka_maven_resolve "$libs" "Apache Kafka" <<DEPS || return 1
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
DEPS
  kafka_log "Apache Kafka $KAFKA_VERSION installed: $(find "$libs" -name '*.jar' | wc -l) jars, $(du -sh "$libs" | cut -f1)"
}

# Resolves the Maven <dependency> elements read from stdin, with their runtime dependencies,
# into the folder $1 (all or nothing: a half-resolved folder is never left behind; `.complete`
# marks a whole one). $2 names what is resolved in the error message. Needs mvn.
kafka_maven_resolve() {
  local libs=$1 what=$2 work
  work=$(mktemp -d "${TMPDIR:-/tmp}/huleedu-maven-pom.XXXXXX")
  {
    cat <<'HEAD'
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>huleedu.local</groupId>
  <artifactId>classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
HEAD
    cat
    printf '  </dependencies>\n</project>\n'
  } >"$work/pom.xml"
  rm -rf "$libs.tmp"
  mkdir -p "$(dirname "$libs")"
  if ! (cd "$work" && mvn -B -q dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >"$work/mvn.log" 2>&1); then
    kafka_log "resolving $what with Maven failed; its output:"
    tail -n 40 "$work/mvn.log" >&2
    rm -rf "$work" "$libs.tmp"
    return 1
  fi
  rm -rf "$work" "$libs"
  mv "$libs.tmp" "$libs"
  touch "$libs/.complete"
}
