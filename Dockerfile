# syntax=docker/dockerfile:1
# The edge image: the base (runtime) install only - no torch, onnx or shap - serving one exported model.
#
#   GPU (default): CUDA 13 + cuDNN 9 runtime, matching the onnxruntime-gpu 1.31 wheels (built for CUDA 13.0)
#     docker build -t ramanedge:gpu .
#   CPU only: a slim Python base and the plain onnxruntime wheel
#     docker build --build-arg VARIANT=cpu -t ramanedge:cpu .
#
# See the README ("Deploying with Docker") for `docker run` lines with a serial device and a drop folder.
#
# The API listens on 0.0.0.0 inside the container, so the daemon refuses to start without a bearer token:
#   docker run -e RAMANEDGE_HTTP_TOKEN="$(openssl rand -hex 32)" -p 127.0.0.1:8765:8765 ... ramanedge:cpu
# or from a secret file:
#   docker run -v ./http_token:/run/secrets/http_token:ro -e RAMANEDGE_HTTP_TOKEN_FILE=/run/secrets/http_token ...
# (--insecure-http starts without one and logs a WARNING at every start). See docs/security.md.
ARG VARIANT=gpu
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG CPU_IMAGE=python:3.12-slim-bookworm

FROM ${CUDA_IMAGE} AS base-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV ORT_PACKAGE=onnxruntime-gpu

FROM ${CPU_IMAGE} AS base-cpu
ENV ORT_PACKAGE=onnxruntime

FROM base-${VARIANT} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 VIRTUAL_ENV=/opt/ramanedge
RUN python3 -m venv /opt/ramanedge
ENV PATH=/opt/ramanedge/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY spectral_core ./spectral_core
COPY device_drivers ./device_drivers
COPY edge_runtime ./edge_runtime
COPY ramanedge ./ramanedge
# The base dependencies of pyproject.toml, with exactly one onnxruntime flavour for this variant
# (the two wheels must never be installed together), then the package itself without dependencies.
RUN python3 -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d.split(';')[0].strip() for d in deps if not d.startswith('onnxruntime')))" > /tmp/requirements.txt \
 && echo "${ORT_PACKAGE}>=1.18" >> /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && pip install --no-deps . \
 && rm -rf /src /tmp/requirements.txt \
 && python3 -c "import edge_runtime, device_drivers, sys; \
bad = [m for m in ('torch', 'onnx', 'shap') if m in sys.modules]; sys.exit(1 if bad else 0)"

# Non-root; members of dialout may open serial devices passed in with --device.
RUN useradd --create-home --uid 10001 --groups dialout ramanedge \
 && mkdir -p /models /drop /var/lib/ramanedge \
 && chown ramanedge:ramanedge /drop /var/lib/ramanedge
USER ramanedge
WORKDIR /var/lib/ramanedge
VOLUME ["/var/lib/ramanedge"]

# Inside a container the HTTP server must listen on all interfaces to be published with -p; that needs
# RAMANEDGE_HTTP_TOKEN (or RAMANEDGE_HTTP_TOKEN_FILE) at run time. Never bake a token into the image.
ENV RAMANEDGE_MODEL=/models/model.onnx \
    RAMANEDGE_DB=/var/lib/ramanedge/results.sqlite \
    RAMANEDGE_HTTP=0.0.0.0:8765
EXPOSE 8765
# /healthz needs no token; 127.0.0.1 passes the Host header check.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python3 -c "import urllib.request, sys; \
sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["ramanedge", "serve"]
