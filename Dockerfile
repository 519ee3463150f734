# riskprop node image: slim Python, runtime dependencies only, non-root user (uid 10001).
# The build stage has a C compiler for the optional native modules (riskprop/core/_mbx.c, the
# AVX-512 IFMA kernel; riskprop/core/_mpn.c, constant-time exponentiation over GMP's shared
# library, which both stages install); the image itself gets only the built wheels. Nothing
# secret goes in: certificates, keys, key shares, data and configuration are mounted at run
# time (docs/deployment.md), under /app:
#   /app/config   network.yaml and <bank>.yaml        /app/bank/tls    certificate, TLS key, CA
#   /app/bank/keys   the bank's key share             /app/bank/data   the bank's input
#   /app/bank/out    results (the only writable path besides /tmp)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libgmp10 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY riskprop ./riskprop
# the stream extra: the Redis and Kafka clients of a streaming node (docs/guide-operator.md)
RUN pip wheel --wheel-dir /wheels '.[stream]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libgmp10 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 riskprop \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin riskprop

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels 'riskprop[stream]' && rm -rf /wheels /root/.cache
# Mount points owned by the node user: a fresh named volume mounted here inherits that owner.
RUN mkdir -p /app/config /app/bank/tls /app/bank/keys /app/bank/data /app/bank/out \
    && chown -R 10001:10001 /app/bank && chmod -R 0700 /app/bank
WORKDIR /app

USER 10001:10001
ENTRYPOINT ["riskprop"]
CMD ["--help"]
