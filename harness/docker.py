"""Build the CUDA image and run the reproduction in it, through the Docker SDK for Python.

``python -m harness docker build [--tag T]`` builds the repository's ``Dockerfile``;
``python -m harness docker reproduce --dataset D [--data-dir P] [--results-dir P] [harness options]`` runs
``python -m harness reproduce --dataset D ...`` in that image on all GPUs, with the data set mounted
read-only on ``/data``, the results folder read-write on ``/results`` and the host's folder of ImageNet weight
files (torch's hub cache, ``--weights-dir``) read-only on the container's hub cache
(:data:`CONTAINER_WEIGHTS_DIR`), as the calling user so that the files written there are the caller's.
Options this command does not know (``--protocol``, ``--seeds``, ``PRETRAINED=PATH``, ...) go to the harness in
the container unchanged.

The SDK (the ``docker`` extra) is imported only when a daemon is needed: without it, or without a reachable
daemon, the command prints one line saying how to run natively and exits with :data:`EXIT_NO_DOCKER`.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from harness.datacheck import EXPECTED_TREES, expected_tree_message, missing_paths
from harness.environment import git_state
from spal.engine.config import CHOICES

__all__ = [
    "CONTAINER_DATA_DIR",
    "CONTAINER_LOGS_DIR",
    "CONTAINER_RESULTS_DIR",
    "CONTAINER_WEIGHTS_DIR",
    "DEFAULT_TAG",
    "EXIT_DOCKER_ERROR",
    "EXIT_NO_DATA",
    "EXIT_NO_DOCKER",
    "BuildFailed",
    "DockerUnavailable",
    "build_image",
    "connect",
    "container_spec",
    "git_revision",
    "main",
    "repo_root",
    "run_reproduce",
]

DEFAULT_TAG = "spal:cuda"
CONTAINER_DATA_DIR = "/data"
CONTAINER_RESULTS_DIR = "/results"
# Checkpoints go under the mounted results folder, so that an interrupted run resumes in the next container.
CONTAINER_LOGS_DIR = "/results/logs"
# torch's hub cache in the image (TORCH_HOME=/home/spal/.cache/torch, see the Dockerfile): a run that is not
# given --pretrained PATH looks for resnet50-0676ba61.pth (or the IBN-a file) here, as it does on the host.
CONTAINER_WEIGHTS_DIR = "/home/spal/.cache/torch/hub/checkpoints"
EXIT_NO_DOCKER = 2
EXIT_NO_DATA = 2
EXIT_DOCKER_ERROR = 1
DATASETS = CHOICES["dataset"]
# Docker's default /dev/shm is 64 MB, which DataLoader workers exhaust at once (they pass batches through it).
DEFAULT_SHM_SIZE = "8g"
NATIVE_HINT = "run natively instead: make setup && make reproduce DATASET={dataset}"


class DockerUnavailable(RuntimeError):
    """The Docker SDK is not installed or no Docker daemon answers; the message is one line."""


class BuildFailed(RuntimeError):
    """The daemon reported an error while building the image; the message is the daemon's."""


def repo_root() -> Path:
    """The checkout this module lives in (the build context: it holds the ``Dockerfile``)."""
    return Path(__file__).resolve().parents[1]


def git_revision(root: Path) -> tuple[str, str]:
    """``(commit, dirty)`` of the checkout at ``root`` for the image's build arguments.

    :func:`harness.environment.git_state` as strings: ``commit`` is the full hex SHA and ``dirty`` is
    ``"true"`` or ``"false"`` (so the runs made in the image record what they would record outside it); each
    is ``"unknown"`` where git cannot tell. The image has no ``.git``, so this is how the runs made in it
    still record the commit they were built from.
    """
    sha, dirty = git_state(root)
    return sha or "unknown", "unknown" if dirty is None else str(dirty).lower()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def connect() -> Any:
    """A ``docker.DockerClient`` for the daemon that ``DOCKER_HOST`` (or the local socket) names, pinged.

    Raises:
        DockerUnavailable: the ``docker`` package is missing, or no daemon answers (the SDK raises
            ``DockerException`` from ``from_env`` or ``ping``).
    """
    try:
        import docker
    except ImportError as error:
        raise DockerUnavailable("the Docker SDK for Python is not installed (pip install -e '.[docker]')") from error
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise DockerUnavailable(f"no Docker daemon reachable ({_one_line(error)})") from error
    return client


def _utf8_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream whose chunk borders may fall inside a multi-byte UTF-8 character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def build_image(
    tag: str = DEFAULT_TAG,
    context: Path | None = None,
    client: Any = None,
    out: TextIO | None = None,
) -> str:
    """Build ``context``'s ``Dockerfile`` as ``tag``, streaming the output to ``out``; return the image id.

    ``context`` defaults to :func:`repo_root`; ``client`` to :func:`connect` (a ``docker.DockerClient``);
    ``out`` to ``sys.stdout``. The commit and dirty flag of ``context`` go in as the ``GIT_COMMIT`` and
    ``GIT_DIRTY`` build arguments.

    Raises:
        DockerUnavailable: no client was given and none can be made.
        BuildFailed: the daemon reported a build error (a failing ``RUN``, a missing base image, ...).
    """
    context = repo_root() if context is None else Path(context)
    out = sys.stdout if out is None else out
    client = connect() if client is None else client
    commit, dirty = git_revision(context)
    image_id = ""
    events = client.api.build(
        path=str(context), tag=tag, buildargs={"GIT_COMMIT": commit, "GIT_DIRTY": dirty}, rm=True, decode=True
    )
    for event in events:
        if "error" in event:
            raise BuildFailed(_one_line(RuntimeError(event["error"])))
        if "stream" in event:
            out.write(event["stream"])
            out.flush()
        image_id = event.get("aux", {}).get("ID", image_id)
    if not image_id:
        raise BuildFailed(f"the daemon finished building {tag} without reporting an image id")
    return image_id


def container_spec(
    image: str,
    dataset: str,
    data_dir: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    uid: int,
    gid: int,
    extra_args: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    shm_size: str = DEFAULT_SHM_SIZE,
    data_mode: str = "ro",
    weights_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``client.containers.run`` for one ``reproduce`` in the image.

    Pure: nothing is checked on disk and the SDK is not needed. The command is the harness's
    (``reproduce --dataset DATASET *extra_args`` after the image's ``python -m harness`` entry point); all
    GPUs are requested (``count=-1``, the SDK's form of ``docker run --gpus all``); ``data_dir`` is mounted
    read-only on ``/data`` (``data_mode="rw"`` for the synthetic set, which the harness writes there) and
    ``results_dir`` read-write on ``/results``; the container runs as ``uid:gid``, detached, with an init
    process (so that ``docker stop`` reaches the harness) and a ``/dev/shm`` of ``shm_size`` for the
    data loader. ``environment`` adds to (and may override) ``DATA_DIR``, ``SPAL_RESULTS_DIR``
    and ``SPAL_LOGS_DIR``. ``weights_dir``, when given, is mounted read-only on :data:`CONTAINER_WEIGHTS_DIR`,
    the container's torch hub cache, where the runs look for the ImageNet weights.

    Raises:
        ValueError: ``data_dir``, ``results_dir`` or ``weights_dir`` is relative (Docker would read it as a
            volume name).
    """
    if data_mode not in ("ro", "rw"):
        raise ValueError(f"data_mode must be 'ro' or 'rw', got {data_mode!r}")
    for name, path in (("data_dir", data_dir), ("results_dir", results_dir), ("weights_dir", weights_dir)):
        if path is not None and not os.path.isabs(path):
            raise ValueError(f"{name} must be an absolute path for a bind mount, got {os.fspath(path)!r}")
    env = {
        "DATA_DIR": CONTAINER_DATA_DIR,
        "SPAL_RESULTS_DIR": CONTAINER_RESULTS_DIR,
        "SPAL_LOGS_DIR": CONTAINER_LOGS_DIR,
        **(environment or {}),
    }
    volumes = {
        os.fspath(data_dir): {"bind": CONTAINER_DATA_DIR, "mode": data_mode},
        os.fspath(results_dir): {"bind": CONTAINER_RESULTS_DIR, "mode": "rw"},
    }
    if weights_dir is not None:
        volumes[os.fspath(weights_dir)] = {"bind": CONTAINER_WEIGHTS_DIR, "mode": "ro"}
    return {
        "image": image,
        "command": ["reproduce", "--dataset", dataset, *extra_args],
        "device_requests": [{"count": -1, "capabilities": [["gpu"]]}],
        "volumes": volumes,
        "user": f"{uid}:{gid}",
        "environment": env,
        "shm_size": shm_size,
        "init": True,
        "detach": True,
    }


def run_reproduce(client: Any, spec: Mapping[str, Any], out: TextIO | None = None) -> int:
    """Start the container ``spec`` describes, stream its output to ``out`` until it ends; its exit code.

    ``client`` is a ``docker.DockerClient`` (anything with ``containers.run(**spec)`` returning an object with
    ``logs(stream=True, follow=True)``, ``wait()``, ``stop()`` and ``remove()``); ``spec`` comes from
    :func:`container_spec` (``detach`` must be true); ``out`` defaults to ``sys.stdout``. The container is
    removed afterwards (its results are in the mounted folder), and stopped first on Ctrl-C so that no
    training is left running on the GPUs.
    """
    if not spec.get("detach"):
        raise ValueError("spec must have detach=True: pass the dict container_spec returns")
    out = sys.stdout if out is None else out
    container = client.containers.run(**spec)
    try:
        for text in _utf8_chunks(container.logs(stream=True, follow=True)):
            out.write(text)
            out.flush()
        status = container.wait()
    except KeyboardInterrupt:
        container.stop()
        raise
    finally:
        container.remove(force=True)
    return int(status.get("StatusCode", 1))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness docker",
        description="Build the CUDA image, or run `harness reproduce` in it on all GPUs.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="build the repository's Dockerfile")
    build.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    reproduce = actions.add_parser(
        "reproduce", help="run the reproduction in the image; unknown options go to the harness in it"
    )
    reproduce.add_argument("--dataset", "-d", required=True, choices=DATASETS)
    reproduce.add_argument(
        "--data-dir",
        default=os.environ.get("DATA_DIR", "data"),
        help="host folder mounted on /data (read-only)",
    )
    reproduce.add_argument(
        "--results-dir", default=str(repo_root() / "results"), help="host folder mounted on /results"
    )
    reproduce.add_argument(
        "--weights-dir",
        help="host folder of ImageNet weight files (resnet50-0676ba61.pth, resnet50_ibn_a-d9d0bb7b.pth) mounted "
        f"read-only on the container's torch hub cache {CONTAINER_WEIGHTS_DIR} (default: this host's hub cache, "
        "$TORCH_HOME/hub/checkpoints, when it exists)",
    )
    reproduce.add_argument("--tag", default=DEFAULT_TAG, help=f"image to run (default {DEFAULT_TAG})")
    reproduce.add_argument("--shm-size", default=DEFAULT_SHM_SIZE, help="size of the container's /dev/shm")
    return parser


def _weights_dir(given: str | None) -> Path | None:
    """The host folder to mount as the container's hub cache: ``given``, else this host's hub cache if present."""
    if given:
        return Path(given).expanduser().resolve()
    from spal.models import hub_checkpoint_dir

    host = hub_checkpoint_dir()
    return host.resolve() if host.is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness docker build|reproduce ...``; the exit code (the container's for ``reproduce``).

    Exit codes of its own: 2 without the SDK or a daemon (one line on stderr, with the native command) and for
    a missing data set (the expected tree, as in the native ``reproduce``, checked before Docker is asked); 1
    when the daemon refuses (no such image, no GPU runtime, a failed build), in one line.
    """
    args, passthrough = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.action == "build" and passthrough:
        _parser().error(f"unrecognized arguments: {' '.join(passthrough)}")
    dataset = getattr(args, "dataset", "<name>")
    if args.action == "reproduce":
        data_dir = Path(args.data_dir).expanduser().resolve()
        if dataset in EXPECTED_TREES and missing_paths(dataset, data_dir):
            sys.stderr.write(expected_tree_message(dataset, data_dir) + "\n")
            return EXIT_NO_DATA
    try:
        client = connect()
    except DockerUnavailable as error:
        sys.stderr.write(f"docker: {error}; {NATIVE_HINT.format(dataset=dataset)}\n")
        return EXIT_NO_DOCKER
    import docker  # importable: connect() just used it

    try:
        if args.action == "build":
            build_image(args.tag, client=client)
            return 0
        results_dir = Path(args.results_dir).expanduser().resolve()
        weights_dir = _weights_dir(args.weights_dir)
        # Both made here, as the caller: the daemon would create a missing bind-mount source as root.
        data_dir.mkdir(parents=True, exist_ok=True)
        results_dir.mkdir(parents=True, exist_ok=True)
        spec = container_spec(
            args.tag,
            dataset,
            data_dir,
            results_dir,
            os.getuid(),
            os.getgid(),
            passthrough,
            shm_size=args.shm_size,
            data_mode="rw" if dataset == "synthetic" else "ro",
            weights_dir=weights_dir,
        )
        return run_reproduce(client, spec)
    except BuildFailed as error:
        sys.stderr.write(f"docker build failed: {error}\n")
    except docker.errors.ImageNotFound:
        sys.stderr.write(f"docker: no image {args.tag}; build it first: make docker-build\n")
    except docker.errors.APIError as error:
        sys.stderr.write(f"docker: the daemon refused: {_one_line(error)}\n")
    return EXIT_DOCKER_ERROR


if __name__ == "__main__":
    sys.exit(main())
