"""Reading what the person wrote, wherever they wrote it: top, bottom or between quotes, in
every client style and language the reader knows (en, de, fr, es)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail.replies import Reading, parse, reading_of
from bot.mail.reply_text import own_blocks

QUOTE = "> Approval needed: Refund $4,000\n> Reply approve or deny.\n> Approve | Deny\n"


def _plain(text: str) -> Reading:
    raw = f"From: d@acme.test\nContent-Type: text/plain; charset=utf-8\n\n{text}"
    return reading_of(parse(raw.replace("\n", "\r\n").encode()))


def _html(html: str) -> Reading:
    raw = f"From: d@acme.test\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}"
    return reading_of(parse(raw.encode()))


BOTTOM_POSTED = {
    "gmail": f"On Tue, Nov 24, 2026 at 10:02 AM Dana <dana@acme.test> wrote:\n{QUOTE}\nApproved",
    "gmail_wrapped": "On Tue, Nov 24, 2026 at 10:02 AM TaskJuice <\napprovals@acme.test> wrote:\n"
    f"{QUOTE}\nApproved, thanks\n\nDana",
    "thunderbird": f"On 24/11/2026 10:02, TaskJuice wrote:\n{QUOTE}\nApprove\n\n-- \nDana\nNo.1",
    "apple": f"On 24 Nov 2026, at 10:02, TaskJuice <approvals@acme.test> wrote:\n\n{QUOTE}\nyes",
    "german": f"Am 24.11.2026 um 10:02 schrieb TaskJuice <approvals@acme.test>:\n{QUOTE}\n"
    "Genehmigt\n\nViele Grüße",
    "french": f"Le mar. 24 nov. 2026 à 10:02, TaskJuice <approvals@acme.test> a écrit :\n{QUOTE}"
    "\nApprouvé",
    "spanish": f"El mar, 24 nov 2026 a las 10:02, TaskJuice (<approvals@acme.test>) escribió:\n"
    f"{QUOTE}\nAprobado",
    "angle_only": f"{QUOTE}\nLGTM",
    "interleaved": "> Refund $4,000?\nApproved.\n> Anything else?\nNothing else, thanks.",
    "sent_from_phone": f"{QUOTE}\nApprove\n\nSent from my iPhone",
}


@pytest.mark.parametrize("style", sorted(BOTTOM_POSTED))
def test_own_text_below_the_quote_is_read(style: str) -> None:
    assert _plain(BOTTOM_POSTED[style]) is Reading.APPROVE
    denied = BOTTOM_POSTED[style]
    for word in ("Approved", "Approve", "Genehmigt", "Approuvé", "Aprobado", "LGTM", "yes"):
        denied = denied.replace(f"\n{word}", "\nDeny")
    assert _plain(denied) is Reading.DENY


def test_html_bottom_posting_reads_below_the_blockquote() -> None:
    html = (
        '<div class="moz-cite-prefix">On 24/11/2026 10:02, TaskJuice wrote:<br></div>'
        "<blockquote>Approval needed. <b>Approve</b> or <b>Deny</b></blockquote>"
        "<p>Denied, too expensive.</p>"
    )
    assert _html(html) is Reading.DENY
    top = (
        '<div dir="ltr">Approve<br></div><div class="gmail_quote">'
        '<div class="gmail_attr">On Mon, Nov 24, 2026 at 10:00 AM TaskJuice wrote:<br></div>'
        "<blockquote>deny it? deny</blockquote></div>"
    )
    assert _html(top) is Reading.APPROVE


@pytest.mark.parametrize(
    "text",
    [
        f"Approve\n\nOn Tue, Nov 24, 2026 at 10:02 AM TaskJuice wrote:\n{QUOTE}\nDeny",
        "> question\nyes\n> other\nno",
        f"On Tue, Nov 24, 2026 at 10:02 AM TaskJuice wrote:\n{QUOTE}\nNot approved",
        f"On Tue, Nov 24, 2026 at 10:02 AM TaskJuice wrote:\n{QUOTE}\nLet me think",
        f"{QUOTE}",
        "Thanks\n\nFrom: TaskJuice <approvals@acme.test>\nSent: Monday\nTo: Dana\n\nApprove",
        "Hmm\n\n-----Original Message-----\nApprove",
        "Von: TaskJuice\nGesendet: Montag\nAn: Dana\nBetreff: x\n\nGenehmigt",
    ],
)
def test_both_neither_or_only_the_original_is_ambiguous(text: str) -> None:
    assert _plain(text) is Reading.AMBIGUOUS


_PIECES = st.sampled_from(
    [
        "\n",
        "\n\n\n",
        " ",
        "\t",
        ">",
        "> ",
        "-- ",
        "--",
        "On ",
        "Am ",
        "Le ",
        "El ",
        " wrote:",
        " schrieb ",
        " a écrit :",
        " escribió:",
        "From: x",
        "Sent: y",
        "-----Original Message-----",
        "_" * 30,
        "approve",
        "deny",
        "not",
        "<",
        "@",
        "Sent from my",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(_PIECES | st.text(max_size=30), max_size=400),
    repeat=st.integers(min_value=1, max_value=60),
)
def test_the_reader_never_raises_and_never_takes_long(pieces: list[str], repeat: int) -> None:
    text = "".join(pieces) * repeat  # up to ~700 KB, beyond the reader's own bound
    started = time.monotonic()
    blocks = own_blocks(text)
    _plain(text[:50_000])
    assert time.monotonic() - started < 2.0
    assert all(line and not line.startswith(">") for block in blocks for line in block)
