-- Login throttling (core/login_policy.py): one counter per (source address, account) and one per
-- source address, instead of locking an account for everyone. `users.failed_logins` is no longer
-- used; `users.locked_until` now only holds a lock an administrator set by hand.

CREATE TABLE login_throttle (
    scope       text        NOT NULL CHECK (scope IN ('source_account', 'source')),
    source      text        NOT NULL,
    account     text        NOT NULL DEFAULT '',   -- '' for the per-source counter
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_at     timestamptz,
    not_before  timestamptz,
    PRIMARY KEY (scope, source, account)
);
CREATE INDEX login_throttle_account ON login_throttle(account) WHERE scope = 'source_account';
CREATE INDEX login_throttle_last_at ON login_throttle(last_at);

-- Automatic lockouts of the old scheme end now; hand-set locks did not exist before.
UPDATE users SET failed_logins = 0, locked_until = NULL;
