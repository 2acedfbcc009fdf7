-- Late views (issue 16): views applied after the snapshotter wrote their minute reach history through a
-- per-partition late stream in Redis. late_through is the newest entry of that stream already added to
-- video_stats and video_totals, so adding is idempotent like the minute writes. Instant on an existing table (a
-- constant default).
ALTER TABLE ingest_checkpoints ADD COLUMN late_through text NOT NULL DEFAULT '0-0';
