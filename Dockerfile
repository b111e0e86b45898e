# Builds the `chronicle` binary and runs it on a slim Debian as an unprivileged user.
#
# Dependencies are built in a layer of their own (cargo-chef's recipe holds only the
# manifests and the lock file), so a change to Chronicle's sources rebuilds Chronicle, not
# librdkafka and the rest.
FROM rust:1-bookworm AS chef
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/* \
    && cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p chronicle --bin chronicle
COPY . .
RUN cargo build --release --locked -p chronicle --bin chronicle

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
      && rm -rf /var/lib/apt/lists/* \
      && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin chronicle
COPY --from=build /src/target/release/chronicle /usr/local/bin/chronicle
USER 10001:10001
ENV CHRONICLE_HTTP_ADDR=0.0.0.0:8080 CHRONICLE_LOG_FORMAT=json
EXPOSE 8080
# `chronicle health` asks the running service's /health/ready (no curl in the image).
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["chronicle", "health"]
ENTRYPOINT ["chronicle"]
CMD ["serve"]
