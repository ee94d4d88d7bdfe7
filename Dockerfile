# restorewatch: one small binary. Build stage compiles it; the runtime stage is Debian slim
# with CA certificates (for HTTPS to the CBS and Discord) and nothing else.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin restorewatch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app restorewatch
WORKDIR /app
COPY --from=build /src/target/release/restorewatch /usr/local/bin/restorewatch
# ./config is mounted read-only, ./state is the volume that keeps the sled store.
RUN mkdir -p /app/config /app/state && chown restorewatch /app/state
USER restorewatch
VOLUME ["/app/state"]
ENTRYPOINT ["restorewatch"]
CMD ["run"]
