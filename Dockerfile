# gateway-authz container image. Build and run:
#   docker build -t gateway-authz:0.1.0 .
#   docker run --rm --read-only -p 8080:8080 -p 8081:8081 gateway-authz:0.1.0
# It runs as a numeric non-root user on a read-only root filesystem (it writes nothing), with uvloop (the `fast`
# extra, in the lock) and the default config inside the package (DEMO KEYS: mount your own and pass --config).
# Dependencies come from the lock (requirements/service.txt: every pin with its hashes, uvloop included), then the
# package itself without resolving anything again; the command is the README's `gateway-authz serve`, listening on
# all addresses (the admin listener too: the manifests keep it inside the cluster). k8s/ mounts the real config at
# /etc/gateway-authz/config.yaml and passes --config.
# The base image is pinned by tag and by the digest of its multi-architecture index (read from public Dockerfiles
# pinning the same tag; this repository's CI has no registry access to confirm it: `docker buildx imagetools
# inspect python:3.11.14-slim-bookworm` shows the current one).
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/service.txt ./requirements/service.txt
RUN python -m venv /opt/gateway-authz \
 && /opt/gateway-authz/bin/pip install --require-hashes -r requirements/service.txt
COPY pyproject.toml README.md ./
COPY gateway_authz ./gateway_authz
RUN /opt/gateway-authz/bin/pip install --no-deps . \
 && /opt/gateway-authz/bin/pip check \
 && /opt/gateway-authz/bin/python -m compileall -q /opt/gateway-authz

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it (k8s/ uses 10001 too).
RUN groupadd --system --gid 10001 gateway-authz \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway-authz
COPY --from=build /opt/gateway-authz /opt/gateway-authz
ENV PATH=/opt/gateway-authz/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# decision (Envoy HTTP ext_authz, NGINX auth_request, forward auth), admin (/healthz /readyz /metrics), gRPC ext_authz
EXPOSE 8080 8081 9001
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway-authz"]
CMD ["serve", "--host", "0.0.0.0", "--admin-host", "0.0.0.0"]
