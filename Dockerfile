# syntax=docker/dockerfile:1
# keywatch worker image: cargo-chef caches the dependency build in its own layer,
# so editing src/ rebuilds only the crate itself. Runtime is distroless (glibc,
# CA certificates, no shell) running as the nonroot user (uid 65532).
#
#   docker build -t keywatch .
#   docker run --rm -e KEYWATCH_QUEUE_URL=... -e KEYWATCH_FINDINGS_BUS=... -p 9464:9464 keywatch

FROM rust:1-bookworm AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# Reduce the workspace to a recipe (manifests + lockfile) that changes only when
# dependencies do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin keywatch \
    && install -D -m 0755 target/release/keywatch /out/keywatch

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/keywatch /keywatch
# Listen on all interfaces inside the container so Prometheus and the platform
# health checks can reach /metrics, /healthz and /readyz.
ENV KEYWATCH_METRICS_ADDR=0.0.0.0:9464 \
    KEYWATCH_LOG_FORMAT=json
EXPOSE 9464
# Numeric uid:gid of distroless "nonroot", so the platform can check runAsNonRoot.
USER 65532:65532
# No shell or curl in distroless: the binary probes its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/keywatch", "healthcheck"]
# Exec form: keywatch is PID 1 and receives SIGTERM directly to drain.
ENTRYPOINT ["/keywatch"]
CMD ["run"]
