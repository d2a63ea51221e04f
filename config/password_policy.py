"""Strength rules for SIP account passwords (``[sip.accounts]``), checked at configuration load.

Digest authentication lets an attacker who captured one exchange (or who may ask the registrar)
test guesses, so an account password must not be guessable from a small dictionary. The rules
are deliberately simple and explainable to an operator: at least :data:`MIN_LENGTH` characters,
not one of a small built-in list of common passwords (also with digits or punctuation added at
the end), not a single repeated character or a run of consecutive digits/keys, and not the
account's own username (extension) or built from it.
"""
from __future__ import annotations

import re

MIN_LENGTH = 10

# Frequent choices in leaked password lists and in VoIP/PBX defaults (compared case-insensitively,
# also after removing digits and punctuation at the end: "Password2024!" counts as "password").
COMMON_PASSWORDS = frozenset("""
123456 1234567 12345678 123456789 1234567890 0123456789 0987654321 9876543210 1111111111 0000000000
1234512345 1234554321 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y 1qaz2wsx 1qaz2wsx3edc 1qazxsw2 2wsx3edc
password passwd passw0rd p@ssw0rd p@ssword pass pa55word password1 passwordpassword mypassword
qwerty qwertyuiop qwertyui qwerty123 qwer1234 asdf1234 asdfghjkl asdfasdf zxcvbnm zxcvbnm123 qazwsxedc
abc123 abcd1234 abcdefg abcdefgh abcdefghij a123456 a123456789 aa123456 aa12345678 aaaaaaaaaa
admin admin123 admin12345 administrator root toor superuser system manager guest user test tester
letmein welcome welcome1 iloveyou sunshine princess football baseball basketball monkey dragon master
shadow superman batman michael jennifer jordan hunter trustno1 starwars whatever freedom charlie
secret secret123 changeme changeit default defaultpassword temp temppass temporary access
sip sipuser sippassword voip voipuser asterisk freepbx freeswitch kamailio opensips polycom cisco
yealink grandstream snom panasonic phone telephone extension pbx pbxuser
woaini woaini1314 5201314 1314520 520520 caonima zhangwei wangwei woainima nihao nihao123
commandcenter yunfu emergency conference meeting huiyi
""".split())

_TRAILING = re.compile(r"[\d\W_]+$")
_KEY_ROWS = ("1234567890", "0987654321", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` is too weak for SIP account ``username`` (None when acceptable).

    The text names the rule, never the password.
    """
    if len(password) < MIN_LENGTH:
        return f"password too short ({len(password)} characters; at least {MIN_LENGTH})"
    lowered = password.lower()
    user = username.lower()
    if lowered == user or lowered == user[::-1]:
        return "password equals the username (extension)"
    if user and len(lowered.replace(user, "")) < 4:
        return "password is built from the username (extension)"
    stem = _TRAILING.sub("", lowered)
    if lowered in COMMON_PASSWORDS or stem in COMMON_PASSWORDS:
        return "password is a common password (in the built-in list of guessable passwords)"
    if len(set(lowered)) <= 2:
        return "password is (almost) one repeated character"
    for row in _KEY_ROWS:
        doubled = row + row
        if lowered in doubled:
            return "password is a run of consecutive keys or digits"
    return None
