"""The state enums (issue 12): each value is the documented JSON/text contract, and a member is its text.

The values are spelled out here on purpose: a member renamed in the code must not change what ``--format
json`` prints, what the history table stores, or what the audit log says.
"""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from poststack.adopt.convert import Numbering
from poststack.adopt.plan import AdoptAction, FileAction
from poststack.catalog.object_evidence import CheckVerdict, EvidenceStatus
from poststack.cli.render import echo_json, escape, jsonable
from poststack.db import history
from poststack.db.history import HistoryRow, HistoryStatus
from poststack.engine.judgement import StateVerdict
from poststack.engine.marking import MarkAction
from poststack.engine.recovery import RecoverAction, RecoverStep, StepOrigin
from poststack.engine.verify import STATUSES, VerifyStatus
from poststack.errors import UsageError
from poststack.integrity.catalog_facts import UnfinishedVerdict
from poststack.integrity.cleaning import CleanKind
from poststack.integrity.repair import FixKind

VALUES = {
    HistoryStatus: ["applied", "running", "failed"],
    EvidenceStatus: ["present", "absent", "partial", "uncheckable"],
    CheckVerdict: ["confirms", "contradicts", "inconclusive"],
    UnfinishedVerdict: ["done", "not_done", "mixed"],
    StateVerdict: ["proven", "undecidable", "pending", "absent", "partial", "mismatch", "unavailable"],
    RecoverAction: ["record", "record_forced", "import", "pending", "refused", "blocked", "already_recorded"],
    StepOrigin: ["file", "legacy"],
    MarkAction: ["mark_applied", "mark_pending", "already"],
    FileAction: ["write", "unchanged"],
    AdoptAction: ["adopt", "refused", "blocked", "dirty", "already_recorded", "pending", "no_file"],
    Numbering: ["kept", "renumbered"],
    CleanKind: ["end_lock_holder", "delete_failed_row", "delete_duplicate_row"],
    FixKind: ["rechecksum", "rerecord_rollback", "restore_file", "mark_applied", "retry", "drop_invalid_index",
              "recover", "end_lock_holder"],
    VerifyStatus: ["passed", "failed", "error", "unverifiable", "skipped"],
}


@pytest.mark.parametrize("enum", list(VALUES), ids=lambda e: e.__name__)
def test_each_member_is_its_documented_text(enum):
    assert [m.value for m in enum] == VALUES[enum]
    for member in enum:
        assert member == member.value and isinstance(member, str)
        percent = "%s" % member  # noqa: UP031 - %-formatting is one of the ways text is built
        assert (str(member), f"{member}", f"{member:>3}", percent) == (
            member.value, member.value, f"{member.value:>3}", member.value)
        assert json.dumps({member: [member]}) == json.dumps({member.value: [member.value]})
        assert escape(member) == member.value


def test_the_old_tuples_keep_their_order():
    assert STATUSES == ("passed", "failed", "error", "unverifiable", "skipped")
    assert history.STATUSES == ("applied", "running", "failed")


def test_the_history_check_constraint_allows_exactly_the_statuses():
    allowed = re.search(r"CHECK \(status IN \(([^)]*)\)\)", history._DDL).group(1)
    assert [v.strip(" '") for v in allowed.split(",")] == [s.value for s in HistoryStatus]


def _row(status: str) -> HistoryRow:
    return HistoryRow(version=1, version_text="001", name="m", description=None, checksum="c",
                      semantic_checksum=None, rollback_checksum=None, sql="", rollback_sql=None,
                      no_transaction=True, status=status, statements_done=0, source="migrate",
                      applied_at=datetime(2024, 1, 1, tzinfo=UTC), applied_by="u", client=None, execution_ms=None,
                      poststack_version=None, error=None)


def test_a_history_row_holds_the_member_for_the_text_it_was_built_from():
    row = _row("running")
    assert row.status is HistoryStatus.RUNNING
    assert json.dumps(row.as_json()["status"]) == '"running"'
    assert replace(row, status="applied").status is HistoryStatus.APPLIED


def test_a_status_outside_the_table_check_is_refused_where_the_row_is_built():
    with pytest.raises(UsageError, match="history row 1 has status 'done', which is not one of applied, "):
        _row("done")


def test_json_output_of_a_step_is_plain_text(capsys):
    step = RecoverStep(1, "001", "m", RecoverAction.RECORD_FORCED, "why", StateVerdict.UNDECIDABLE,
                       origin=StepOrigin.LEGACY)
    assert jsonable(step) == {"version": 1, "version_text": "001", "name": "m", "action": "record_forced",
                              "reason": "why", "status": "undecidable", "evidence": [], "origin": "legacy"}
    echo_json({"steps": [step]})
    printed = capsys.readouterr().out
    assert '"action": "record_forced"' in printed and "RecoverAction" not in printed
