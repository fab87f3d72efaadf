"""harness.docker: the container spec, the paths without a daemon, and log streaming with a fake client."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import docker as hd


class FakeContainer:
    """What ``client.containers.run(detach=True)`` returns, as far as run_reproduce uses it."""

    def __init__(self, chunks: list[bytes], status: dict[str, Any], interrupt: bool = False) -> None:
        self.chunks, self.status, self.interrupt = chunks, status, interrupt
        self.stopped = self.removed = False

    def logs(self, stream: bool, follow: bool):
        assert stream and follow
        yield from self.chunks
        if self.interrupt:
            raise KeyboardInterrupt

    def wait(self) -> dict[str, Any]:
        return self.status

    def stop(self) -> None:
        self.stopped = True

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeClient:
    def __init__(self, container: FakeContainer | None = None, run_error: Exception | None = None) -> None:
        self.container, self.run_error = container, run_error
        self.run_kwargs: dict[str, Any] | None = None
        self.containers = self
        self.api = self
        self.build_kwargs: dict[str, Any] | None = None
        self.build_events: list[dict[str, Any]] = []

    def run(self, **kwargs: Any) -> FakeContainer:
        self.run_kwargs = kwargs
        if self.run_error is not None:
            raise self.run_error
        assert self.container is not None
        return self.container

    def build(self, **kwargs: Any):
        self.build_kwargs = kwargs
        return iter(self.build_events)


def _spec(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return hd.container_spec(
        "spal:test", "msmt17", tmp_path / "data", tmp_path / "out", 1234, 567, ["--seeds", "1,2"], **kwargs
    )


def test_container_spec_mounts_gpus_user_and_command(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert spec["image"] == "spal:test"
    assert spec["command"] == ["reproduce", "--dataset", "msmt17", "--seeds", "1,2"]
    assert spec["device_requests"] == [{"count": -1, "capabilities": [["gpu"]]}]
    assert spec["volumes"] == {
        str(tmp_path / "data"): {"bind": "/data", "mode": "ro"},
        str(tmp_path / "out"): {"bind": "/results", "mode": "rw"},
    }
    assert spec["user"] == "1234:567"
    assert spec["detach"] is True and spec["init"] is True
    assert spec["environment"] == {
        "DATA_DIR": "/data",
        "SPAL_RESULTS_DIR": "/results",
        "SPAL_LOGS_DIR": "/results/logs",
    }


def test_container_spec_environment_override_and_synthetic_rw(tmp_path: Path) -> None:
    spec = _spec(tmp_path, environment={"DATA_DIR": "/elsewhere", "CUDA_VISIBLE_DEVICES": "0"}, data_mode="rw")
    assert spec["environment"]["DATA_DIR"] == "/elsewhere"
    assert spec["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert spec["volumes"][str(tmp_path / "data")]["mode"] == "rw"


def test_container_spec_mounts_the_weights_on_the_hub_cache_read_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path, weights_dir=tmp_path / "weights")
    assert spec["volumes"][str(tmp_path / "weights")] == {"bind": hd.CONTAINER_WEIGHTS_DIR, "mode": "ro"}
    assert str(tmp_path / "weights") not in _spec(tmp_path)["volumes"]
    with pytest.raises(ValueError, match="weights_dir must be an absolute path"):
        _spec(tmp_path, weights_dir="weights")


def test_container_spec_rejects_relative_paths_and_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        hd.container_spec("i", "msmt17", "data", tmp_path, 1, 1)
    with pytest.raises(ValueError, match="absolute path"):
        hd.container_spec("i", "msmt17", tmp_path, "results", 1, 1)
    with pytest.raises(ValueError, match="'ro' or 'rw'"):
        _spec(tmp_path, data_mode="rwx")


def test_container_spec_is_accepted_by_the_sdk(tmp_path: Path) -> None:
    docker = pytest.importorskip("docker")
    from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS
    from docker.types import DeviceRequest, HostConfig

    spec = _spec(tmp_path)
    unknown = set(spec) - {"image", "volumes"} - set(RUN_CREATE_KWARGS) - set(RUN_HOST_CONFIG_KWARGS)
    assert not unknown, f"containers.run does not take {unknown}"
    host = HostConfig(version="1.41", device_requests=spec["device_requests"], binds=spec["volumes"])
    assert host["DeviceRequests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert sorted(host["Binds"]) == sorted([f"{tmp_path / 'data'}:/data:ro", f"{tmp_path / 'out'}:/results:rw"])
    assert docker.__version__


def test_run_reproduce_streams_logs_and_passes_the_exit_code_on(tmp_path: Path) -> None:
    # "é" is two bytes in UTF-8; the chunk border falls between them.
    text = "epoch 1 mAP 12.5 é\ndone\n".encode()
    cut = text.index("é".encode()) + 1
    container = FakeContainer([text[:cut], text[cut:]], {"StatusCode": 3})
    client = FakeClient(container)
    out = io.StringIO()
    spec = _spec(tmp_path)
    assert hd.run_reproduce(client, spec, out=out) == 3
    assert out.getvalue() == "epoch 1 mAP 12.5 é\ndone\n"
    assert client.run_kwargs == spec
    assert container.removed and not container.stopped


def test_run_reproduce_zero_exit_and_interrupt_stops_the_container(tmp_path: Path) -> None:
    assert hd.run_reproduce(FakeClient(FakeContainer([], {"StatusCode": 0})), _spec(tmp_path), io.StringIO()) == 0
    container = FakeContainer([b"x"], {"StatusCode": 0}, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        hd.run_reproduce(FakeClient(container), _spec(tmp_path), io.StringIO())
    assert container.stopped and container.removed
    with pytest.raises(ValueError, match="detach=True"):
        hd.run_reproduce(FakeClient(container), {**_spec(tmp_path), "detach": False})


def _isolate_from_remote_daemons(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the local socket may be tried: no DOCKER_HOST, no context from the user's docker config."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))


def test_no_daemon_prints_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docker = pytest.importorskip("docker")

    def refuse(**kwargs: Any) -> None:
        raise docker.errors.DockerException("Error while fetching server API version:\n connection refused")

    monkeypatch.setattr(docker, "from_env", refuse)
    args = ["reproduce", "--dataset", "synthetic", "--data-dir", str(tmp_path / "d")]
    code = hd.main([*args, "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == hd.EXIT_NO_DOCKER == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no Docker daemon reachable" in err and "connection refused" in err
    assert "make setup && make reproduce DATASET=synthetic" in err
    assert not (tmp_path / "r").exists(), "nothing should be created when Docker is not there"


def test_no_daemon_here_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    if Path("/var/run/docker.sock").exists():
        pytest.skip("a local Docker socket exists; this test covers machines without a daemon")
    _isolate_from_remote_daemons(monkeypatch, tmp_path)
    with pytest.raises(hd.DockerUnavailable, match="no Docker daemon reachable"):
        hd.connect()


def test_sdk_missing_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # makes `import docker` raise ImportError
    assert hd.main(["build"]) == hd.EXIT_NO_DOCKER
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[docker]'" in err and "make setup" in err


def test_missing_data_is_reported_before_docker_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise AssertionError("connect() must not run when the data set is missing")

    monkeypatch.setattr(hd, "connect", fail)
    assert hd.main(["reproduce", "--dataset", "msmt17", "--data-dir", str(tmp_path)]) == hd.EXIT_NO_DATA
    err = capsys.readouterr().err
    assert "MSMT17_V1" in err and "list_train.txt" in err and "Traceback" not in err


def test_main_reproduce_runs_the_container_as_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("docker")
    client = FakeClient(FakeContainer([b"training\n"], {"StatusCode": 7}))
    monkeypatch.setattr(hd, "connect", lambda: client)
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "--dataset", "synthetic", "--data-dir", "d", "--results-dir", "r", "--seeds", "1"]
    assert hd.main(argv) == 7
    assert capsys.readouterr().out == "training\n"
    kwargs = client.run_kwargs
    assert kwargs is not None
    assert kwargs["image"] == hd.DEFAULT_TAG
    assert kwargs["command"] == ["reproduce", "--dataset", "synthetic", "--seeds", "1"]
    assert kwargs["user"] == f"{os.getuid()}:{os.getgid()}"
    # Relative paths are resolved, made by the caller, and the synthetic set is writable (it is generated).
    assert kwargs["volumes"][str(tmp_path / "d")] == {"bind": "/data", "mode": "rw"}
    assert kwargs["volumes"][str(tmp_path / "r")] == {"bind": "/results", "mode": "rw"}
    assert (tmp_path / "r").is_dir()


def test_main_reports_a_missing_image_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docker = pytest.importorskip("docker")
    monkeypatch.setattr(hd, "connect", lambda: FakeClient(run_error=docker.errors.ImageNotFound("no such image")))
    argv = ["reproduce", "--dataset", "synthetic", "--data-dir", str(tmp_path), "--tag", "spal:nope"]
    assert hd.main([*argv, "--results-dir", str(tmp_path / "r")]) == hd.EXIT_DOCKER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spal:nope" in err and "make docker-build" in err


def test_build_image_streams_output_and_passes_the_commit(tmp_path: Path) -> None:
    client = FakeClient()
    client.build_events = [
        {"stream": "Step 1/9 : FROM python\n"},
        {"aux": {"ID": "sha256:abc"}},
        {"stream": "ok\n"},
    ]
    out = io.StringIO()
    assert hd.build_image("spal:t", context=tmp_path, client=client, out=out) == "sha256:abc"
    assert out.getvalue() == "Step 1/9 : FROM python\nok\n"
    assert client.build_kwargs is not None
    assert client.build_kwargs["path"] == str(tmp_path) and client.build_kwargs["tag"] == "spal:t"
    assert client.build_kwargs["buildargs"] == {"GIT_COMMIT": "unknown", "GIT_DIRTY": "unknown"}


def test_build_image_raises_on_a_daemon_error(tmp_path: Path) -> None:
    client = FakeClient()
    client.build_events = [
        {"stream": "Step 5/9 : RUN pip\n"},
        {"error": "The command returned\n a non-zero code: 1"},
    ]
    with pytest.raises(hd.BuildFailed, match="The command returned a non-zero code: 1"):
        hd.build_image("spal:t", context=tmp_path, client=client, out=io.StringIO())
    client.build_events = [{"stream": "nothing\n"}]
    with pytest.raises(hd.BuildFailed, match="without reporting an image id"):
        hd.build_image("spal:t", context=tmp_path, client=client, out=io.StringIO())


def test_git_revision_reads_commit_and_dirty_flag(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    assert hd.git_revision(tmp_path) == ("unknown", "unknown")
    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("commit", "-q", "-m", "m")
    sha = git("rev-parse", "HEAD")
    assert len(sha) == 40 and hd.git_revision(tmp_path) == (sha, "false")
    (tmp_path / "f").write_text("2")
    assert hd.git_revision(tmp_path) == (sha, "true")
