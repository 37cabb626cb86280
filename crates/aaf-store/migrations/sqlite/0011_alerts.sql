-- Alerts (docs/alerts.md): what the built-in alert rules raised, deduplicated, and the hits
-- the counted rules keep for their windows.

-- One alert of a rule about a subject (an agent, a client address, a budget window, ...).
-- `status` is `open`, `acknowledged` or `resolved`; at most one alert that is not resolved
-- per (organisation, rule, subject): later hits add to its `count` and move `last_seen_at`.
-- `detail` is the JSON of the hit that raised it; `kill_switch_id` the kill switch the rule
-- engaged, when it acted.
CREATE TABLE alerts (
    id               TEXT NOT NULL PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (id),
    rule             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    agent_id         TEXT,
    severity         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    summary          TEXT NOT NULL,
    detail           TEXT NOT NULL,
    count            INTEGER NOT NULL CHECK (count >= 1),
    first_seen_at    TEXT NOT NULL,
    last_seen_at     TEXT NOT NULL,
    acknowledged_at  TEXT,
    acknowledged_by  TEXT,
    resolved_at      TEXT,
    resolved_by      TEXT,
    kill_switch_id   TEXT,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (org_id, rule, subject)
    WHERE status <> 'resolved';
CREATE INDEX alerts_resolved ON alerts (org_id, rule, subject, resolved_at)
    WHERE status = 'resolved';
CREATE INDEX alerts_by_agent ON alerts (org_id, agent_id, id);

-- One hit of a counted rule (failed authentications), kept while it may still count:
-- a rule's window is read as the hits since its start, on every node.
CREATE TABLE alert_hits (
    org_id   TEXT NOT NULL REFERENCES orgs (id),
    rule     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    at       TEXT NOT NULL,
    id       TEXT NOT NULL,
    PRIMARY KEY (org_id, rule, subject, at, id)
);
CREATE INDEX alert_hits_age ON alert_hits (org_id, at);
