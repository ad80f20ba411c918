"""The image and the manifests: the Dockerfile passes hadolint, the Kubernetes manifests pass
their API schemas, and both (and docker-compose.yml) start the commands and read the settings
that exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.runtime.cli import _parser
from bot.runtime.config import load_settings
from bot.runtime.environment import SECRET_SETTINGS
from bot.runtime.help import SETTINGS_HELP
from tests.support import API_TOKEN, CALLBACK_SECRET, ROOT

DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
SETTINGS = {name for name, _ in SETTINGS_HELP if name != "NAME_FILE"}
FILE_SETTINGS = {f"{name}_FILE" for name in SECRET_SETTINGS}


def tool(name: str) -> str:
    """A dev dependency's executable: beside this interpreter (a venv run without activating
    it) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[dev]'"
    return found


def check_command(args: list[str]) -> str:
    """The subcommand that `taskjuice-bot ARGS` runs (argparse exits on anything unknown)."""
    command: str = _parser().parse_args(args).command
    return command


def check_environment(env: dict[str, str]) -> None:
    for name in env:
        assert name in SETTINGS or name in FILE_SETTINGS, f"{name} is not a setting"
        if name in FILE_SETTINGS:
            assert name.removesuffix("_FILE") not in env, f"{name} and its value both set"


# --- the image -----------------------------------------------------------------------------


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_on_a_finding(tmp_path: Path) -> None:
    """So the test above could fail: an unpinned base image is a finding."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nCMD ["python"]\n')
    done = hadolint(bad)
    assert done.returncode != 0 and "DL3007" in done.stdout


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by FROM."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_the_image_is_built_in_stages_and_runs_unprivileged() -> None:
    build, final = stages()
    assert build[0].endswith(" AS build") and "-slim" in build[0]
    assert "-slim" in final[0] and "COPY --from=build /opt/taskjuice /opt/taskjuice" in final
    # no package manager and no compiler in what runs
    assert not [i for i in final if "apt-get" in i or "gcc" in i or "pip install" in i]
    [user] = [i for i in final if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can check it
    [healthcheck] = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert "/healthz" in healthcheck
    entrypoint = [i for i in final if i.startswith(("ENTRYPOINT ", "CMD "))]
    assert entrypoint == ['ENTRYPOINT ["taskjuice-bot"]', 'CMD ["serve"]']
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "taskjuice-bot" in scripts
    assert "ENV" in " ".join(final) and "HOST=0.0.0.0" in " ".join(final)


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    build, _ = stages()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for line in build:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source
    assert "*" in ignore and "!.env" not in ignore


# --- Kubernetes ----------------------------------------------------------------------------


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def deployment(component: str) -> dict[str, Any]:
    [found] = [
        d
        for d in by_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_passes_the_kubernetes_schema(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_a_wrong_field() -> None:
    """So the test above could fail."""
    job = dict(by_kind("Job")[0])
    job["spec"] = dict(job["spec"], backofLimit=3)  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def test_the_manifests_hold_every_part_of_a_deployment() -> None:
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Service",
    ]


def pods() -> list[tuple[str, dict[str, Any]]]:
    """(command, pod spec) of the web and worker Deployments and the migration Job."""
    found = []
    for doc in [*by_kind("Deployment"), *by_kind("Job")]:
        spec = doc["spec"]["template"]["spec"]
        [container] = spec["containers"]
        found.append((check_command(container["args"]), spec))
    return found


def test_web_worker_and_migration_run_the_right_commands() -> None:
    web = deployment("web")["spec"]["template"]["spec"]["containers"][0]
    worker = deployment("worker")["spec"]["template"]["spec"]["containers"][0]
    assert web["args"] == ["serve", "--no-workers"]
    assert worker["args"] == ["worker"]
    assert sorted(command for command, _ in pods()) == ["migrate", "serve", "worker"]


def test_pods_run_unprivileged_on_a_read_only_filesystem() -> None:
    for _, spec in pods():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        [container] = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts


def test_secrets_are_files_of_a_secret_volume_named_by_file_settings() -> None:
    for command, spec in pods():
        [container] = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert all("value" in e for e in env.values())  # no secretKeyRef: no secret in env
        check_environment({name: e["value"] for name, e in env.items()})
        secret_volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
        mounts = {
            m["mountPath"]: secret_volumes[m["name"]]
            for m in container["volumeMounts"]
            if m["name"] in secret_volumes
        }
        files = {name: e["value"] for name, e in env.items() if name in FILE_SETTINGS}
        assert "DATABASE_URL_FILE" in files
        if command != "migrate":
            assert {"API_TOKENS_FILE", "CALLBACK_SECRET_FILE"} <= set(files)
        for name, path in files.items():
            folder, key = path.rsplit("/", 1)
            assert folder in mounts, f"{name}: {path} is not in a mounted Secret"
            items = mounts[folder].get("items")
            assert items is None or key in {i["path"] for i in items}, name


def test_probes_and_grace_period_fit_the_service() -> None:
    [config] = by_kind("ConfigMap")
    lease = float(config["data"].get("OUTBOX_LEASE", 60))
    for component in ("web", "worker"):
        spec = deployment(component)["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > lease
        [container] = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        [port] = container["ports"]
        assert port["containerPort"] == 3000  # the image's PORT


def test_the_configmap_holds_well_formed_settings() -> None:
    [config] = by_kind("ConfigMap")
    check_environment(config["data"])
    fake_secrets = {"API_TOKENS": API_TOKEN, "CALLBACK_SECRET": CALLBACK_SECRET}
    settings = load_settings(config["data"] | fake_secrets, env_file=None)
    assert settings.migrate_on_start is False  # the Job migrates


def test_service_and_disruption_budgets_select_the_pods() -> None:
    [service] = by_kind("Service")
    web_labels = deployment("web")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= web_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    budgets = by_kind("PodDisruptionBudget")
    selected = set()
    for budget in budgets:
        wanted = budget["spec"]["selector"]["matchLabels"]
        for component in ("web", "worker"):
            labels = deployment(component)["spec"]["template"]["metadata"]["labels"]
            if wanted.items() <= labels.items():
                selected.add(component)
    assert selected == {"web", "worker"}


# --- docker compose ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_builds_the_image_and_runs_postgres_migrate_web_and_worker() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "web", "worker"}
    commands = {}
    for name in ("migrate", "web", "worker"):
        service = services[name]
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        commands[name] = check_command(service["command"])
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert commands == {"migrate": "migrate", "web": "serve", "worker": "worker"}
    assert services["web"]["command"] == ["serve", "--no-workers"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_gives_secrets_as_files_only() -> None:
    document = compose()
    declared = document["secrets"]
    for name in ("migrate", "web", "worker"):
        service = document["services"][name]
        env = service["environment"]
        check_environment(env)
        mounted = set(service["secrets"])
        assert mounted <= set(declared)
        assert "DATABASE_URL_FILE" in env
        for setting, path in env.items():
            if setting in FILE_SETTINGS:
                assert path.startswith("/run/secrets/") and path.split("/")[-1] in mounted
        if name != "migrate":
            assert env["MIGRATE_ON_START"] == "false"
            assert {"API_TOKENS_FILE", "CALLBACK_SECRET_FILE"} <= set(env)
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")
    assert "/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
