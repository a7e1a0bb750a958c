# The treehole binary on a slim Debian base. Build: docker build -t treehole .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin treehole

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/treehole treehole \
 && install -d -o treehole /var/lib/treehole/data
COPY --from=build /src/target/release/treehole /usr/local/bin/treehole
USER treehole
WORKDIR /var/lib/treehole
ENV TREEHOLE_LISTEN=0.0.0.0:8080 \
    TREEHOLE_DATA=/var/lib/treehole/data \
    TREEHOLE_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["treehole"]
CMD ["serve"]
