"""``db lint`` reports for CI tools: SARIF 2.1.0 (GitHub code scanning), GitHub workflow annotations, and
Markdown for a pull-request comment. Rendering only: the findings come from ``poststack.lint``.

File locations are made relative to the working directory when they lie under it (what code scanning
and annotations resolve against the repository root), with forward slashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poststack import __version__
from poststack.lint import RULES, Finding, LintReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/poststack/poststack/blob/main/docs/lint.md"
_SARIF_LEVELS = {"error": "error", "warning": "warning", "note": "note"}
_GITHUB_LEVELS = {"error": "error", "warning": "warning", "note": "notice"}


def relative_uri(path: str, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: cwd) when it lies under it, else as given; always with /."""
    base = (base or Path.cwd()).resolve()
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return Path(path).as_posix()


def sarif(report: LintReport, base: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: every rule in ``tool.driver.rules``, one result per finding."""
    ids = list(RULES)
    rules = [{
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.rationale or rule.title},
        "help": {"text": f"Safer: {rule.alternative}", "markdown": f"**Safer:** {rule.alternative}"},
        "helpUri": f"{INFORMATION_URI}#{rule.id}",
        "defaultConfiguration": {"level": _SARIF_LEVELS[rule.severity], "enabled": rule.default},
        "properties": {"category": rule.category, "tags": ["postgresql", "migration", rule.category]},
    } for rule in RULES.values()]
    results = [_result(finding, ids.index(finding.rule), base) for finding in report.findings]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": "poststack", "version": __version__, "semanticVersion": __version__,
                                "informationUri": INFORMATION_URI, "rules": rules}},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }


def _result(finding: Finding, index: int, base: Path | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"alternative": finding.alternative, "rollback": finding.rollback}
    if finding.version is not None:
        properties["version"] = finding.version
    if finding.table:
        properties["table"] = finding.table
    if finding.size is not None:
        properties.update(table_rows=finding.size.rows, table_bytes=finding.size.bytes)
    return {
        "ruleId": finding.rule,
        "ruleIndex": index,
        "level": _SARIF_LEVELS[finding.severity],
        "message": {"text": f"{finding.message} (safer: {finding.alternative})"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": relative_uri(finding.file, base)},
            "region": {"startLine": finding.line},
        }}],
        "properties": properties,
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github(report: LintReport, base: Path | None = None) -> list[str]:
    """One workflow command per finding: ``::warning file=…,line=…,title=…::message``."""
    lines = []
    for f in report.findings:
        size = f" [{f.size.describe()}]" if f.size else ""
        message = f"{f.message}{size} (safer: {f.alternative})"
        lines.append(f"::{_GITHUB_LEVELS[f.severity]} file={_escape_property(relative_uri(f.file, base))},"
                     f"line={f.line},title={_escape_property('poststack ' + f.rule)}::{_escape_data(message)}")
    return lines


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def markdown(report: LintReport, base: Path | None = None) -> str:
    """A pull-request comment: the summary, then one table row per finding (biggest table first)."""
    count = len(report.findings)
    head = "### poststack lint: " + ("no findings" if not count else f"{count} finding(s)")
    lines = [head, "", f"{report.files} migration(s) and {report.rollbacks} rollback(s) linted"
             + (f", {report.ignored} finding(s) silenced by lint-ignore" if report.ignored else "")
             + (f"; table sizes from {report.database}" if report.database else "") + "."]
    if not count:
        return "\n".join(lines) + "\n"
    sized = report.database is not None
    lines += ["", "| | where | rule | " + ("table size | " if sized else "") + "what happens | safer |",
              "|---|---|---|" + ("---|" if sized else "") + "---|---|"]
    icons = {"error": ":x:", "warning": ":warning:", "note": ":information_source:"}
    for f in report.findings:
        where = f"`{relative_uri(f.file, base)}:{f.line}`"
        size = ([_cell(f.size.describe()) if f.size else "new or unknown"] if sized else [])
        row = [icons[f.severity], where, f"`{f.rule}`", *size, _cell(f.message), _cell(f.alternative)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
