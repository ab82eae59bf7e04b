"""lint's CI reports: SARIF 2.1.0 (the fields the schema requires), GitHub workflow annotations, Markdown."""

import json
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from poststack.cli.context import CliContext
from poststack.cli.verify_commands import lint
from poststack.config import Settings
from poststack.lint import RULES

LOCK = "SET lock_timeout = '5s';\n"


def run_lint(directory, *args):
    return CliRunner().invoke(lint, list(args), obj=CliContext(Settings(migrations_path=Path(directory))))


def test_sarif_has_the_fields_the_2_1_0_schema_requires(tmp_path):
    (tmp_path / "001_a.sql").write_text(LOCK + "\nCREATE INDEX users_email_idx ON users (email);")
    log = json.loads(run_lint(tmp_path, "--format", "sarif").output)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "poststack"
    assert {r["id"] for r in driver["rules"]} == set(RULES)
    assert all(r["shortDescription"]["text"] and r["defaultConfiguration"]["level"] in ("error", "warning", "note")
               for r in driver["rules"])
    (result,) = run["results"]
    assert result["ruleId"] == "index-not-concurrent" and result["level"] == "warning"
    assert driver["rules"][result["ruleIndex"]]["id"] == "index-not-concurrent"
    assert "users_email_idx" in result["message"]["text"]
    (location,) = result["locations"]
    assert location["physicalLocation"]["artifactLocation"]["uri"].endswith("001_a.sql")
    assert location["physicalLocation"]["region"]["startLine"] == 3


def test_sarif_uris_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "001_a.sql").write_text("DROP TABLE users;")
    monkeypatch.chdir(tmp_path)
    log = json.loads(run_lint(Path("db"), "--format", "sarif").output)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert uris == {"db/001_a.sql"}


def test_github_annotations_escape_and_name_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "001_a.sql").write_text("SELECT 1;\nCREATE INDEX CONCURRENTLY i ON users (email);")
    monkeypatch.chdir(tmp_path)
    result = run_lint(Path("."), "--format", "github")
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("::error file=001_a.sql,line=2,title=poststack concurrently-in-transaction::")
    assert "\n" not in line.split("::", 2)[2]


def test_markdown_lists_every_finding_for_a_pull_request_comment(tmp_path):
    (tmp_path / "001_a.sql").write_text("ALTER TABLE users DROP COLUMN legacy;")
    output = run_lint(tmp_path, "--format", "markdown").output
    assert output.startswith("### poststack lint: 2 finding(s)")
    assert "`drop-column`" in output and "`missing-lock-timeout`" in output and "| :warning: |" in output
    (tmp_path / "001_a.sql").write_text(LOCK + "SELECT 1;")
    assert run_lint(tmp_path, "--format", "markdown").output.startswith("### poststack lint: no findings")


def test_docs_lint_md_lists_every_rule_with_rationale_and_safer_alternative():
    text = (Path(__file__).parents[2] / "docs" / "lint.md").read_text()
    sections = text.split("\n### `")[1:]
    documented = {section.split("`", 1)[0]: section for section in sections}
    assert set(documented) == set(RULES)
    for rule_id, section in documented.items():
        assert "Why: " in section and "Safer: " in section and RULES[rule_id].severity in section


@given(st.text(min_size=1, max_size=40))
def test_a_github_annotation_stays_one_line_whatever_the_message(text):
    from poststack.cli.lint_report import _escape_data, _escape_property

    assert "\n" not in _escape_data(text) and "\r" not in _escape_data(text)
    escaped = _escape_property(text)
    assert "," not in escaped and ":" not in escaped and "\n" not in escaped
