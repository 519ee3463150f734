# riskprop node image: slim Python, runtime dependencies only, non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 riskprop
WORKDIR /app

COPY pyproject.toml README.md ./
COPY riskprop ./riskprop
RUN pip install . && rm -rf /root/.cache
COPY scripts/setup_local.py ./scripts/setup_local.py
COPY configs ./configs

USER riskprop
ENTRYPOINT ["riskprop"]
CMD ["--help"]
