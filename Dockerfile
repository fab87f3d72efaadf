# syntax=docker/dockerfile:1
# SPAL on CUDA: `python -m harness reproduce` inside a container.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t spal:cuda .
#   docker run --rm --gpus all -u "$(id -u):$(id -g)" \
#       -v "$PWD/data:/data:ro" -v "$PWD/results:/results" \
#       -v "$HOME/.cache/torch/hub/checkpoints:/home/spal/.cache/torch/hub/checkpoints:ro" \
#       spal:cuda reproduce --dataset msmt17
#
# ImageNet weights: the paper protocol loads torchvision's resnet50-0676ba61.pth (IBN-a:
# resnet50_ibn_a-d9d0bb7b.pth or resnet50_ibn_a.pth.tar) from torch's hub cache, which in the image is
# /home/spal/.cache/torch/hub/checkpoints (TORCH_HOME below): mount the host folder holding the file there, read
# only, as above (`make docker-reproduce` mounts the host's hub cache by default), or mount the file anywhere and
# pass `PRETRAINED=/that/path`. Nothing is downloaded; without the file the run stops before any work and says so.
#
# Base image: plain Debian Python, not nvidia/cuda. The torch==2.14.1 wheel brings its own CUDA 13 user-space
# libraries (nvidia-cublas, nvidia-cudnn-cu13, ... as pip dependencies) and faiss-gpu-cu12 brings CUDA 12 ones
# (nvidia-cuda-runtime-cu12, nvidia-cublas-cu12); the two sets live side by side in site-packages. The only piece
# that must come from outside is the driver (libcuda.so), which the NVIDIA Container Toolkit mounts from the host
# for `--gpus all` (a driver >= 580 serves both CUDA 12 and 13). A CUDA runtime base would add a third copy of the
# libraries (several GB) without being used. 3.11.7 is the interpreter the project's venv is tested with.
FROM python:3.11.7-slim-bookworm

# The repository's .git is not sent to the build (see .dockerignore); the harness records the commit from these.
ARG GIT_COMMIT=unknown
ARG GIT_DIRTY=unknown
# The tested torch pair, exactly (pyproject.toml gives ranges; the Makefile's TORCH_PINS name the same pair).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

# HOME, USER and the cache folders are fixed and world-writable so that `docker run -u UID:GID` with any host
# user (so that files written to /results belong to that user) still finds a home, a user name (torch's
# inductor cache asks getpass for one) and writable caches.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HOME=/home/spal \
    USER=spal \
    XDG_CACHE_HOME=/home/spal/.cache \
    TORCH_HOME=/home/spal/.cache/torch \
    MPLCONFIGDIR=/home/spal/.cache/matplotlib \
    DATA_DIR=/data \
    SPAL_RESULTS_DIR=/results \
    SPAL_LOGS_DIR=/results/logs \
    SPAL_GIT_COMMIT=${GIT_COMMIT} \
    SPAL_GIT_DIRTY=${GIT_DIRTY}

RUN useradd --create-home --home-dir /home/spal --uid 1000 --user-group spal \
    && mkdir -p /data /results /home/spal/.cache \
    && chown spal:spal /data /results \
    && chmod 1777 /home/spal /home/spal/.cache /results

WORKDIR /app

# Python dependencies come from pyproject.toml only, exactly as `make setup` installs them (editable, so that the
# harness finds its protocols and results/paper next to the code as in a checkout). The first install runs on
# the project metadata with empty package stubs, so that this multi-GB layer is rebuilt only when pyproject.toml
# changes, not on every source edit; the editable finder maps `spal` and `harness` to /app, where the real
# sources are copied below.
#
# faiss-cpu (a core dependency) and faiss-gpu-cu12 (the `gpu` extra) both install the `faiss` module into the
# same folder, so whichever pip unpacks last wins. faiss-cpu is removed and the GPU wheel, at the version pip just
# resolved from pyproject.toml, is unpacked again over the now partly emptied folder.
COPY pyproject.toml README.md ./
# DL3013 (pin versions in pip): the pins are pyproject.toml's and the torch ARGs, and the faiss-gpu-cu12 version is
# the resolved one.
# hadolint ignore=DL3013
RUN mkdir -p spal harness \
    && touch spal/__init__.py harness/__init__.py \
    && pip install -e '.[gpu]' "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && FAISS_GPU="faiss-gpu-cu12==$(python -c 'import importlib.metadata as m; print(m.version("faiss-gpu-cu12"))')" \
    && pip uninstall -y faiss-cpu \
    && pip install --no-deps --force-reinstall "${FAISS_GPU}" \
    && python -c "import faiss; assert hasattr(faiss, 'StandardGpuResources'), 'faiss is not the GPU build'"

# Build hosts usually have no GPU: faiss-gpu-cu12 1.14 then reports 0 devices, and any failure of this probe
# (no driver, no device) is reported and does not fail the build; the import check above already did its job.
RUN python -c "import faiss; print('faiss GPUs visible at build time:', faiss.get_num_gpus())" \
    || echo "faiss: no GPU visible at build time (expected on a build host without one)"

COPY . .
RUN python -c "import spal, harness"

# Numeric, so that it resolves on any host and satisfies runAsNonRoot checks; 1000 is the `spal` user above.
USER 1000:1000
VOLUME ["/data", "/results"]

ENTRYPOINT ["python", "-m", "harness"]
CMD ["reproduce", "--dataset", "msmt17"]
