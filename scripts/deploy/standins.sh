# shellcheck shell=bash
# Local stand-ins for the images that the Dockerfile and docker-compose.yml name and that cannot
# be pulled on these machines (no image registry is reachable). Each is made here from Debian's
# packages (the one network source these machines have besides the language registries) and
# tagged with the official name, so both files stay as they are for a real deployment:
#
#   debian:bookworm-slim   debootstrap --variant=minbase bookworm, made slim as the official
#                          image is, + this machine's CA bundle, imported with `docker import`
#   rust:1.95-bookworm     that + this machine's rustup toolchain 1.95 (RUSTUP_HOME, CARGO_HOME
#                          and PATH as the official image sets them)
#   apache/kafka:4.1.1     that + Debian's OpenJDK 17 + the Apache Kafka 4.1.1 jars from Maven
#                          Central (scripts/lib/kafka.sh, plus kafka-tools for the bin/ tools),
#                          started like the official image (standins/kafka/docker/run)
#   redis:7.2              that + Debian's redis-server (7.0), data in /data, AOF as the command
#                          says
#
# Recipes: scripts/deploy/standins/<name>/. Each stand-in is made once and reused: it carries
# the labels huleedu.standin=<tag> and huleedu.standin.recipe=<hash of its recipe and parent>,
# and is made again only when that hash changes. An image under one of these tags without the
# label (a real one, e.g. pulled where a registry is reachable) is used as it is.
#
#   source scripts/deploy/engine.sh; source scripts/lib/kafka.sh; source scripts/deploy/standins.sh
#   standins_ensure WORKDIR          # makes what is missing; WORKDIR: scratch space
#   standins_remove                  # removes the stand-ins (only images labelled as such)

STANDINS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/standins"
STANDIN_DEBIAN="debian:bookworm-slim"
STANDIN_RUST="rust:1.95-bookworm"
STANDIN_RUST_VERSION="1.95"
STANDIN_KAFKA="apache/kafka:$KAFKA_VERSION"
STANDIN_REDIS="redis:7.2"
STANDINS_MADE=()

# The hash of a stand-in's recipe folder plus any extra words (parent image id, versions).
standin_hash() {
  local dir=$1; shift
  {
    (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-16
}

# 0 when TAG needs no (re)making: a stand-in of recipe HASH, or a real image.
standin_current() {
  local tag=$1 hash=$2 label
  docker image inspect "$tag" >/dev/null 2>&1 || return 1
  label=$(docker image inspect -f '{{index .Config.Labels "huleedu.standin.recipe"}}' "$tag" 2>/dev/null || true)
  if [ -z "$label" ] || [ "$label" = "<no value>" ]; then
    deploy_log "$tag present (not a stand-in: used as it is)"
    return 0
  fi
  if [ "$label" = "$hash" ]; then
    deploy_log "$tag stand-in present (recipe $hash)"
    return 0
  fi
  deploy_log "$tag stand-in is of an older recipe ($label): making it again"
  return 1
}

standin_image_id() { docker image inspect -f '{{.Id}}' "$1"; }

standin_build() {
  local tag=$1 hash=$2 ctx=$3 log=$4
  if ! DOCKER_BUILDKIT=0 docker build --network host --force-rm -t "$tag" \
        --label "huleedu.standin=$tag" --label "huleedu.standin.recipe=$hash" \
        "$ctx" >"$log" 2>&1; then
    deploy_log "making the $tag stand-in failed; the end of its build log ($log):"
    tail -n 30 "$log" >&2
    return 1
  fi
  STANDINS_MADE+=("$tag")
}

# The Debian mirror apt uses on this machine (the stand-ins' packages come from it too).
standin_debian_mirror() {
  local suffix=${1:-debian} uri
  if [ -n "${HULEEDU_DEBIAN_MIRROR:-}" ] && [ "$suffix" = debian ]; then
    echo "$HULEEDU_DEBIAN_MIRROR"; return
  fi
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
        | grep -E "/$suffix/?\$" | head -n1 || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null \
        | grep -E "/$suffix/?\$" | head -n1 || true)
  echo "${uri:-http://deb.debian.org/$suffix}"
}

# Remove a directory tree that debootstrap may have left file systems mounted in.
standin_rm_rootfs() {
  local dir=$1 m
  [ -d "$dir" ] || return 0
  for m in $(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$dir"
}

standin_debian() {
  local work=$1 mirror security hash rootfs log
  mirror=$(standin_debian_mirror debian)
  security=$(standin_debian_mirror debian-security)
  hash=$(standin_hash "$STANDINS_DIR/debian" "$mirror" "$security" "minbase bookworm" \
         "$(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -c1-16)")
  standin_current "$STANDIN_DEBIAN" "$hash" && return 0
  rootfs="$work/debian-rootfs"
  log="$work/debootstrap.log"
  deploy_log "making the $STANDIN_DEBIAN stand-in: debootstrap --variant=minbase bookworm from $mirror"
  standin_rm_rootfs "$rootfs"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$log" 2>&1; then
    deploy_log "debootstrap failed; the end of its log ($log):"
    tail -n 20 "$log" >&2
    standin_rm_rootfs "$rootfs"
    return 1
  fi
  # Slim, as the official image: no docs, manual pages, translations, package lists or caches,
  # now and in packages installed later; daemons never started by package scripts.
  install -m 0644 "$STANDINS_DIR/debian/dpkg-slim.cfg" "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  install -m 0644 "$STANDINS_DIR/debian/apt-container.conf" "$rootfs/etc/apt/apt.conf.d/docker-container"
  install -m 0755 "$STANDINS_DIR/debian/policy-rc.d" "$rootfs/usr/sbin/policy-rc.d"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,linda,lintian}/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # This machine's CA bundle: without it, cargo inside a build cannot reach the package
  # registry here ("self-signed certificate in certificate chain"). The local CAs also go where
  # update-ca-certificates finds them, so a later install of ca-certificates keeps them.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  if ! tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        --change "LABEL huleedu.standin=$STANDIN_DEBIAN" \
        --change "LABEL huleedu.standin.recipe=$hash" \
        - "$STANDIN_DEBIAN" >/dev/null; then
    standin_rm_rootfs "$rootfs"
    deploy_log "docker import of the $STANDIN_DEBIAN stand-in failed"
    return 1
  fi
  standin_rm_rootfs "$rootfs"
  STANDINS_MADE+=("$STANDIN_DEBIAN")
  deploy_log "$STANDIN_DEBIAN stand-in made ($(standin_size "$STANDIN_DEBIAN"))"
}

standin_size() {
  docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%d MB", $1 / 1000000}'
}

# The rustup toolchain of this machine that is Rust $STANDIN_RUST_VERSION.
standin_rust_toolchain() {
  local home=${RUSTUP_HOME:-$HOME/.rustup} t
  for t in "$home/toolchains/$STANDIN_RUST_VERSION.0-x86_64-unknown-linux-gnu" \
           "$home/toolchains/stable-x86_64-unknown-linux-gnu" "$home"/toolchains/*; do
    [ -x "$t/bin/rustc" ] || continue
    if "$t/bin/rustc" --version 2>/dev/null | grep -q "^rustc $STANDIN_RUST_VERSION\."; then
      readlink -f "$t"
      return 0
    fi
  done
  return 1
}

standin_rust() {
  local work=$1 toolchain rustup_bin version hash ctx name tool
  if ! toolchain=$(standin_rust_toolchain); then
    deploy_log "the $STANDIN_RUST stand-in needs this machine's Rust $STANDIN_RUST_VERSION toolchain (rustup); none found in ${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
    return 1
  fi
  rustup_bin=$(command -v rustup || echo "$HOME/.cargo/bin/rustup")
  rustup_bin=$(readlink -f "$rustup_bin")
  version=$("$toolchain/bin/rustc" --version)
  hash=$(standin_hash "$STANDINS_DIR/rust" "$(standin_image_id "$STANDIN_DEBIAN")" "$version" \
         "$("$rustup_bin" --version 2>/dev/null | head -n1)")
  standin_current "$STANDIN_RUST" "$hash" && return 0
  deploy_log "making the $STANDIN_RUST stand-in: $version from $toolchain"
  ctx="$work/rust-context"
  rm -rf "$ctx"
  name="$STANDIN_RUST_VERSION.0-x86_64-unknown-linux-gnu"
  mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
  # Hard links where possible (same file system), a copy otherwise; without the documentation.
  cp -al "$toolchain" "$ctx/rustup/toolchains/$name" 2>/dev/null || cp -a "$toolchain" "$ctx/rustup/toolchains/$name"
  rm -rf "$ctx/rustup/toolchains/$name/share/doc"
  cat >"$ctx/rustup/settings.toml" <<TOML
version = "12"
default_toolchain = "$name"
profile = "minimal"
auto_self_update = "disable"

[overrides]
TOML
  cp "$rustup_bin" "$ctx/cargo/bin/rustup"
  for tool in "$ctx/rustup/toolchains/$name"/bin/*; do
    tool=$(basename "$tool")
    ln -s rustup "$ctx/cargo/bin/$tool"
  done
  cp "$STANDINS_DIR/rust/Dockerfile" "$ctx/Dockerfile"
  standin_build "$STANDIN_RUST" "$hash" "$ctx" "$work/standin-rust.log" || return 1
  rm -rf "$ctx"
  deploy_log "$STANDIN_RUST stand-in made ($(standin_size "$STANDIN_RUST"))"
}

# kafka-tools (BrokerApiVersionsCommand for the health check, the other bin/ tools) and its
# dependencies, resolved from Maven Central once, like scripts/lib/kafka.sh does for the broker.
standin_kafka_tools_libs() {
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/huleedu/kafka-image/$KAFKA_VERSION/tools-libs"
}

standin_kafka_tools_ensure() {
  local libs
  libs=$(standin_kafka_tools_libs)
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || { deploy_log "mvn not found: installing Debian's maven"; deploy_apt_install maven; }
  deploy_log "resolving org.apache.kafka:kafka-tools:$KAFKA_VERSION from Maven Central into $libs (once)"
  kafka_maven_resolve "$libs" "kafka-tools" <<DEPS
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
DEPS
}

# The artifact name of a jar file name (kafka_2.13-4.1.1.jar -> kafka_2.13).
standin_artifact() { basename "$1" | sed -E 's/-[0-9].*\.jar$//'; }

standin_kafka() {
  local work=$1 hash ctx jar artifact other
  hash=$(standin_hash "$STANDINS_DIR/kafka" "$(standin_image_id "$STANDIN_DEBIAN")" \
         "$KAFKA_VERSION" "$KAFKA_LOG4J_VERSION")
  standin_current "$STANDIN_KAFKA" "$hash" && return 0
  kafka_ensure
  standin_kafka_tools_ensure
  deploy_log "making the $STANDIN_KAFKA stand-in: Debian's OpenJDK 17 + the Apache Kafka $KAFKA_VERSION jars"
  ctx="$work/kafka-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/libs"
  cp -a "$STANDINS_DIR/kafka/." "$ctx/"
  cp "$(kafka_libs)"/*.jar "$ctx/libs/"
  # The tools' jars that the broker's set lacks; one version of each artifact.
  for jar in "$(standin_kafka_tools_libs)"/*.jar; do
    [ -e "$ctx/libs/$(basename "$jar")" ] && continue
    artifact=$(standin_artifact "$jar")
    for other in "$ctx"/libs/*.jar; do
      if [ "$(standin_artifact "$other")" = "$artifact" ]; then
        deploy_log "kafka-tools needs $(basename "$jar") but the broker has $(basename "$other"): versions disagree"
        return 1
      fi
    done
    cp "$jar" "$ctx/libs/"
  done
  standin_build "$STANDIN_KAFKA" "$hash" "$ctx" "$work/standin-kafka.log" || return 1
  rm -rf "$ctx"
  deploy_log "$STANDIN_KAFKA stand-in made ($(standin_size "$STANDIN_KAFKA"))"
}

standin_redis() {
  local work=$1 hash
  hash=$(standin_hash "$STANDINS_DIR/redis" "$(standin_image_id "$STANDIN_DEBIAN")")
  standin_current "$STANDIN_REDIS" "$hash" && return 0
  deploy_log "making the $STANDIN_REDIS stand-in: Debian's redis-server"
  standin_build "$STANDIN_REDIS" "$hash" "$STANDINS_DIR/redis" "$work/standin-redis.log" || return 1
  deploy_log "$STANDIN_REDIS stand-in made ($(standin_size "$STANDIN_REDIS"))"
}

standins_ensure() {
  local work=$1
  standin_debian "$work"
  standin_rust "$work"
  standin_kafka "$work"
  standin_redis "$work"
}

# Remove every image this file made (labelled huleedu.standin); real images are left alone.
standins_remove() {
  local tag
  for tag in "$STANDIN_REDIS" "$STANDIN_KAFKA" "$STANDIN_RUST" "$STANDIN_DEBIAN"; do
    if [ -n "$(docker image ls -q --filter "label=huleedu.standin=$tag" "$tag")" ]; then
      docker image rm -f "$tag" >/dev/null
      deploy_log "removed the $tag stand-in"
    fi
  done
}
