"""The container images' contract, tested without a Docker engine (none runs on these machines):
the Dockerfiles' user, ports and health checks match the chart and the operator's rendered pods,
and the server binary runs as the image's non-root user with nothing writable but /tmp.

The image build itself is not exercised here."""

import json
import os
import pathlib
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import yaml

from test_chart import render

ROOT = pathlib.Path(__file__).resolve().parents[2]


def dockerfile(path):
    text = (ROOT / path).read_text()
    runtime = text.split("\nFROM ")[-1]  # the last stage is the image
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.M)
    expose = re.search(r"^EXPOSE (.+)$", runtime, re.M)
    health = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", runtime, re.M)
    return {
        "runtime": runtime,
        "uid": int(user.group(1)),
        "gid": int(user.group(2)),
        "ports": sorted(int(p) for p in expose.group(1).split()),
        "healthcheck": json.loads(health.group(1)),
    }


def server_pod():
    snap = (ROOT / "operator/tests/snapshots/2-multi-node-redis.snap").read_text()
    children = list(yaml.safe_load_all(snap))[-1]
    return next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]


def test_server_image_matches_the_operator_pod():
    image = dockerfile("server/Dockerfile")
    pod = server_pod()
    container = next(c for c in pod["containers"] if c["name"] in ("sockudo", "server"))
    ports = sorted(p["containerPort"] for p in container["ports"])
    assert ports == image["ports"], (ports, image["ports"])
    uid = container.get("securityContext", {}).get("runAsUser") or pod["securityContext"]["runAsUser"]
    assert uid == image["uid"]
    assert image["healthcheck"] == ["sockudo", "healthcheck"]
    # No config or credentials are baked in: nothing from the repo but the binary is copied.
    copies = re.findall(r"^COPY (.*)$", image["runtime"], re.M)
    assert copies == ["--from=build /out/sockudo /usr/local/bin/sockudo"], copies
    # The operator mounts the config where the server is told to read it.
    args = container.get("args", []) + container.get("command", [])
    assert "--config" in args


def test_operator_image_matches_the_chart():
    image = dockerfile("operator/Dockerfile")
    dep = next(d for d in render({}) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == image["ports"]
    assert pod["securityContext"]["runAsUser"] == image["uid"]
    assert image["healthcheck"] == ["sockudo-operator", "healthcheck"]


_HANDED_OUT = set()


def free_port():
    # Below the kernel's ephemeral range (as tests/backends' free_port): an outgoing connection
    # could take an ephemeral port between this check and the server's bind.
    # A port is never handed out twice: two calls before anything binds would otherwise be able
    # to return the same free port (CI once got `port` == `metrics.port`).
    for port in random.sample(range(10_000, 20_000), 10_000):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free loopback port in 10000-19999")


def sockudo_binary():
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "sockudo"
        if candidate.is_file():
            return candidate
    raise AssertionError(f"no sockudo binary under {target}: run `cargo build -p sockudo-server`")


def test_server_runs_as_the_image_user_with_nothing_writable():
    image = dockerfile("server/Dockerfile")
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed: apt-get install -y util-linux"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # Root-owned and read-only for the image user, like the image's filesystem and mounts.
        etc = tmp / "etc"
        etc.mkdir()
        binary = tmp / "sockudo"
        shutil.copy(sockudo_binary(), binary)
        port, metrics = free_port(), free_port()
        (etc / "app.secret").write_text("s3cret\n")
        (etc / "config.json").write_text(json.dumps({
            "host": "127.0.0.1", "port": port, "shutdown_grace_period": 0,
            "metrics": {"port": metrics, "host": "127.0.0.1"},
            "apps": [{"id": "1234", "key": "app-key", "secret_file": str(etc / "app.secret")}],
        }))
        for p in (etc, etc / "app.secret", etc / "config.json", binary):
            os.chmod(p, 0o555 if p.is_dir() or p == binary else 0o444)
        os.chmod(tmp, 0o555)
        user = ["setpriv", f"--reuid={image['uid']}", f"--regid={image['gid']}", "--clear-groups"]
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}
        server = subprocess.Popen(user + [str(binary), "--config", str(etc / "config.json")],
                                  cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                        assert r.status == 200
                        break
                except OSError:
                    assert server.poll() is None, server.stdout.read().decode()
                    assert time.time() < deadline, "the server did not become ready"
                    time.sleep(0.1)
            probe = subprocess.run(
                user + [str(binary), "healthcheck", "--url", f"http://127.0.0.1:{port}/ready"],
                cwd=tmp, env=env, capture_output=True, timeout=10)
            assert probe.returncode == 0, probe
            # Nothing was written next to the binary or the config.
            assert sorted(p.name for p in tmp.iterdir()) == ["etc", "sockudo"]
            assert sorted(p.name for p in etc.iterdir()) == ["app.secret", "config.json"]
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            os.chmod(tmp, 0o755)
