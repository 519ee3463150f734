# riskprop node image: slim Python, runtime dependencies only, non-root user.
# The build stage has a C compiler for the optional AVX-512 IFMA kernel (riskprop/core/_mbx.c);
# the image itself gets only the built wheels.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY riskprop ./riskprop
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 riskprop
WORKDIR /app

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels riskprop && rm -rf /wheels /root/.cache
COPY configs ./configs

USER riskprop
ENTRYPOINT ["riskprop"]
CMD ["--help"]
