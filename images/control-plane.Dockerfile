# Rota's control plane: API, scheduler, reconciler. It talks to an existing Ray cluster
# through the dashboard REST API (ROTA_RAY_ADDRESS); it runs no Ray itself.
# Build (from the repo root):  docker build -f images/control-plane.Dockerfile -t rota-control-plane .
# Run:
#   docker run -p 8080:8080 -e ROTA_HOST=0.0.0.0 -e ROTA_RAY_ADDRESS=http://ray-head:8265 \
#     -e ROTA_RAY_AUTH_TOKEN=... -e ROTA_DATABASE_URL=postgresql+psycopg2://rota:...@db/rota \
#     -e ROTA_SECRET_KEY=... -e ROTA_PUBLIC_URL=http://<this container as the cluster reaches it>:8080 \
#     -v rota-home:/var/lib/rota rota-control-plane
# What a restart must keep is in the store and ROTA_SECRET_KEY (the gateway's token is
# derived from it); /var/lib/rota also holds the first admin key: keep it on a volume.
FROM python:3.11-slim

WORKDIR /opt/rota
COPY pyproject.toml README.md ./
COPY platform/ platform/
COPY serve_apps/ serve_apps/
COPY schedules/ schedules/
# `postgres` extra: the production store. serve_apps/ is copied so tasks are validated
# against the same scripts the workers run.
RUN pip install --no-cache-dir ".[postgres]"

ENV ROTA_HOME=/var/lib/rota \
    ROTA_SERVE_APPS_PATH=/opt/rota/serve_apps
VOLUME ["/var/lib/rota"]
EXPOSE 8080
CMD ["rota", "server"]
