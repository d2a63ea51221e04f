-- Issue 20, the SMS console: when each recipient was handed to Kannel and when its last delivery
-- report arrived (the console shows them), and the meeting notices a conference opted into.
ALTER TABLE sms_recipients ADD COLUMN submitted_at timestamptz, ADD COLUMN reported_at timestamptz;
CREATE INDEX sms_messages_kind ON sms_messages (kind, id);

CREATE TABLE sms_meeting_notices (
    conference_id  text PRIMARY KEY,
    rooms          text[] NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
