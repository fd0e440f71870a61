# The storehook image: `docker build -t storehook .` (see docs/deploy.md).
# Two stages: the release binary is built with the locked dependencies, and only it, the
# shipped configuration and the mappings go into a slim runtime image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole workspace (bench/loadgen is a member, and the manifest names tests and benches),
# less what .dockerignore leaves out.
COPY . .
# Symbols stripped: a smaller binary, the same code (panics still name their location).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin storehook

FROM debian:bookworm-slim
# Root certificates, for the HTTPS calls to the destinations.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A user of its own, not root. It owns /data, where the SQLite store lives: mount a volume
# there (a fresh named Docker volume, and Fly.io's volume, are owned by it).
RUN groupadd --system --gid 10001 storehook \
    && useradd --system --uid 10001 --gid storehook --no-create-home --home-dir /app storehook \
    && mkdir /data \
    && chown storehook:storehook /data
WORKDIR /app
COPY --from=build /src/target/release/storehook /usr/local/bin/storehook
# The shipped configuration (the binary also carries a copy) and mapping files, read from
# the working directory; mount your own over them to change them without a rebuild.
COPY storehook.toml ./
COPY mappings ./mappings
ENV STOREHOOK_STORE_URL=sqlite:///data/storehook.db \
    STOREHOOK_LOG_FORMAT=json \
    PORT=8080
USER storehook
EXPOSE 8080
# storehook is PID 1: it stops on SIGTERM, after answering the requests in progress and
# letting attempts in flight finish for delivery.shutdown_grace.
CMD ["storehook", "serve"]
