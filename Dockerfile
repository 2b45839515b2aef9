# gtm-connector: the daemon (every org in /config on its schedule; /healthz /readyz /metrics
# /stripe/webhook on port 8765). Build and run:
#   docker build -t gtm-connector .
#   docker run -d --name gtm -p 8765:8765 --stop-timeout 60 -v $PWD/config:/config:ro -v gtm-data:/data \
#     -e GTM_DATABASE_URL=postgresql://gtm@db:5432/gtm -e ACME_STRIPE_SECRET_KEY=... gtm-connector
# (--stop-timeout above [daemon] shutdown_grace_seconds, 30 by default: docker's own is 10 s.)
# One-off commands use the same image: docker run --rm ... gtm-connector run-job mirror --org acme
FROM python:3.11-slim

# GTM_DAEMON_BIND: the container's network namespace is the boundary, so the daemon listens on
# all its interfaces and -p 8765:8765 reaches /metrics and /stripe/webhook (outside a
# container the default stays 127.0.0.1).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    GTM_MAPPINGS_DIR=/app/mappings \
    GTM_CONFIG_DIR=/config \
    GTM_DAEMON_BIND=0.0.0.0 \
    GTM_DAEMON_PORT=8765

RUN groupadd --system --gid 10001 gtm \
 && useradd --system --uid 10001 --gid gtm --home-dir /app --no-create-home --shell /usr/sbin/nologin gtm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY mappings ./mappings
# The wheel carries the demo's config as data (pyproject.toml: data-files), so the build needs it.
COPY config/demo.toml ./config/demo.toml
COPY scripts/docker-install.sh ./scripts/docker-install.sh

# The same script the packaging test runs in a fresh venv.
RUN python -m venv /opt/venv \
 && GTM_INSTALL_PYTHON=/opt/venv/bin/python sh scripts/docker-install.sh \
 && mkdir -p /data /config \
 && chown gtm:gtm /data /config

# Run from the data volume: the relative defaults (data/<alias>.sqlite3, offers/<alias>/)
# land where the gtm user can write and where they survive the container.
WORKDIR /data
USER gtm
VOLUME ["/data", "/config"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GTM_DAEMON_PORT', '8765'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["gtm-connector"]
CMD ["daemon", "--config-dir", "/config"]
