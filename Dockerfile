# Multi-stage build of the HuleEdu pipeline services.
#
#   docker build -t huleedu-pipeline .
#
# One image holds every binary; docker-compose.yml picks the one to run with `command`.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source (bundled, static): it needs a C toolchain, make and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked \
      --bin batch-orchestrator \
      --bin batch-conductor \
      --bin els-simulator \
      --bin hulectl \
 && mkdir -p /out \
 && cp target/release/batch-orchestrator target/release/batch-conductor \
       target/release/els-simulator target/release/hulectl /out/

FROM debian:bookworm-slim AS runtime
# curl serves the container health checks (GET /readyz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin huleedu
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json
EXPOSE 5000 4002 4010
CMD ["batch-orchestrator"]
