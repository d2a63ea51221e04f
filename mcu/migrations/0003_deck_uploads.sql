-- Slide-deck uploads in transit from a `--role web` node to the node that hosts the conference
-- (web_console/deck_console.py): the web node checks the upload and writes it here, the node RPC
-- names the row, the hosting node takes it (reads and deletes it in one statement) and renders it.
-- A row is never kept: the web node deletes it too once the call ended, whatever its outcome.

CREATE TABLE deck_uploads (
    id            bigserial   PRIMARY KEY,
    conference_id text        NOT NULL,
    name          text        NOT NULL DEFAULT '',
    uploaded_by   text        NOT NULL,
    data          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
