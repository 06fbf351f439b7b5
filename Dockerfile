# syntax=docker/dockerfile:1
#
# vitalwatch container image.
#
#   docker build -t vitalwatch .
#   docker run --rm -p 9464:9464 -e VITALWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9093 \
#     -e VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL=SSL vitalwatch
#
# The image's config (deploy/docker/config.toml) sets kafka.require_tls = true: without
# TLS to the brokers ("security.protocol" SSL or SASL_SSL, certificate and host name
# verified) `run` exits at start with an error naming kafka.require_tls. Only a local
# test broker that never carries patient data may be reached without it:
# -e VITALWATCH_KAFKA__REQUIRE_TLS=false (docker-compose.yml does this for its stack).
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder
# (dependencies cooked in their own cached layer, then the crate) -> runtime (Debian slim
# of the same release as the builder, so the binary finds the glibc it was linked
# against). scripts/check-deploy.sh lints this file with hadolint and checks that every
# library `ldd` lists for the release binary is installed by the runtime stage below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# The vendored librdkafka and OpenSSL builds (rdkafka features ssl-vendored, libz-static)
# need make and a full perl next to the gcc the slim Rust image already has.
# Versions are not pinned: the base tag fixes the Debian release, and pinning package
# versions would break the build at every Debian security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make perl \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies only (librdkafka, OpenSSL, tokio, ...): this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin vitalwatch
COPY . .
# The same command as `cargo build --release`, which scripts/check-deploy.sh runs on the
# host for its ldd check. The binary keeps its line tables (profile.release): pprof
# profiles from the admin listener are symbolized by the process itself.
RUN cargo build --release --locked --bin vitalwatch \
 && cp target/release/vitalwatch /usr/local/bin/vitalwatch

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# What the release binary links dynamically, as `ldd target/release/vitalwatch` lists it
# (scripts/check-deploy.sh fails when it lists a library no package below provides):
#   libc6      libc.so.6, libm.so.6, ld-linux-x86-64.so.2
#   libgcc-s1  libgcc_s.so.1 (stack unwinding)
# Both come with debian:*-slim already; they are named so that the dependency is written
# down and checked. zlib and OpenSSL are linked in statically (rdkafka features
# libz-static and ssl-vendored), so neither zlib1g nor libssl3 is needed.
# ca-certificates: the trust store for TLS to the brokers (security.protocol=SSL/SASL_SSL).
# Versions are not pinned, for the reason given in the chef stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libc6 libgcc-s1 \
 && rm -rf /var/lib/apt/lists/*

# The vendored OpenSSL looks for CA certificates under its build-time OPENSSLDIR
# (/usr/local/ssl), which Debian does not have, and librdkafka then finds none: TLS to
# brokers with publicly signed certificates would fail verification. Point OpenSSL at
# the ca-certificates trust store. (An explicit ssl.ca.location still wins.)
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --gid 10001 vitalwatch \
 && useradd --uid 10001 --gid vitalwatch --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin vitalwatch

COPY --from=builder /usr/local/bin/vitalwatch /usr/local/bin/vitalwatch
# Configuration: the image's settings (TLS to the brokers required, JSON logs, absolute
# rules path) and the shipped NEWS2 rules. Override single keys with
# VITALWATCH_<SECTION>__<KEY> variables, or mount other files over these two.
COPY deploy/docker/config.toml /etc/vitalwatch/config.toml
COPY config/rules.toml /etc/vitalwatch/rules.toml

USER 10001:10001
WORKDIR /etc/vitalwatch

# /metrics, /healthz, /readyz (http.listen). The pprof admin listener stays on loopback.
EXPOSE 9464
# Liveness only (/healthz never depends on the broker). `vitalwatch healthcheck` loads the
# settings exactly as `run` does (built-in defaults, then the --config file, then
# VITALWATCH_* variables), so it follows http.listen wherever it is set: in this file, in
# a file mounted over it, or in VITALWATCH_HTTP__LISTEN. It GETs
# http://127.0.0.1:<http.listen's port>/healthz within 5 s (below --timeout), prints one
# line and exits 0 on 200, 1 otherwise. Its --config is the CMD's. The binary is its own
# HTTP client: the image has no curl and none of the libraries curl pulls in.
# A configuration that is refused (for example plaintext brokers while kafka.require_tls
# is true) makes `run` exit at start, so the container stops before any health check.
HEALTHCHECK --interval=15s --timeout=6s --start-period=20s --retries=3 \
  CMD ["vitalwatch", "healthcheck", "--config", "/etc/vitalwatch/config.toml"]

# SIGTERM (docker stop, Kubernetes) makes vitalwatch stop reading, drain, commit and exit 0
# within pipeline.shutdown_timeout_secs (25 s): give it a longer stop timeout than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["vitalwatch"]
CMD ["run", "--config", "/etc/vitalwatch/config.toml"]
