"""Users, passwords (argon2), login lockout, browser sessions and API tokens.

Passwords are stored only as argon2id hashes; session cookies and API tokens only as SHA-256
digests, so a database dump does not hand out logins.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.db import Database
from core.roles import Role, parse_role

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")


class IdentityError(ValueError):
    """A request about users that cannot be honoured (duplicate, unknown, weak password...)."""


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 10
    require_letter: bool = True
    require_digit: bool = True

    def __post_init__(self) -> None:
        if not 8 <= self.min_length <= 128:
            raise IdentityError("password policy: min_length must be between 8 and 128")

    def check(self, password: str, username: str = "") -> None:
        """Raise IdentityError (in Chinese and English) when `password` breaks the policy."""
        problems: list[str] = []
        if len(password) < self.min_length:
            problems.append(f"at least {self.min_length} characters")
        if self.require_letter and not any(c.isalpha() for c in password):
            problems.append("a letter")
        if self.require_digit and not any(c.isdigit() for c in password):
            problems.append("a digit")
        if username and username.lower() in password.lower():
            problems.append("not containing the username")
        if problems:
            raise IdentityError("password must have " + ", ".join(problems))


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    disabled: bool
    locked_until: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        return cls(row["id"], row["username"], row["display_name"], Role(row["role"]),
                   row["disabled"], row["locked_until"])


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    reason: str = ""  # "bad_credentials" | "locked" | "disabled" when user is None

    @property
    def ok(self) -> bool:
        return self.user is not None


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lock_seconds: int = 900


def generate_password(length: int = 16) -> str:
    """A random password that satisfies the default policy."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_USER_COLUMNS = "id, username, display_name, role, disabled, locked_until"


class Identity:
    """User store and authentication on top of the `users`, `sessions` and `api_tokens` tables."""

    def __init__(self, db: Database, policy: PasswordPolicy | None = None,
                 lockout: LockoutPolicy | None = None) -> None:
        self.db = db
        self.policy = policy or PasswordPolicy()
        self.lockout = lockout or LockoutPolicy()

    # -- users ---------------------------------------------------------------------------
    async def create_user(self, username: str, password: str, role: str, display_name: str = "") -> User:
        """Create a user; IdentityError on a duplicate name, unknown role or weak password."""
        try:
            parsed_role = parse_role(role)
        except ValueError as exc:
            raise IdentityError(str(exc)) from None
        self.policy.check(password, username)
        try:
            row = await self.db.fetchrow(
                f"INSERT INTO users (username, display_name, role, password_hash) VALUES ($1, $2, $3, $4) "
                f"RETURNING {_USER_COLUMNS}",
                username, display_name, parsed_role.value, _hasher.hash(password),
            )
        except asyncpg.UniqueViolationError:
            raise IdentityError(f"user {username!r} already exists") from None
        except asyncpg.CheckViolationError:
            raise IdentityError(
                f"invalid username {username!r}: use 2-64 of a-z, 0-9, '_', '.', '-'") from None
        assert row is not None
        return User.from_row(row)

    async def get_user(self, username: str) -> User | None:
        row = await self.db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
        return User.from_row(row) if row else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        row = await self.db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
        return User.from_row(row) if row else None

    async def list_users(self) -> list[User]:
        rows = await self.db.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
        return [User.from_row(r) for r in rows]

    async def count_users(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM users"))

    async def set_password(self, username: str, password: str) -> None:
        """Change a password (clears lockout, ends the user's sessions)."""
        self.policy.check(password, username)
        async with self.db.transaction() as conn:
            user_id = await conn.fetchval(
                "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL, "
                "password_changed_at = now() WHERE username = $1 RETURNING id",
                username, _hasher.hash(password),
            )
            if user_id is None:
                raise IdentityError(f"no such user {username!r}")
            await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)

    async def set_role(self, username: str, role: str) -> None:
        try:
            parsed = parse_role(role)
        except ValueError as exc:
            raise IdentityError(str(exc)) from None
        updated = await self.db.fetchval(
            "UPDATE users SET role = $2 WHERE username = $1 RETURNING id", username, parsed.value)
        if updated is None:
            raise IdentityError(f"no such user {username!r}")

    async def set_disabled(self, username: str, disabled: bool) -> None:
        async with self.db.transaction() as conn:
            user_id = await conn.fetchval(
                "UPDATE users SET disabled = $2 WHERE username = $1 RETURNING id", username, disabled)
            if user_id is None:
                raise IdentityError(f"no such user {username!r}")
            if disabled:
                await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)

    # -- login ---------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str, now: datetime | None = None) -> LoginResult:
        """Check a password, counting failures and locking the account after too many."""
        now = now or datetime.now(UTC)
        row = await self.db.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash, failed_logins FROM users WHERE username = $1", username)
        if row is None:
            try:
                _hasher.verify(_DUMMY_HASH, password)
            except VerificationError:
                pass
            return LoginResult(None, "bad_credentials")
        if row["locked_until"] is not None and row["locked_until"] > now:
            return LoginResult(None, "locked")
        try:
            _hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            failures = row["failed_logins"] + 1
            locked_until = None
            if failures >= self.lockout.max_failures:
                locked_until = now + timedelta(seconds=self.lockout.lock_seconds)
                failures = 0
            await self.db.execute(
                "UPDATE users SET failed_logins = $2, locked_until = $3 WHERE id = $1",
                row["id"], failures, locked_until)
            return LoginResult(None, "locked" if locked_until else "bad_credentials")
        if row["disabled"]:
            return LoginResult(None, "disabled")
        await self.db.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1", row["id"])
        return LoginResult(User.from_row(row))

    # -- sessions ------------------------------------------------------------------------
    async def create_session(self, user: User, source: str = "") -> tuple[str, str]:
        """A new browser session: returns (cookie value, CSRF token)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        await self.db.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, source) VALUES ($1, $2, $3, $4)",
            _digest(token), user.id, csrf, source)
        return token, csrf

    async def resolve_session(self, token: str, idle_seconds: int, absolute_seconds: int) -> tuple[User, str] | None:
        """The session's user and CSRF token, refreshing its idle timer; None when expired/unknown."""
        row = await self.db.fetchrow(
            f"""UPDATE sessions s SET last_seen_at = now() FROM users u
                WHERE s.token_hash = $1 AND u.id = s.user_id AND NOT u.disabled
                  AND s.last_seen_at > now() - make_interval(secs => $2)
                  AND s.created_at > now() - make_interval(secs => $3)
                RETURNING {', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))}, s.csrf_token""",
            _digest(token), float(idle_seconds), float(absolute_seconds))
        if row is None:
            await self.db.execute("DELETE FROM sessions WHERE token_hash = $1", _digest(token))
            return None
        return User.from_row(row), row["csrf_token"]

    async def end_session(self, token: str) -> None:
        await self.db.execute("DELETE FROM sessions WHERE token_hash = $1", _digest(token))

    # -- API tokens ----------------------------------------------------------------------
    async def create_api_token(self, username: str, name: str) -> str:
        """A new API token for `username`; the plain value is returned once and never stored."""
        user = await self.get_user(username)
        if user is None:
            raise IdentityError(f"no such user {username!r}")
        token = "cc_" + secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO api_tokens (user_id, name, prefix, token_hash) VALUES ($1, $2, $3, $4)",
            user.id, name, token[:10], _digest(token))
        return token

    async def resolve_api_token(self, token: str) -> User | None:
        row = await self.db.fetchrow(
            f"""UPDATE api_tokens t SET last_used_at = now() FROM users u
                WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.id = t.user_id AND NOT u.disabled
                RETURNING {', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))}""",
            _digest(token))
        return User.from_row(row) if row else None

    async def revoke_api_token(self, token_id: int) -> bool:
        status = await self.db.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id)
        return status.endswith("1")
