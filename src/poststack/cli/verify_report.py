"""``db verify`` reports for CI tools: JUnit XML (one test case per migration) and Markdown for a
pull-request comment (verdicts, locks, rewrites, failed round trips). Rendering only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from poststack.cli.lint_report import relative_uri
from poststack.engine.verify import STATUSES, MigrationVerification, VerifyReport, VerifyStatus


def _details(m: MigrationVerification) -> str:
    lines = list(m.differences)
    lines += [text for text in (m.error, m.reason) if text]
    return "\n".join(lines)


def _locks_text(m: MigrationVerification) -> list[str]:
    if not m.locks_observed:
        return ["locks not observable: the migration runs outside a transaction"]
    lines = [lock.describe() for lock in m.locks if not lock.new_relation]
    lines += [rewrite.describe() for rewrite in m.rewrites]
    return lines


def junit(report: VerifyReport) -> str:
    """JUnit XML: a <testsuite> with one <testcase> per migration; failed/error/skipped as JUnit has them.

    An unverifiable migration (no rollback) is a failure unless ``--allow-unverifiable``, when it is
    skipped: the test case mirrors what the exit code says.
    """
    failures = sum(1 for m in report.migrations if m.status == VerifyStatus.FAILED
                   or (m.status == VerifyStatus.UNVERIFIABLE and not report.allow_unverifiable))
    errors = report.count(VerifyStatus.ERROR)
    skipped = report.count(VerifyStatus.SKIPPED) + (
        report.count(VerifyStatus.UNVERIFIABLE) if report.allow_unverifiable else 0)
    seconds = sum(m.elapsed_ms for m in report.migrations) / 1000
    root = ET.Element("testsuites", name="poststack verify", tests=str(len(report.migrations)),
                      failures=str(failures), errors=str(errors), skipped=str(skipped), time=f"{seconds:.3f}")
    suite = ET.SubElement(root, "testsuite", name="poststack verify", tests=str(len(report.migrations)),
                          failures=str(failures), errors=str(errors), skipped=str(skipped), time=f"{seconds:.3f}")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="server", value=report.server)
    for m in report.migrations:
        case = ET.SubElement(suite, "testcase", classname="poststack.engine.verify", name=f"{m.version_text}_{m.name}",
                             file=relative_uri(m.file), time=f"{m.elapsed_ms / 1000:.3f}")
        detail = _details(m)
        if m.status == VerifyStatus.FAILED:
            first = m.differences[0] if m.differences else (m.error or "rollback did not restore the schema")
            ET.SubElement(case, "failure", message=first, type="rollback_mismatch").text = detail
        elif m.status == VerifyStatus.ERROR:
            ET.SubElement(case, "error", message=(m.error or "").splitlines()[0] if m.error else m.status,
                          type=m.phase or "apply").text = detail
        elif m.status == VerifyStatus.UNVERIFIABLE and not report.allow_unverifiable:
            ET.SubElement(case, "failure", message=m.reason or "no rollback file", type="unverifiable")
        elif m.status in (VerifyStatus.SKIPPED, VerifyStatus.UNVERIFIABLE):
            ET.SubElement(case, "skipped", message=m.reason or m.status)
        observed = _locks_text(m)
        if observed:
            ET.SubElement(case, "system-out").text = "\n".join(observed)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


_ICONS = {VerifyStatus.PASSED: ":white_check_mark:", VerifyStatus.FAILED: ":x:", VerifyStatus.ERROR: ":x:",
          VerifyStatus.UNVERIFIABLE: ":warning:", VerifyStatus.SKIPPED: ":fast_forward:"}


def markdown(report: VerifyReport) -> str:
    """A pull-request comment: one row per migration, then the failed round trips in full."""
    summary = ", ".join(f"{report.count(s)} {s}" for s in STATUSES if report.count(s)) or "nothing to verify"
    lines = [f"### poststack verify: {'passed' if report.ok else 'failed'}", "",
             f"{len(report.migrations)} migration(s): {summary}.", ""]
    if not report.migrations:
        return "\n".join(lines)
    timed = any(m.statements for m in report.migrations)
    lines += ["| | migration | status | locks on existing relations | rewrites |"
              + (" slowest statement |" if timed else ""),
              "|---|---|---|---|---|" + ("---|" if timed else "")]
    for m in report.migrations:
        locks = ("not observable (no transaction)" if not m.locks_observed else
                 "<br>".join(f"{lock.mode} on {lock.relation} (line {lock.line})"
                             for lock in m.locks if not lock.new_relation) or "none")
        rewrites = "<br>".join(r.describe() for r in m.rewrites) or "none"
        row = [_ICONS.get(m.status, ""), f"`{m.version_text}_{m.name}`", m.status, _cell(locks), _cell(rewrites)]
        if timed:
            slowest = max(m.statements, key=lambda s: s.duration_ms, default=None)
            row.append(f"line {slowest.line}: {slowest.duration_ms:,.1f} ms" if slowest else "")
        lines.append("| " + " | ".join(row) + " |")
    broken = [m for m in report.migrations if m.status in (VerifyStatus.FAILED, VerifyStatus.ERROR)]
    if broken:
        lines += ["", "#### Failed round trips", ""]
        for m in broken:
            lines += [f"**{m.version_text}_{m.name}** ({m.status}{', ' + m.phase if m.phase else ''})", "", "```",
                      _details(m), "```", ""]
    return "\n".join(lines).rstrip() + "\n"
