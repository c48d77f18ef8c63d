"""The Dockerfiles: hadolint-clean, built from the uv lock for one package, hardened runtime.

No Docker engine runs here, so besides linting, the builder stage is replayed with uv: the
files it copies are copied into an empty directory and its `uv sync` commands run there
(offline, from uv's cache), which proves the lock, the copied members and the commands are
enough to install the service, and that dev dependencies stay out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HADOLINT_CONFIG = Path(__file__).with_name("hadolint.yaml")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what a container must listen on)


@dataclass(frozen=True)
class Image:
    dockerfile: str
    dist: str
    module: str
    port: int
    health_path: str


IMAGES = {
    "gateway": Image(
        "services/gateway/Dockerfile", "vidgen-gateway", "vidgen_gateway", 8000, "/healthz"
    ),
    "generator": Image(
        "services/generator/Dockerfile", "vidgen-generator", "vidgen_generator", 8080, "/healthz"
    ),
    "poller": Image(
        "services/poller/Dockerfile", "vidgen-poller", "vidgen_poller", 8080, "/healthz"
    ),
    "media": Image("services/media/Dockerfile", "vidgen-media", "vidgen_media", 8080, "/healthz"),
    "runway-sim": Image(
        "tools/runway_sim/Dockerfile", "runway-sim", "runway_sim", 8100, "/_sim/health"
    ),
}


# --- a small Dockerfile reader ---------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """``--name=value`` flags in front of the arguments, and the rest."""
        flags: dict[str, str] = {}
        rest = self.args
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", rest):
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        return flags, rest


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def read_instructions(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1].strip() + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, f"{path}: a continued line never ends"
    return instructions


def read_stages(path: Path) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in read_instructions(path):
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        elif instruction.keyword == "FROM":
            words = instruction.args.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{path}:{instruction.line}: {instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def builder(stages: list[Stage]) -> Stage:
    found = [s for s in stages if s.name == "builder"]
    assert len(found) == 1, "one stage named `builder`"
    return found[0]


def local_copies(stage: Stage) -> list[tuple[list[str], str]]:
    """``COPY`` instructions from the build context: (sources, destination)."""
    copies = []
    for instruction in stage.all("COPY"):
        flags, rest = instruction.flags_and_rest()
        if "from" in flags:
            continue
        *sources, destination = rest.split()
        copies.append((sources, destination))
    return copies


def uv_syncs(stage: Stage) -> list[list[str]]:
    """The ``uv sync`` commands of a stage's RUN instructions, as argv."""
    commands = []
    for instruction in stage.all("RUN"):
        _, rest = instruction.flags_and_rest()
        for part in rest.split("&&"):
            argv = shlex.split(part)
            if argv[:2] == ["uv", "sync"]:
                commands.append(argv)
    return commands


# --- .dockerignore (Docker's matching, simplified: *, ?, ** and ! exceptions) ----------------


def _pattern(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern(line.lstrip("!").strip("/"))))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in rules:
        if any(pattern.match(prefix) for prefix in prefixes):
            result = not negated
    return result


# --- the lock -------------------------------------------------------------------------------


def workspace_closure(dist: str) -> dict[str, str]:
    """The workspace members ``dist`` needs (itself included), name -> path, from uv.lock."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    members = {
        name: p["source"]["editable"] for name, p in packages.items() if "editable" in p["source"]
    }
    assert dist in members, f"{dist} is not a workspace member in uv.lock"
    needed: dict[str, str] = {}
    todo = [dist]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed[name] = members[name]
        todo += [d["name"] for d in packages[name].get("dependencies", []) if d["name"] in members]
    return needed


# --- tests ----------------------------------------------------------------------------------


def run_hadolint(hadolint: Path, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(hadolint), "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_finds_nothing(hadolint: Path, name: str) -> None:
    result = run_hadolint(hadolint, REPO / IMAGES[name].dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_fails_on_a_warning(hadolint: Path, tmp_path: Path) -> None:
    """The linter really runs and fails at warning level (DL3006: an untagged image)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python\nCMD ["python"]\n')
    result = run_hadolint(hadolint, bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout


@pytest.mark.parametrize("name", IMAGES)
def test_multi_stage_build_from_the_lock(name: str) -> None:
    image = IMAGES[name]
    stages = read_stages(REPO / image.dockerfile)
    build, runtime = builder(stages), stages[-1]
    assert runtime is not build
    syncs = uv_syncs(build)
    assert syncs, "the builder installs with `uv sync`"
    for argv in syncs:
        assert {"--frozen", "--no-dev"} <= set(argv), argv
        assert argv[argv.index("--package") + 1] == image.dist, argv
        assert not {"--all-packages", "--dev", "--all-groups", "--group"} & set(argv), argv
    assert "--no-editable" in syncs[-1], "the venv must not point back into the build context"
    assert build.base == runtime.base, "venv and runtime need the same interpreter"
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", runtime.base), runtime.base
    for stage in stages:
        assert ":" in stage.base.rsplit("/", 1)[-1], f"untagged image {stage.base}"
        assert not stage.base.endswith(":latest"), stage.base
    copies = [i.flags_and_rest() for i in runtime.all("COPY")]
    assert copies == [({"from": "builder"}, "/opt/venv /opt/venv")], copies
    assert not runtime.all("RUN") or all(
        "uv " not in i.args and "pip " not in i.args for i in runtime.all("RUN")
    ), "nothing is installed in the runtime stage"


@pytest.mark.parametrize("name", IMAGES)
def test_runtime_stage(name: str) -> None:
    image = IMAGES[name]
    runtime = read_stages(REPO / image.dockerfile)[-1]
    user = runtime.last("USER").args
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, for runAsNonRoot"
    assert int(user.split(":")[0]) != 0
    assert runtime.last("EXPOSE").args == str(image.port)
    assert runtime.last("STOPSIGNAL").args == "SIGTERM"
    env = env_of(runtime)
    assert env["PATH"].startswith("/opt/venv/bin:")
    if name != "runway-sim":
        assert env["VIDGEN_ENV"] == "production"
        assert env["VIDGEN_HTTP_PORT"] == str(image.port)
        assert env["VIDGEN_HTTP_HOST"] == ALL_INTERFACES, "probes reach the port from outside"

    command = json.loads(runtime.last("CMD").args)
    assert command[:3] == ["python", "-m", image.module], command
    if name == "runway-sim":
        assert command[3:] == ["--host", ALL_INTERFACES, "--port", str(image.port)]

    flags, rest = runtime.last("HEALTHCHECK").flags_and_rest()
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    assert rest.startswith("CMD ["), "exec form: no shell needed"
    probe = json.loads(rest.removeprefix("CMD "))
    assert probe[:2] == ["python", "-c"]
    assert "urllib.request" in probe[2]
    assert image.health_path in probe[2]
    port_expr = (
        f"os.environ.get('VIDGEN_HTTP_PORT', '{image.port}')"
        if name != "runway-sim"
        else f"127.0.0.1:{image.port}"
    )
    assert port_expr in probe[2], "the health check follows the port the process listens on"


@pytest.mark.parametrize("name", IMAGES)
def test_copies_exactly_the_members_the_package_needs(name: str) -> None:
    image = IMAGES[name]
    needed = workspace_closure(image.dist)
    copied = {
        s
        for sources, _ in local_copies(builder(read_stages(REPO / image.dockerfile)))
        for s in sources
    }
    expected = {"pyproject.toml", "uv.lock"}
    for path in needed.values():
        expected |= {f"{path}/pyproject.toml", f"{path}/src"}
    assert copied == expected


@pytest.mark.parametrize("name", IMAGES)
def test_copied_sources_are_in_the_build_context(name: str) -> None:
    rules = dockerignore_rules()
    for sources, _ in local_copies(builder(read_stages(REPO / IMAGES[name].dockerfile))):
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: no such file"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                assert not ignored(relative, rules), f"{relative} is excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    rules = dockerignore_rules()
    for path in (".env", ".git/config", ".venv/bin/python", ".local/infra.env", "tests/x.py"):
        assert ignored(path, rules), path
    for path in ("services/media/src/vidgen_media/__pycache__/x.pyc", "libs/common/tests/t.py"):
        assert ignored(path, rules), path
    assert not ignored(".env.example", rules)
    assert not ignored("libs/common/src/vidgen_common/settings.py", rules)


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_module_exists(name: str) -> None:
    image = IMAGES[name]
    path = workspace_closure(image.dist)[image.dist]
    assert (REPO / path / "src" / image.module / "__main__.py").is_file(), (
        f"`python -m {image.module}` needs {path}/src/{image.module}/__main__.py"
    )


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("uv is not on PATH (make install installs it)")
    return uv


def replay_builder(name: str, workdir: Path) -> str:
    """Replay the builder stage of ``name`` in ``workdir``; an error message, or ""."""
    image = IMAGES[name]
    build = builder(read_stages(REPO / image.dockerfile))
    context = workdir / "src"
    context.mkdir()
    for sources, destination in local_copies(build):
        for source in sources:
            origin = REPO / source
            target = context / destination
            if destination.endswith("/") or len(sources) > 1:
                target = target / origin.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)
    venv = workdir / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env |= {
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_OFFLINE": "1",
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_LINK_MODE": "symlink",
        "UV_NO_PROGRESS": "1",
    }
    for argv in uv_syncs(build):
        result = subprocess.run(
            [_uv(), *argv[1:]],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            return f"{shlex.join(argv)}\n{result.stderr}"
    check = (
        "import importlib.util as u, sys; "
        f"spec = u.find_spec('{image.module}.__main__'); "
        "assert spec and spec.origin.startswith(sys.prefix), spec; "
        "assert u.find_spec('pytest') is None, 'a dev dependency was installed'"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stderr if result.returncode != 0 else ""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every image's builder stage, replayed two at a time (uv builds the workspace wheels)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(replay_builder, name, tmp_path_factory.mktemp(name))
            for name in IMAGES
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", IMAGES)
def test_builder_stage_installs_the_package_alone(replayed: dict[str, str], name: str) -> None:
    """Its COPYs into an empty dir, then its `uv sync`s (offline): the package, nothing else."""
    assert replayed[name] == ""
