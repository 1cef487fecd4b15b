# codex-node in a container: `docker build -t codex-node .`
# then `docker run -p 127.0.0.1:8080:8080 -v codex-data:/data codex-node`.
# The node needs no Node.js at run time: the compiled contracts ship inside the Python package.

FROM python:3.11-slim AS build
# A compiler for the proof trees' C extension (setup.py) and any dependency without a wheel for this platform; it
# stays in this stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY codex_node ./codex_node
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 10001 codex \
    && mkdir /data \
    && chown codex:codex /data \
    && chmod 0700 /data
USER codex
# Defaults for any `run` given to the container; flags and -e CODEX_... still override them.
# Bound to all interfaces so `-p 8080:8080` can publish the API; metrics (with --metrics) likewise on 8008.
# The node refuses a non-loopback API without a token; in a container the publish (-p) decides the exposure, so
# the image allows it, and the node's first lines warn ("API open without a token") with how to guard it: publish
# on 127.0.0.1 (-p 127.0.0.1:8080:8080), or mount a token file (16+ characters, owned by uid 10001, mode 600) and
# set -e CODEX_API_TOKEN=/run/api-token. The token then guards every route but /health, the dashboard's shell
# and the peer routes. Change the port with -e CODEX_API_PORT (the health check reads it), not --api-port.
ENV CODEX_DATA_DIR=/data \
    CODEX_API_BINDADDR=0.0.0.0 \
    CODEX_API_ALLOW_UNAUTHENTICATED=true \
    CODEX_METRICS_ADDRESS=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8080 8008
# Ready (200) or not (503, with reasons) from the node's own health route; no token needed (it is public), and the
# image has no curl, so Python asks. The embedded chain's first start deploys contracts: a minute of grace.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CODEX_API_PORT', '8080') + '/api/codex/v1/health', timeout=8)"]
# Exec form: codex-node is PID 1 and gets SIGTERM from `docker stop` directly (it stops cleanly, exit 0).
ENTRYPOINT ["codex-node"]
CMD ["run", "--data-dir", "/data", "--api-bindaddr", "0.0.0.0"]
