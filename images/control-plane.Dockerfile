# Rota's control plane: API, scheduler, reconciler. It talks to an existing Ray cluster
# through the dashboard REST API (ROTA_RAY_ADDRESS) and joins no Ray node, so its Python
# need not match the cluster's; it is the same as the workers' all the same.
# Build (from the repo root):  make images   (or: docker build -f images/control-plane.Dockerfile .)
# Run:
#   docker run -p 8080:8080 -e ROTA_RAY_ADDRESS=http://ray-head:8265 \
#     -e ROTA_RAY_AUTH_TOKEN=... -e ROTA_DATABASE_URL=postgresql+psycopg2://rota:...@db/rota \
#     -e ROTA_SECRET_KEY=... -e ROTA_PUBLIC_URL=http://<this container as the cluster reaches it>:8080 \
#     -v rota-home:/var/lib/rota rota-control-plane:0.1.0
# What a restart must keep is in the store and ROTA_SECRET_KEY (the gateway's token is
# derived from it); /var/lib/rota also holds the first admin key: keep it on a volume.
ARG PYTHON_VERSION=3.11.14
FROM python:${PYTHON_VERSION}-slim

RUN useradd --create-home --uid 1000 rota \
    && mkdir -p /var/lib/rota && chown rota:rota /var/lib/rota
WORKDIR /opt/rota
# Dependencies first, from pyproject.toml alone: a change to the source reuses this layer.
COPY pyproject.toml README.md ./
# This repository's own package: its dependencies' bounds are in pyproject.toml.
# hadolint ignore=DL3013
RUN mkdir -p platform/rota && touch platform/rota/__init__.py \
    && pip install --no-cache-dir ".[postgres]" && pip uninstall -y rota \
    && rm -rf build platform/*.egg-info platform/rota
COPY platform/ platform/
COPY serve_apps/ serve_apps/
COPY schedules/ schedules/
# serve_apps/ is copied so tasks are validated against the same scripts the workers run.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps .

ENV ROTA_HOME=/var/lib/rota \
    ROTA_HOST=0.0.0.0 \
    ROTA_PORT=8080 \
    ROTA_SERVE_APPS_PATH=/opt/rota/serve_apps
USER 1000
VOLUME ["/var/lib/rota"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['ROTA_PORT'] + '/healthz', timeout=4)"]
CMD ["rota", "server"]
