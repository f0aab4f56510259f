# syntax=docker/dockerfile:1
# The fieldwatch image for Kubernetes: `fieldwatch ingest` and
# `fieldwatch aggregate` against an external Kafka-protocol cluster.
#
#   docker build -t fieldwatch:0.1.0 .
#
# Built without the embedded broker (`--no-default-features`: `serve` needs
# kafka.brokers in this image) and with `kafka-tls` (librdkafka with OpenSSL,
# for TLS and SASL/SCRAM to Kafka).

FROM rust:1.95-bookworm AS build
# rust:*-bookworm already has gcc, make, pkg-config, libssl-dev and zlib; protoc
# comes from the protoc-bin-vendored build dependency.
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
COPY config config
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features kafka-tls --bin fieldwatch \
    && cp target/release/fieldwatch /usr/local/bin/fieldwatch

FROM debian:bookworm-slim
# libssl3: librdkafka's TLS; ca-certificates: brokers with public certificates.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fieldwatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin fieldwatch
COPY --from=build /usr/local/bin/fieldwatch /usr/local/bin/fieldwatch
COPY config/fieldwatch.yaml /etc/fieldwatch/fieldwatch.yaml
# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001:10001
# gRPC ingest, and metrics / JSON API / health.
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/fieldwatch"]
CMD ["--help"]
