"""The container image: what can be proven without a Docker engine.

The Dockerfile is parsed (stages, user, entrypoint, install steps, no build tools in the
final stage), and the build context it sends is reproduced file by file (its COPY lines
filtered by .dockerignore): the wheel built from exactly those files is installed into a
fresh virtualenv outside the repository, where ``repsys`` must start, load a config and
migrate a database. A package file missing from the image fails here, not in a plant.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Packages that compile or carry headers: none may be installed in the final stage.
BUILD_TOOLS = re.compile(r"^(build-essential|gcc.*|g\+\+.*|clang.*|make|cmake|.*-dev)$")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each a list of (INSTRUCTION, arguments)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        rest = rest.strip()
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((REPO / "Dockerfile").read_text(encoding="utf-8"))


def apt_packages(stage: Stage) -> set[str]:
    pkgs: set[str] = set()
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                pkgs |= {w for w in words[2:] if not w.startswith("-")}
    return pkgs


def pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``text`` (shell words after ``install``)."""
    out = []
    for command in re.split(r"&&|;|\n", text):
        words = shlex.split(command)
        for i, word in enumerate(words[:-1]):
            if word.endswith("pip") and words[i + 1] == "install":
                out.append(words[i + 2 :])
    return out


# --- the Dockerfile -------------------------------------------------------------------------


def test_two_stages_on_a_slim_python_311() -> None:
    args, stages = dockerfile()
    assert [s.name for s in stages] == ["build", "runtime"]
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert all(s.base == args["PYTHON_IMAGE"] for s in stages)


def test_final_stage_runs_repsys_as_a_non_root_user() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets runAsNonRoot verify it"
    assert uid == "10001"  # the chart's podSecurityContext.runAsUser
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["repsys"]
    env = " ".join(final.all("ENV"))
    assert "REPSYS_CONFIG=/etc/repsys/repsys.yaml" in env  # where the chart mounts it
    assert final.all("WORKDIR") == ["/app"]
    assert "EXPOSE 9100 8080" in f"EXPOSE {final.all('EXPOSE')[0]}"


def test_final_stage_has_no_build_tools_and_no_sources() -> None:
    _, stages = dockerfile()
    build, final = stages
    assert any(BUILD_TOOLS.match(p) for p in apt_packages(build)), "the build stage compiles"
    assert [p for p in apt_packages(final) if BUILD_TOOLS.match(p)] == []
    # The final stage only takes the built virtualenv from the build stage.
    copies = final.all("COPY")
    assert copies == ["--from=build /opt/repsys /opt/repsys"]
    assert pip_installs("\n".join(final.all("RUN"))) == []


def test_install_is_the_makefiles_without_editable_and_dev() -> None:
    _, stages = dockerfile()
    image = pip_installs("\n".join(stages[0].all("RUN")))
    make = pip_installs((REPO / "Makefile").read_text(encoding="utf-8"))
    assert ["-q", "--upgrade", "pip", "setuptools", "wheel"] in make
    assert ["-q", "--upgrade", "pip", "setuptools", "wheel"] in image
    assert ["-q", "-c", "constraints.txt", "-e", ".[dev]"] in make
    assert ["-q", "-c", "constraints.txt", "."] in image


def test_every_package_is_copied_into_the_build() -> None:
    _, stages = dockerfile()
    copied = {src.rstrip("/") for c in stages[0].all("COPY") for src in c.split()[:-1]}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    assert packages <= copied
    # What pip install . needs besides the packages: the metadata and the pins.
    assert {"pyproject.toml", "constraints.txt", "README.md"} <= copied


# --- the build context, built and run ------------------------------------------------------


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified to what .dockerignore uses: a match on the path or a parent.

    The last matching pattern wins; ``!`` re-includes; ``**/`` matches at any depth.
    """
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        pat = pattern.removeprefix("!")
        variants = [pat, pat.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(pre, v) for pre in prefixes for v in variants):
            result = not pattern.startswith("!")
    return result


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = dockerignore()
    for path in (
        ".venv/bin/python",
        ".git/config",
        "var/demo/repsys.yaml",
        "core/__pycache__/x.pyc",
    ):
        assert ignored(path, patterns), path
    for path in ("core/keys.py", "pyproject.toml", "constraints.txt", "web/templates/base.html"):
        assert not ignored(path, patterns), path


def build_context(dest: Path) -> None:
    """Copy what the build stage's COPY lines send, minus .dockerignore, into ``dest``."""
    _, stages = dockerfile()
    patterns = dockerignore()
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for copy in stages[0].all("COPY"):
        *sources, _target = copy.split()
        for source in (s.rstrip("/") for s in sources):
            for rel in tracked:
                if (rel == source or rel.startswith(source + "/")) and not ignored(rel, patterns):
                    if not (REPO / rel).is_file():
                        continue  # deleted in the work tree
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / rel, dest / rel)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with RepSys installed from the image's build context (not editable).

    Its dependencies come from the test environment's site-packages through a path file,
    the network is not needed; RepSys itself only from the wheel.
    """
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    build_context(context)
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    platlib = Path(sysconfig.get_paths()["platlib"])
    site = next((venv / "lib").glob("python3*/site-packages"))
    # A plain path entry: .pth files inside these folders (the editable install of the
    # work tree) are not processed, so `repsys` can only come from the wheel.
    (site / "deps.pth").write_text(f"{purelib}\n{platlib}\n", encoding="utf-8")
    (wheel,) = wheels.glob("repsys-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def run_image(
    venv: Path, *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "repsys"), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", **(env or {})},
        timeout=120,
    )


def test_the_wheel_holds_every_package_file(image_venv: Path) -> None:
    """Every file of the packages in git is installed: templates, WSDL, migrations, ..."""
    site = next((image_venv / "lib").glob("python3*/site-packages"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    tracked = subprocess.run(
        ["git", "ls-files", *packages], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tracked) > 50
    missing = [
        rel
        for rel in tracked
        if (REPO / rel).is_file() and "__pycache__" not in rel and not (site / rel).is_file()
    ]
    assert missing == [], "add their patterns to [tool.setuptools.package-data]"


def test_the_installed_image_starts_loads_config_and_migrates(
    image_venv: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "app"
    workdir.mkdir()
    version = run_image(image_venv, "--version", cwd=workdir)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "repsys 0.1.0"
    # The installed command is the wheel's, not the work tree's.
    origin = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c", "import repsys; print(repsys.__file__)"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(image_venv) in origin
    config = workdir / "repsys.yaml"
    config.write_text(
        "database:\n  url: sqlite:///var/repsys.db\nredis:\n  url: redis://127.0.0.1:1/0\n",
        encoding="utf-8",
    )
    (workdir / "var").mkdir()
    checked = run_image(image_venv, "check-config", str(config), cwd=workdir)
    assert checked.returncode == 0, checked.stderr
    migrated = run_image(image_venv, "--config", str(config), "db", "upgrade", cwd=workdir)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("database at revision ")
    assert (workdir / "var" / "repsys.db").is_file()
    # Bad config from the chart's ConfigMap exits 2 with the key path, as the docs say.
    config.write_text("database:\n  urll: x\n", encoding="utf-8")
    bad = run_image(image_venv, "check-config", str(config), cwd=workdir)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"repsys: {config}: database.urll: unknown key"
