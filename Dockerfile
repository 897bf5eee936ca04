# Multi-stage build of the HuleEdu pipeline services.
#
#   docker build -t huleedu-pipeline .                     # Docker 23 or later (BuildKit)
#   DOCKER_BUILDKIT=1 docker build -t huleedu-pipeline .   # Docker 18.09 .. 20.10
#
# One image holds every binary; docker-compose.yml picks the one to run with `command`.
# BuildKit is needed for the cache mounts below (the classic builder refuses `RUN --mount`).
# scripts/deploy-check.sh builds this file and runs the compose stack (docs/deployment.md).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source (bundled, static) with OpenSSL vendored in (TLS, SASL/SCRAM):
# it needs a C toolchain, make, perl and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# The crate downloads and the target directory are cache mounts: they outlive the build, so a
# rebuild after a code change compiles only the crates that changed, not every dependency. The
# binaries are copied out of the cached target directory (it is not part of the image).
RUN --mount=type=cache,id=huleedu-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=huleedu-target,target=/src/target \
    cargo build --release --locked \
      --bin batch-orchestrator \
      --bin batch-conductor \
      --bin els-simulator \
      --bin hulectl \
      --bin pipeline-console \
 && mkdir -p /out \
 && cp target/release/batch-orchestrator target/release/batch-conductor \
       target/release/els-simulator target/release/hulectl target/release/pipeline-console /out/

FROM debian:bookworm-slim AS runtime
# curl serves the container health checks (GET /readyz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 huleedu \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin huleedu
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json
# glibc, for the binaries that allocate with it (reference worker, console, hulectl; the
# orchestrator and the conductor use jemalloc for everything): allocations of 256 KiB and more
# get their own mappings, returned to the system when freed. Without it glibc raises that
# threshold after the first large free, and the heap keeps the space of a large batch's
# messages long after they are gone (docs/operations.md, "Memory").
ENV MALLOC_MMAP_THRESHOLD_=262144
EXPOSE 5000 4002 4010
CMD ["batch-orchestrator"]
