# Builds the `chronicle` binary and runs it on a slim Debian.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p chronicle-api --bin chronicle

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
      && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/chronicle /usr/local/bin/chronicle
ENV CHRONICLE_HTTP_ADDR=0.0.0.0:8080 CHRONICLE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["chronicle"]
CMD ["serve"]
