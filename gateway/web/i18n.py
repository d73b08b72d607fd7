"""The cabinet's languages: Babel message catalogues (`locale/<lang>/LC_MESSAGES/messages.po`, extracted
from the templates and gateway/web with `pybabel extract -F babel.cfg`) compiled in memory when the process
starts, so a fresh `pip install -e .` or a wheel needs no build step and no committed .mo file.

English is the source language (no catalogue); Russian is the default (`web.default_locale`). A customer's
choice lives in a cookie and, once logged in, with the account, so it follows them to another browser."""

from __future__ import annotations

import gettext as _gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from gateway.web.format import LOCALES

HERE = Path(__file__).resolve().parent / "locale"
LANG_COOKIE = "bt_lang"
NAMES = {"ru": "Русский", "en": "English"}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalogue of `locale` (English, or an unknown locale: the messages as written)."""
    po = HERE / locale / "LC_MESSAGES" / "messages.po"
    if locale not in LOCALES or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def pick(choice: str | None, default: str) -> str:
    """The customer's choice when it is a known locale, else the configured default."""
    return choice if choice in LOCALES else (default if default in LOCALES else LOCALES[0])


# messages made outside gateway/web that the cabinet shows (a refused request's reason in History, the
# ledger's kinds): listed here so that extraction finds them
ELSEWHERE = (
    N_("invalid token"), N_("token revoked"), N_("account is blocked"), N_("model is not allowed for this key"),
    N_("rate limit exceeded: too many requests per minute for this key"),
    N_("rate limit exceeded: too many tokens per minute for this key"),
    N_("insufficient balance: top up your account"), N_("monthly limit exceeded for this key"),
    N_("Method Not Allowed"),
)
