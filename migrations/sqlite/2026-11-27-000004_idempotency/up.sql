-- Proxy requests sent with an Idempotency-Key: a retry with the same key (and body) gets the
-- first answer again instead of being forwarded and billed twice.
CREATE TABLE idempotent_requests (
    api_key_id TEXT NOT NULL REFERENCES api_keys (id),
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed')),
    response_status INTEGER,
    response_content_type TEXT,
    response_body TEXT,
    created_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    PRIMARY KEY (api_key_id, idempotency_key)
);
