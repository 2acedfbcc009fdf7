# One image holds the three service binaries; docker-compose.yml and deploy/kubernetes pick the one each
# service runs. The benchmark tool (bench/) is never built into it.
#
# Base images are pinned: the builder to the Rust release the workspace is tested with, both stages to the
# same Debian release (bookworm), so the binaries find the glibc they were linked with.

# --- build stage: the full Rust toolchain, used only to compile ----------------------------------
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
# topk-ingest's Kafka client builds librdkafka (C and C++, configure and make) against the system's OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

# The three services, and nothing else of the workspace.
ARG PACKAGES="-p topk-api -p topk-ingest -p topk-snapshotter"

# Dependencies first, in a layer of their own that only the manifests and the lock file invalidate: every
# member's Cargo.toml with stub sources (cargo needs each member, bench, testkit and cli included, to resolve
# the workspace), then a release build of the three packages, which compiles every dependency they have.
# core's build script only asks cargo to watch ../migrations, which needs to exist. Then what was built from
# the stubs (the workspace's own crates) is deleted, the dependencies kept: the real sources, copied below,
# may be older than the stubs, and cargo would take the stubs' build for up to date.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/build.rs core/
COPY api/Cargo.toml api/
COPY ingest/Cargo.toml ingest/
COPY snapshotter/Cargo.toml snapshotter/
COPY bench/Cargo.toml bench/
COPY testkit/Cargo.toml testkit/
COPY cli/Cargo.toml cli/
RUN set -eux; \
    mkdir -p migrations; \
    for crate in core api ingest snapshotter bench testkit cli; do \
        mkdir -p "$crate/src"; \
        touch "$crate/src/lib.rs"; \
    done; \
    for crate in api ingest snapshotter bench cli; do \
        echo 'fn main() {}' > "$crate/src/main.rs"; \
    done; \
    cargo build --release --locked $PACKAGES; \
    rm -rf target/release/.fingerprint/topk-* target/release/build/topk-* target/release/deps/topk_* \
        target/release/deps/libtopk_* target/release/topk-* target/release/libtopk_*

# The real sources of what the services are built from; bench, cli and testkit (a dev-dependency) keep
# their stubs, so a change there does not rebuild the image. sqlx::migrate! embeds migrations/ at compile
# time: the runtime image needs no copy of them.
COPY migrations migrations
COPY core core
COPY api api
COPY ingest ingest
COPY snapshotter snapshotter
RUN cargo build --release --locked $PACKAGES

# --- runtime stage -----------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: CA roots for TLS to Redis and Postgres when no CA file is named (TOPK_REDIS_CA_FILE,
# sslrootcert). curl: the container healthchecks (curl -fsS http://127.0.0.1:PORT/readyz). libssl3: OpenSSL,
# which the Kafka client uses for TLS to the brokers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*
# The services need no privileges: a fixed numeric uid, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 topk \
    && useradd --system --uid 10001 --gid topk --no-create-home --shell /usr/sbin/nologin topk
COPY --from=builder /src/target/release/topk-ingest /src/target/release/topk-api \
    /src/target/release/topk-snapshotter /usr/local/bin/
USER 10001:10001
# Inside a container the services must listen on all interfaces to be reachable through published ports.
# Logs are JSON lines (TOPK_LOG_FORMAT=text for people).
ENV TOPK_API_ADDR=0.0.0.0:8080 \
    TOPK_INGEST_ADDR=0.0.0.0:8081
EXPOSE 8080 8081
CMD ["topk-api"]
