"""The one image: linted by hadolint, non-root, dependencies cached apart from the code.

hadolint comes from ``scripts/hadolint.sh`` (part of ``make setup``); the lint tests skip,
saying why, only where it could not be installed. The rest reads the Dockerfile itself:
rules hadolint has no opinion on (a missing ``USER`` is not a finding for it).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
NOT_IN_THE_IMAGE = ("tests", "bench", "deploy", "docs", ".git", ".venv")


@dataclass(frozen=True)
class Step:
    stage: str
    instruction: str
    args: str


def steps(text: str) -> list[Step]:
    """The Dockerfile's instructions with the stage each belongs to (pure; no parser directives)."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[Step] = []
    stage = ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args.strip()
        out.append(Step(stage, instruction, args.strip()))
    return out


def stage_steps(all_steps: list[Step], stage: str) -> list[Step]:
    return [s for s in all_steps if s.stage == stage]


def final_user(text: str) -> str | None:
    """The user the image's last stage runs as (None: no USER, so root)."""
    all_steps = steps(text)
    users = [s.args for s in stage_steps(all_steps, all_steps[-1].stage) if s.instruction == "USER"]
    return users[-1] if users else None


def runs_as_root(user: str | None) -> bool:
    return user is None or user.split(":")[0] in ("root", "0")


def copied_from_context(text: str) -> set[str]:
    """The sources of every COPY from the build context (not ``--from`` another stage)."""
    sources: set[str] = set()
    for s in steps(text):
        if s.instruction == "COPY" and "--from=" not in s.args:
            words = [w for w in s.args.split() if not w.startswith("--")]
            sources.update(w.rstrip("/").removeprefix("./") for w in words[:-1])
    return sources


def test_the_image_runs_as_a_numeric_non_root_user_in_every_final_stage() -> None:
    text = DOCKERFILE.read_text()
    assert not runs_as_root(final_user(text))
    for stage in ("runtime", "demo"):
        users = [s.args for s in stage_steps(steps(text), stage) if s.instruction == "USER"]
        assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), stage


def test_the_root_check_catches_an_image_without_user_or_with_user_root() -> None:
    assert runs_as_root(final_user('FROM python:3.11-slim\nENTRYPOINT ["sluice"]\n'))
    assert runs_as_root(final_user("FROM a AS b\nUSER 10001\nFROM c AS d\nUSER root\n"))
    assert not runs_as_root(final_user("FROM a AS b\nUSER root\nFROM c AS d\nUSER 10001\n"))


def test_dependencies_are_a_layer_of_their_own_before_the_code() -> None:
    build = stage_steps(steps(DOCKERFILE.read_text()), "build")
    copies = [s.args for s in build if s.instruction == "COPY"]
    assert copies[0] == "pyproject.toml ./", "only the dependency list before the dependencies"
    install = next(
        i for i, s in enumerate(build) if s.instruction == "RUN" and "--requirement" in s.args
    )
    first_code = next(
        i for i, s in enumerate(build) if s.instruction == "COPY" and "shared" in s.args
    )
    assert install < first_code


def test_the_runtime_image_holds_no_dev_bench_or_test_code() -> None:
    text = DOCKERFILE.read_text()
    all_steps = steps(text)
    assert all_steps[-1].stage == "runtime", "a plain `docker build .` makes the runtime image"
    build = {s.args for s in stage_steps(all_steps, "build") if s.instruction == "COPY"}
    assert not [a for a in build if re.search(r"\b(devtools|bench|tests)\b", a)]
    runtime = [s.args for s in stage_steps(all_steps, "runtime") if s.instruction == "COPY"]
    assert runtime == ["--from=build /opt/sluice /opt/sluice"]
    for stage in ("runtime", "demo"):
        [entry] = [s.args for s in stage_steps(all_steps, stage) if s.instruction == "ENTRYPOINT"]
        assert entry == '["sluice"]', stage


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"]
    assert lines[0] == "*", "an allowlist: everything else stays out of the build context"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == copied_from_context(DOCKERFILE.read_text())
    assert not allowed & set(NOT_IN_THE_IMAGE)


def test_the_demo_stage_serves_the_producer_command() -> None:
    assert "tickets" in COMMANDS
    demo = stage_steps(steps(DOCKERFILE.read_text()), "build-demo")
    assert [s.args for s in demo if s.instruction == "COPY"] == ["devtools ./devtools"]


def hadolint_path() -> str:
    """The hadolint ``scripts/hadolint.sh`` installed; skips saying why when there is none."""
    found = subprocess.run(["bash", str(ROOT / "scripts" / "hadolint.sh"), "--path"],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if found.returncode != 0:
        pytest.skip(found.stderr.strip() or "hadolint is not installed")
    return found.stdout.strip()


@pytest.fixture(scope="module")
def hadolint() -> str:
    return hadolint_path()


def lint(hadolint: str, text: str) -> subprocess.CompletedProcess[str]:
    """hadolint on ``text`` as a Dockerfile, failing on any finding (info and up)."""
    return subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", "-"],
                          input=text, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_hadolint_passes_the_dockerfile(hadolint: str) -> None:
    done = lint(hadolint, DOCKERFILE.read_text())
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_latest_tag_and_a_root_user(hadolint: str) -> None:
    bad = 'FROM python:latest\nRUN pip install sluice\nUSER root\nENTRYPOINT ["sluice"]\n'
    done = lint(hadolint, bad)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in done.stdout, (rule, done.stdout)
