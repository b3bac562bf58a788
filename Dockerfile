# syntax=docker/dockerfile:1
# imagehub: one image for the web process (the default command), the workers
# (`python manage.py runworker`) and the migrations (`python manage.py migrate`).
#
#   docker build -t imagehub:cpu .                             # CPU build of torch
#   docker build -t imagehub:cuda --build-arg VARIANT=cuda .   # CUDA build, for GPU hosts
#
# TORCH_SPEC and TORCH_INDEX_URL (build args) choose another torch release or index,
# e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128.
# The CUDA build brings its CUDA libraries as Python packages, so both variants start
# from the same slim Python image; the host needs the NVIDIA driver and container toolkit.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VARIANT=cpu
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /app

# torch first: the largest layer, rebuilt only when the build args change.
COPY scripts/install-torch scripts/install-torch
RUN case "$VARIANT" in \
      cpu) TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
      *) echo "VARIANT must be cpu or cuda, not $VARIANT" >&2; exit 1 ;; \
    esac \
 && TORCH_SPEC="$TORCH_SPEC" TORCH_INDEX_URL="$TORCH_INDEX_URL" scripts/install-torch python

# The other dependencies, from pyproject.toml alone, so a code change does not
# reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md LICENSE manage.py ./
COPY imagehub imagehub
COPY accounts accounts
COPY generations generations
COPY templates templates
RUN pip install --no-deps -e .

# The demo models (random weights, a few MB) are built into the image, so every
# container of a deployment loads the same files without building them at start.
ENV IMAGEHUB_DEMO_MODELS_DIR=/opt/imagehub/models
# Built as root, read by the unprivileged user: the weights are written owner-only.
RUN IMAGEHUB_DATA_DIR=/tmp/build-data HF_HUB_OFFLINE=1 python manage.py build_demo_models \
 && rm -rf /tmp/build-data \
 && chmod -R a+rX /opt/imagehub/models

# Not root. /data holds the generated secret key (when DJANGO_SECRET_KEY is unset), the
# model hub cache and, with STORAGE=local, the images: a volume shared by the containers.
RUN useradd --system --uid 10001 --user-group --home-dir /home/imagehub --create-home imagehub \
 && mkdir -p /data \
 && chown imagehub:imagehub /data
ENV IMAGEHUB_DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    WEB_CONCURRENCY=2
VOLUME ["/data"]
USER imagehub:imagehub
EXPOSE 8000

# gunicorn processes: WEB_CONCURRENCY; each runs uvicorn on an event loop (imagehub/server.py). --graceful-timeout must be at least
# IMAGEHUB_SYNC_WAIT_SECONDS (300) so a stop lets waiting requests get their images;
# give the container a stop timeout above it (compose: stop_grace_period 6m).
CMD ["gunicorn", "imagehub.asgi", "--bind", "0.0.0.0:8000", \
     "--worker-class", "imagehub.server.Worker", "--timeout", "360", \
     "--graceful-timeout", "330", "--keep-alive", "75", "--access-logfile", "-"]
