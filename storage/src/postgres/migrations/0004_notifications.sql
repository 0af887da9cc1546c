-- Version 4: notification channels and the outbox (events, then one delivery per
-- event and channel).
-- The delivery actor of every node reads these tables from storage at each pass and
-- claims a delivery by compare-and-set, so no node keeps them in memory and they are
-- not announced on the change feed.

CREATE TABLE notification_channels (
    key bytea PRIMARY KEY,
    channel_id text NOT NULL,
    value bytea NOT NULL
);

CREATE TABLE notification_events (
    key bytea PRIMARY KEY,
    event_id text NOT NULL,
    kind text,
    value bytea NOT NULL
);

CREATE TABLE notification_deliveries (
    key bytea PRIMARY KEY,
    delivery_id text NOT NULL,
    channel_id text,
    status text,
    next_attempt_ms bigint,
    value bytea NOT NULL
);
CREATE INDEX notification_deliveries_channel_id ON notification_deliveries (channel_id);
CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_attempt_ms);
