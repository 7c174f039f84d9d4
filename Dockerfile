# syntax=docker/dockerfile:1
# pointserve CPU service image: ONNX Runtime on the CPU, no torch, no compilers in the final stage.
#
#   docker build -t pointserve:cpu .                                   # repository mounted at run time
#   docker run --rm -p 8000:8000 -v "$PWD/repository:/models:ro" pointserve:cpu
#   docker build -t pointserve:cpu-baked --build-arg REPOSITORY=repository .   # repository baked in
#
# Settings come from POINTSERVE_* environment variables (see docs/serving.md), e.g.
#   -e POINTSERVE_BATCHING__MAX_BATCH_SIZE=16 -e POINTSERVE_API_KEY=secret
# The environment is exactly docker/requirements-serve.txt + `pip install --no-deps .`;
# tests/docker/test_image_env.py builds the same environment without Docker and serves from it.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- build stage: a virtual environment with the service's requirements and pointserve itself ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/pointserve
COPY docker/requirements-serve.txt /tmp/requirements-serve.txt
RUN /opt/pointserve/bin/pip install --requirement /tmp/requirements-serve.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pointserve ./pointserve
RUN /opt/pointserve/bin/pip install --no-deps . \
    && /opt/pointserve/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# -- final stage: the venv, the repository, a non-root user --------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# A folder copied to /models: the placeholder by default, or a repository to bake in (a path in the context).
ARG REPOSITORY=docker/empty-repository
LABEL org.opencontainers.image.title="pointserve" \
      org.opencontainers.image.description="Point-cloud network inference service (ONNX Runtime CPU)"
RUN groupadd --system --gid 10001 pointserve \
    && useradd --system --uid 10001 --gid pointserve --home-dir /home/pointserve --create-home pointserve
COPY --from=build /opt/pointserve /opt/pointserve
COPY --chown=pointserve:pointserve ${REPOSITORY} /models
ENV PATH=/opt/pointserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POINTSERVE_REPOSITORY=/models \
    POINTSERVE_HOST=0.0.0.0 \
    POINTSERVE_PORT=8000
USER 10001:10001
WORKDIR /home/pointserve
EXPOSE 8000
# No curl in the slim image: the standard library asks the readiness endpoint (200 once every model is loaded).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as r; port = os.environ.get('POINTSERVE_PORT', '8000'); sys.exit(0 if r.urlopen(f'http://127.0.0.1:{port}/v2/health/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["pointserve"]
CMD ["serve"]
