# restorewatch: one small binary. The build stage compiles it, the runtime stage is Debian
# slim with that binary and nothing installed: TLS uses rustls with the Mozilla roots built
# into the binary (webpki-roots), and jiff carries its own time-zone data, so neither
# ca-certificates nor tzdata is read. A private CA for the CBS comes from `cbs.ca_cert`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit. Stub sources stand in for the real ones.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin restorewatch \
    && rm -rf src
COPY src ./src
# The revision for the startup log line (the build context has no .git):
# `docker compose build --build-arg GIT_REVISION=$(git rev-parse --short=12 HEAD)`.
ARG GIT_REVISION=unknown
ENV GIT_REVISION=${GIT_REVISION}
# Newer than the stubs, so cargo rebuilds the crate itself (and only it).
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin restorewatch

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app restorewatch \
    && mkdir -p /app/config /app/state \
    && chown restorewatch /app/state
WORKDIR /app
COPY --from=build /src/target/release/restorewatch /usr/local/bin/restorewatch
# ./config is mounted read-only, ./state is the volume that keeps the sled store.
USER restorewatch
VOLUME ["/app/state"]
ENTRYPOINT ["restorewatch"]
CMD ["run"]
