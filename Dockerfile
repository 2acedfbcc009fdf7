# One image holds all three binaries; docker-compose.yml picks the one each service runs.

# Build stage: the full Rust toolchain, used only to compile.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Migrations are embedded at compile time (sqlx::migrate!), so the runtime image needs no migrations folder.
RUN cargo build --release --workspace --bins

# Runtime stage: same Debian release as the builder, so the binaries find the glibc they were linked with.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/target/release/topk-ingest /src/target/release/topk-api /src/target/release/topk-snapshotter /usr/local/bin/
# The services need no privileges.
RUN useradd --system --no-create-home --shell /usr/sbin/nologin topk
USER topk
# Inside a container the services must listen on all interfaces to be reachable through published ports.
ENV TOPK_API_ADDR=0.0.0.0:8080 \
    TOPK_INGEST_ADDR=0.0.0.0:8081
EXPOSE 8080 8081
CMD ["topk-api"]
