# syntax=docker/dockerfile:1
# The TaskJuice bot's image: `taskjuice-bot serve` by default; `migrate` and `worker` (or
# `serve --no-workers`) as the command for the other roles. See docs/deploy.md.

# --- build: install the package and its dependencies into a virtual environment -------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/taskjuice
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY store ./store
COPY templates ./templates
# Every dependency ships a wheel for this platform, so no compiler is needed here either.
RUN /opt/taskjuice/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=taskjuice-bot . \
    && /opt/taskjuice/bin/python -m compileall -q /opt/taskjuice

# --- run: the interpreter, the virtual environment, and nothing else ------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="taskjuice-bot" \
      org.opencontainers.image.description="TaskJuice ChatOps bot: approvals and alerts in Slack and email"

RUN groupadd --system --gid 10001 taskjuice \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin taskjuice

COPY --from=build /opt/taskjuice /opt/taskjuice

# HOST: listen on every interface of the container (the default, 127.0.0.1, is for a laptop).
# Nothing is written at run time (bytecode is compiled above), so the root filesystem may be
# mounted read-only.
ENV PATH="/opt/taskjuice/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000

WORKDIR /tmp
USER 10001:10001
EXPOSE 3000

# Liveness only: /healthz needs nothing but the process. Readiness (/readyz) is for the
# orchestrator's probes and load balancer, not for restarting the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4)"]

ENTRYPOINT ["taskjuice-bot"]
CMD ["serve"]
