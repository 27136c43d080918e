"""The Docker files, checked without a Docker engine: every service, image tag, healthcheck, dependency, volume and
environment variable against what the code reads, and the image's commands against what `onduty up` runs."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from onduty import stack
from onduty.cli import build_parser
from onduty.kafka_broker import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"topics", "ingest", "processor"}
CODE_PACKAGES = ("onduty", "ingest", "processors", "schemas")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def merge(base, overlay):
    """Compose's merge of ``-f a.yml -f b.yml`` for what our files use: mappings merge, sequences append."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(overlay, list):
        return base + [item for item in overlay if item not in base]
    return overlay


COMPOSE = load("docker-compose.yml")
CLUSTER = merge(COMPOSE, load("docker-compose.cluster.yml"))  # what its documented command loads
SERVICES = COMPOSE["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def onduty_argv(service: dict) -> list[str]:
    """The ``onduty …`` arguments a service runs: its command under the image's entrypoint, or its own
    ``sh -c "exec onduty …"`` entrypoint, with the shell's ``$(hostname)`` replaced by a placeholder."""
    if "entrypoint" in service:
        script = service["entrypoint"][-1].replace("$$(hostname)", "HOST")
        words = shlex.split(script)
        assert words[:2] == ["exec", "onduty"], f"entrypoint must exec onduty: {script}"
        return words[2:]
    entrypoint = [args for kind, args in dockerfile_instructions() if kind == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint[-1]) == ["onduty"]
    return list(service["command"])


def env_names_read_by_code() -> set[str]:
    """Every ``ONDUTY_*`` name the code reads: through the ``onduty.env`` helpers or spelled out."""
    names = {"ONDUTY_KAFKA_BOOTSTRAP"}  # onduty.env.kafka_bootstrap()
    helper = re.compile(r'env_(?:str|int|float|bool|list|duration_ms|durations_ms)\(\s*"([A-Z0-9_]+)"')
    literal = re.compile(r'"(ONDUTY_[A-Z0-9_]+)"')
    for package in CODE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            names |= {"ONDUTY_" + name for name in helper.findall(text)}
            names |= set(literal.findall(text))
    return names


def test_every_service_is_known_and_images_are_pinned():
    assert set(SERVICES) == {"kafka"} | APP_SERVICES
    # the broker `onduty up` and the tests run is the same Kafka version as the compose broker
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    for name, service in CLUSTER["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image tag not pinned: {image}"
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"] == "onduty:local"
    base = next(args for kind, args in dockerfile_instructions() if kind == "FROM")
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", base) and not base.endswith(":latest")


def test_long_running_services_have_healthchecks_and_the_topics_job_runs_once():
    for name in ("kafka", "ingest", "processor"):
        check = SERVICES[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 1, name
        assert SERVICES[name]["restart"] == "unless-stopped"
    assert SERVICES["topics"]["restart"] == "no"
    assert "healthcheck" not in SERVICES["topics"]
    assert "/healthz" in " ".join(SERVICES["ingest"]["healthcheck"]["test"])
    assert "9092" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])


@pytest.mark.parametrize("config", [COMPOSE, CLUSTER], ids=["single-broker", "three-brokers"])
def test_services_start_in_order_by_health(config):
    services = config["services"]
    expected = {"topics": "service_healthy", "ingest": "service_completed_successfully",
                "processor": "service_completed_successfully"}
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), f"{name} -> {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has no check"
    for name, condition in expected.items():
        assert {spec["condition"] for spec in services[name]["depends_on"].values()} == {condition}
    brokers = {name for name in services if services[name]["image"].startswith("apache/kafka:")}
    assert set(services["topics"]["depends_on"]) == brokers
    assert set(services["ingest"]["depends_on"]) == set(services["processor"]["depends_on"]) == {"topics"}


def test_the_webhook_secret_is_required_never_defaulted_and_unsigned_input_is_never_enabled():
    secret = SERVICES["ingest"]["environment"]["ONDUTY_WEBHOOK_SECRETS"]
    assert re.fullmatch(r"\$\{ONDUTY_WEBHOOK_SECRETS:\?[^}]+\}", secret)
    for name in ("docker-compose.yml", "docker-compose.override.yml", "docker-compose.cluster.yml", "Dockerfile"):
        assert "ONDUTY_ALLOW_UNSIGNED" not in (ROOT / name).read_text(), name


def test_data_lives_in_declared_named_volumes_at_the_paths_the_services_write():
    for config in (COMPOSE, CLUSTER):
        used = {mount.split(":")[0] for s in config["services"].values() for mount in s.get("volumes", [])}
        assert used == set(config["volumes"]), "every mount is a declared named volume, every volume is used"
    mounts = {name: {m.split(":")[1] for m in s.get("volumes", [])} for name, s in SERVICES.items()}
    assert SERVICES["kafka"]["environment"]["KAFKA_LOG_DIRS"] in mounts["kafka"]
    assert SERVICES["ingest"]["environment"]["ONDUTY_SPOOL_DIR"] in mounts["ingest"]
    data_dir = onduty_argv(SERVICES["processor"])
    data_dir = data_dir[data_dir.index("--data-dir") + 1]
    assert any(data_dir.startswith(mount + "/") for mount in mounts["processor"])
    # the image creates the mount points owned by its user, so fresh named volumes are writable
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in mounts["ingest"] | mounts["processor"]:
        assert path in dockerfile


def test_ports_let_the_processor_scale_and_publish_ingest():
    ingest_ports = SERVICES["ingest"]["ports"]
    assert ingest_ports == [f"8080:{SERVICES['ingest']['environment']['ONDUTY_INGEST_PORT']}"]
    # a host port range: each replica of `--scale processor=N` binds one of them, no clash
    (processor_ports,) = SERVICES["processor"]["ports"]
    host, container = processor_ports.rsplit(":", 1)
    low, high = (int(p) for p in host.split("-"))
    assert high - low + 1 >= 3
    argv = onduty_argv(SERVICES["processor"])
    assert container == argv[argv.index("--web-port") + 1]
    # dev-only host ports are in the override file and bound to loopback
    for service in load("docker-compose.override.yml")["services"].values():
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])


def test_every_onduty_variable_set_by_the_docker_files_is_read_by_the_code():
    read = env_names_read_by_code()
    set_by_docker = set()
    for config in (COMPOSE, CLUSTER):
        for service in config["services"].values():
            set_by_docker |= {k for k in service.get("environment", {}) if k.startswith("ONDUTY_")}
    for kind, args in dockerfile_instructions():
        if kind == "ENV":
            set_by_docker |= set(re.findall(r"(ONDUTY_[A-Z0-9_]+)=", args))
    interpolated = set(re.findall(r"\$\{(ONDUTY_[A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert set_by_docker | interpolated <= read, f"not read by any code: {sorted((set_by_docker | interpolated) - read)}"
    assert "ONDUTY_WEBHOOK_SECRETS" in set_by_docker


def test_the_image_runs_the_same_onduty_commands_as_the_local_stack():
    services = {name: onduty_argv(SERVICES[name]) for name in APP_SERVICES}
    assert set(services) == set(stack.SERVICE_COMMANDS)
    for name, argv in services.items():
        assert argv[: len(stack.SERVICE_COMMANDS[name])] == stack.SERVICE_COMMANDS[name], name
    cmd = yaml.safe_load(next(args for kind, args in reversed(dockerfile_instructions()) if kind == "CMD"))
    assert cmd in stack.SERVICE_COMMANDS.values()

    missing = stack.missing_commands()
    if missing:
        pytest.skip(f"`onduty {' '.join(missing)}` not in this checkout yet: cannot parse those commands")
    parser = build_parser()
    for name, argv in services.items():
        parser.parse_args(argv)  # the compose flags are ones the command accepts
    # and the local stack's processor flags too
    local_argv = stack.LocalStack(stack.StackConfig(var_dir=Path("var"))).processor_argv(0)
    assert local_argv[:3] == [sys.executable, "-m", "onduty.cli"]
    parser.parse_args(local_argv[3:])


def test_the_dockerfile_caches_dependencies_and_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    copies = [(i, args) for i, (kind, args) in enumerate(instructions) if kind == "COPY"]
    first_copy_index, first_copy = copies[0]
    assert first_copy.split()[0] == "pyproject.toml", "only the dependency list before the dependency layer"
    install = next(i for i, (kind, args) in enumerate(instructions) if kind == "RUN" and "pip install" in args)
    assert first_copy_index < install < copies[1][0], "dependencies installed before the sources are copied"
    users = [args for kind, args in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)


def test_the_three_broker_variant_is_a_real_quorum_with_replicated_topics():
    services = CLUSTER["services"]
    brokers = {name: s for name, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert len(brokers) == 3
    envs = [s["environment"] for s in brokers.values()]
    assert len({env["KAFKA_NODE_ID"] for env in envs}) == 3
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert voters == {",".join(f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in zip(brokers, envs))}
    for env in envs:
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert {b.split(":")[0] for b in env["ONDUTY_KAFKA_BOOTSTRAP"].split(",")} == set(brokers)
        assert env["ONDUTY_REPLICATION_FACTOR"] == "3"
        assert env["ONDUTY_WEBHOOK_SECRETS" if name == "ingest" else "ONDUTY_KAFKA_BOOTSTRAP"]
    advertised = [env["KAFKA_ADVERTISED_LISTENERS"] for env in envs]
    assert len(set(advertised)) == 3
    for service, listeners in zip(brokers.values(), advertised):  # a host client reaches every broker it is told of
        host_port = listeners.split("HOST://localhost:")[1].split(",")[0]
        assert f"127.0.0.1:{host_port}:{host_port}" in service.get("ports", [])
