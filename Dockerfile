# monitor_service in a container, for the docker-compose.yml demo:
#   docker compose up --build
# Stage 1 builds the release binary; stage 2 is a small Debian runtime with
# procps (pgrep/ps for health checks), libssl3 (TLS), the MariaDB client (test_alarm.sh)
# and three demo processes for the daemon to keep alive.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that source changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# touch: the dummy build above left newer timestamps for the crate itself.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends procps libssl3 mariadb-client-core \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/monitor_service /usr/bin/monitor_service
COPY scripts/test_alarm.sh /usr/local/bin/test_alarm.sh
COPY docker/entrypoint.sh /usr/local/bin/monitor_service-entrypoint
COPY man/monitor_service.8 /usr/share/man/man8/monitor_service.8
# Demo processes: copies of sleep under their own names (process names are
# matched exactly, so each copy is one "process" in PROCESE).
RUN for i in 1 2 3; do cp /bin/sleep "/usr/local/bin/demo_worker$i"; done \
    && chmod 755 /usr/local/bin/test_alarm.sh /usr/local/bin/monitor_service-entrypoint \
    && mkdir -p /etc/monitor_service /var/lib/monitor_service
ENTRYPOINT ["/usr/local/bin/monitor_service-entrypoint"]
