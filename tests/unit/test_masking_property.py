"""Passwords of any shape are masked by mask_url and scrubbed from libpq's own messages (issue 11 item 2).

No server needed, but libpq is the real one: it parses (and refuses) the strings and connects to a closed
port, raising the messages users would see. The
password alphabet mixes every delimiter libpq and URLs know with letters that appear in none of libpq's
messages, so any piece of the password that reaches the text can be found.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from poststack.db.connection import connect, mask_url
from poststack.errors import ConnectError

LETTERS = "QXZJKW"
PASSWORDS = st.text(alphabet=LETTERS + "@:/?#%[] &='\"\\", min_size=1, max_size=16).map(lambda s: "Q" + s + "Z")


def leaked(password: str, text: str) -> list[str]:
    """Pieces (3+ characters, at least one letter) of the password found in the text."""
    return [password[i:i + 3] for i in range(len(password) - 2)
            if any(c in LETTERS for c in password[i:i + 3]) and password[i:i + 3] in text]


@settings(max_examples=300, deadline=None)
@given(PASSWORDS, st.sampled_from(["postgresql://app:{}@127.0.0.1:1/app", "mysql://app:{}@127.0.0.1/db",
                                   "postgresql://app:{}@[::1/app", "postgres://app:{}@127.0.0.1:1"]))
def test_any_password_in_a_url_is_masked_and_scrubbed(password, shape) -> None:
    url = shape.format(password)
    masked = mask_url(url)
    assert not any(c in masked for c in LETTERS), masked
    assert leaked(password, connect_error(url)) == []


def connect_error(url: str) -> str:
    """The message poststack shows for this URL (nothing listens on port 1: refused at once)."""
    try:
        connect(url).close()
    except ConnectError as exc:
        return str(exc)
    raise AssertionError(f"connected to {mask_url(url)}")


@settings(max_examples=200, deadline=None)
@given(PASSWORDS.filter(lambda p: "'" not in p and "\\" not in p))
def test_any_password_in_key_value_form_is_masked_and_scrubbed(password) -> None:
    text = f"host=127.0.0.1 port=1 password={password}"
    assert not any(c in mask_url(text) for c in LETTERS), mask_url(text)
    assert leaked(password, connect_error(text)) == []
