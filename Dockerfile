# Build with the Swift toolchain, run on a slim image with only libpq.
FROM swift:6.2-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY Tests Tests
RUN swift build -c release --product pbc --static-swift-stdlib

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/.build/release/pbc /usr/local/bin/pbc
WORKDIR /app
COPY sql sql
COPY Config Config
USER nobody
EXPOSE 7411
CMD ["pbc", "serve", "--host", "0.0.0.0"]
