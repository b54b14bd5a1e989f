# syntax=docker/dockerfile:1
# The RepSys image: one image, every process (`repsys collector`, `repsys rules`, ...).
#
#   docker build -t repsys:0.1.0 .
#   docker run --rm repsys:0.1.0 --help
#
# Two stages: "build" installs RepSys and its pinned dependencies into a virtualenv with
# the same constraints.txt the Makefile uses; the final stage gets that virtualenv and the
# shared libraries it needs at run time, nothing else: no compiler, no headers, no pip
# cache, no sources. tests/deploy/test_image.py checks these properties and builds the
# wheel from exactly the files the COPY lines below send.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# Compilers and headers only for dependencies without a binary wheel (pyodbc needs
# unixODBC's headers then); they stay in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential unixodbc-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/repsys
WORKDIR /src

# Dependencies first, so a code change does not reinstall them (layer cache).
COPY pyproject.toml constraints.txt README.md ./
COPY core/ core/
COPY collector/ collector/
COPY rules/ rules/
COPY plex/ plex/
COPY runner/ runner/
COPY web/ web/
COPY sim/ sim/
COPY notify/ notify/
COPY history/ history/
COPY repsys/ repsys/

# The Makefile's install, without the editable mode and the dev extra.
RUN /opt/repsys/bin/pip install -q --upgrade pip setuptools wheel \
    && /opt/repsys/bin/pip install -q -c constraints.txt . \
    && /opt/repsys/bin/repsys --version

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Run-time shared libraries only: unixODBC for pyodbc (the Plex ODBC driver, Progress
# DataDirect OpenAccess, is the plant's to add in an image built FROM this one).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libodbc2 tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 repsys \
    && useradd --system --uid 10001 --gid repsys --home-dir /app --shell /usr/sbin/nologin repsys \
    && mkdir -p /app/var /etc/repsys \
    && chown repsys:repsys /app /app/var

COPY --from=build /opt/repsys /opt/repsys

ENV PATH=/opt/repsys/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REPSYS_CONFIG=/etc/repsys/repsys.yaml

# Relative paths of the config (var/reports, var/repsys.db) land in /app/var, the one
# writable folder besides /tmp (the chart mounts emptyDirs there on a read-only root).
WORKDIR /app
USER 10001:10001

# 9100: /metrics /healthz /readyz of every process; 8080: the web app.
EXPOSE 9100 8080

ENTRYPOINT ["repsys"]
CMD ["--help"]
