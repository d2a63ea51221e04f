"""Users, passwords (argon2), login throttling, browser sessions and API tokens.

Passwords are stored only as argon2id hashes; session cookies and API tokens only as SHA-256
digests, so a database dump does not hand out logins. Hashing runs in a bounded thread pool
(`core.passwords`), never on the event loop. Login attempts are slowed per (source, account) and
per source by `core.login_policy`; the counters live in `login_throttle` and are counted
atomically (an upsert holds the row lock until the decision is stored). An administrator can
still lock an account by hand (`lock`/`unlock`).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from argon2 import PasswordHasher

from config.roles import Role, parse_role
from core.db import Database
from core.login_policy import CounterState, Decision, LoginPolicy, decide, source_key
from core.passwords import BoundedHasher, HashingBusy, PasswordHashing

# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = PasswordHasher().hash("not-a-real-password-0")
# Longest account name kept in a throttle counter (usernames are at most 64 characters).
_MAX_ACCOUNT_KEY = 128
# Quiet throttle counters are deleted every this many login attempts.
_PRUNE_EVERY = 500


class _Refused(Exception):
    """Raised inside the counting transaction to roll it back."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision


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
    locked_until: datetime | None  # set by an administrator (`Identity.lock`)

    def is_locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or datetime.now(UTC))

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        locked_until = row["locked_until"]
        if locked_until is not None and locked_until.tzinfo is None:  # asyncpg's 'infinity' (datetime.max)
            locked_until = locked_until.replace(tzinfo=UTC)
        return cls(row["id"], row["username"], row["display_name"], Role(row["role"]),
                   row["disabled"], locked_until)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    # When user is None: "bad_credentials" | "locked" (by an administrator) | "disabled"
    # | "throttled" (too many attempts from this source; wait retry_after) | "busy" (hashing pool full)
    reason: str = ""
    retry_after: float = 0.0

    @property
    def ok(self) -> bool:
        return self.user is not None


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
                 login_policy: LoginPolicy | None = None, hashing: PasswordHashing | None = None) -> None:
        self.db = db
        self.policy = policy or PasswordPolicy()
        self.login_policy = login_policy or LoginPolicy()
        self.hashing: PasswordHashing = hashing or BoundedHasher()
        self._attempts = 0

    def close(self) -> None:
        """Stop the hashing threads."""
        self.hashing.close()

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
                username, display_name, parsed_role.value, await self.hashing.hash(password),
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
        """Change a password (clears the account's login throttling, ends the user's sessions).

        A lock an administrator set stays: unlocking is a separate, deliberate act."""
        self.policy.check(password, username)
        password_hash = await self.hashing.hash(password)
        async with self.db.transaction() as conn:
            user_id = await conn.fetchval(
                "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE username = $1 RETURNING id",
                username, password_hash,
            )
            if user_id is None:
                raise IdentityError(f"no such user {username!r}")
            await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
            await conn.execute(
                "DELETE FROM login_throttle WHERE scope = 'source_account' AND account = $1", username)

    async def lock(self, username: str, until: datetime | None = None) -> None:
        """Lock an account by hand (until `until`, or until unlocked); ends its sessions."""
        async with self.db.transaction() as conn:
            user_id = await conn.fetchval(
                "UPDATE users SET locked_until = coalesce($2, 'infinity'::timestamptz) WHERE username = $1 "
                "RETURNING id", username, until)
            if user_id is None:
                raise IdentityError(f"no such user {username!r}")
            await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)

    async def unlock(self, username: str) -> None:
        """Lift a lock set by hand, and the account's login throttling."""
        async with self.db.transaction() as conn:
            user_id = await conn.fetchval(
                "UPDATE users SET locked_until = NULL, failed_logins = 0 WHERE username = $1 RETURNING id", username)
            if user_id is None:
                raise IdentityError(f"no such user {username!r}")
            await conn.execute(
                "DELETE FROM login_throttle WHERE scope = 'source_account' AND account = $1", username)

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
    async def authenticate(self, username: str, password: str, source: str = "",
                           now: datetime | None = None) -> LoginResult:
        """Check a password, slowing down whoever guesses (see core.login_policy).

        The attempt is counted on the (source, account) and the source counter before the password
        is checked; a success clears the first and gives back its count on the second.
        """
        now = now or datetime.now(UTC)
        # PostgreSQL text cannot hold NUL: such a name is no user's, and is counted escaped.
        account, source = username[:_MAX_ACCOUNT_KEY].replace("\x00", "\\0"), source_key(source)
        self._attempts += 1
        if self._attempts % _PRUNE_EVERY == 0:
            await self.prune_login_throttle(now)
        if self.hashing.busy:
            return LoginResult(None, "busy", 1.0)
        decision = await self._count_attempt(source, account, now)
        if not decision.allowed:
            return LoginResult(None, "throttled", decision.retry_after)
        row = None if "\x00" in username else await self.db.fetchrow(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = $1", username)
        try:
            good = await self.hashing.verify(row["password_hash"] if row else _DUMMY_HASH, password)
        except HashingBusy:
            await self._give_back(source, account, clear_pair=False)
            return LoginResult(None, "busy", 1.0)
        if row is None or not good:
            return LoginResult(None, "bad_credentials")
        user = User.from_row(row)
        if user.is_locked(now):
            return LoginResult(None, "locked")
        if user.disabled:
            return LoginResult(None, "disabled")
        await self._give_back(source, account, clear_pair=True)
        return LoginResult(user)

    async def _count_attempt(self, source: str, account: str, now: datetime) -> Decision:
        """Count one attempt on both counters atomically; the pure policy decides."""
        try:
            return await self._count_attempt_in_transaction(source, account, now)
        except _Refused as refused:  # the transaction rolled back: a refused attempt does not count
            return refused.decision

    async def _count_attempt_in_transaction(self, source: str, account: str, now: datetime) -> Decision:
        async with self.db.transaction() as conn:
            states = []
            for scope, key_account in (("source_account", account), ("source", "")):
                # The upsert takes the row lock: parallel attempts on this counter wait here until
                # this transaction stores its decision, so each sees the count of the ones before.
                row = await conn.fetchrow(
                    """INSERT INTO login_throttle AS t (scope, source, account, attempts) VALUES ($1, $2, $3, 1)
                       ON CONFLICT (scope, source, account) DO UPDATE SET attempts = t.attempts + 1
                       RETURNING attempts - 1 AS before, last_at, not_before""",
                    scope, source, key_account)
                assert row is not None
                states.append(CounterState(row["before"], row["last_at"], row["not_before"]))
            decision = decide(self.login_policy, states[0], states[1], now)
            if not decision.allowed:
                raise _Refused(decision)
            for scope, key_account, state in (("source_account", account, decision.pair),
                                              ("source", "", decision.source)):
                await conn.execute(
                    "UPDATE login_throttle SET attempts = $4, last_at = $5, not_before = $6 "
                    "WHERE scope = $1 AND source = $2 AND account = $3",
                    scope, source, key_account, state.attempts, state.last_at, state.not_before)
        return decision

    async def _give_back(self, source: str, account: str, *, clear_pair: bool) -> None:
        """Undo an attempt's count: a success, or an attempt that could not be checked."""
        async with self.db.transaction() as conn:
            if clear_pair:
                await conn.execute("DELETE FROM login_throttle WHERE scope = 'source_account' AND source = $1 "
                                   "AND account = $2", source, account)
            else:
                await conn.execute("UPDATE login_throttle SET attempts = greatest(attempts - 1, 0) "
                                   "WHERE scope = 'source_account' AND source = $1 AND account = $2", source, account)
            await conn.execute("UPDATE login_throttle SET attempts = greatest(attempts - 1, 0) "
                               "WHERE scope = 'source' AND source = $1 AND account = ''", source)

    async def prune_login_throttle(self, now: datetime | None = None) -> int:
        """Delete counters quiet for longer than their rule forgets; returns how many."""
        now = now or datetime.now(UTC)
        status = await self.db.execute(
            "DELETE FROM login_throttle WHERE (scope = 'source_account' AND last_at < $1 - make_interval(secs => $2)) "
            "OR (scope = 'source' AND last_at < $1 - make_interval(secs => $3))",
            now, self.login_policy.per_source_account.forget_seconds, self.login_policy.per_source.forget_seconds)
        return int(status.split()[-1])

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
