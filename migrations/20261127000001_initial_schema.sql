-- History and recovery (see DESIGN.md, "Postgres").

-- Views per video per closed minute. Partitioned by time so retention drops whole partitions; rows outside any
-- dated partition land in the default one.
CREATE TABLE video_stats (
    video_id     text        NOT NULL,
    bucket_start timestamptz NOT NULL,
    views        bigint      NOT NULL CHECK (views > 0),
    PRIMARY KEY (video_id, bucket_start)
) PARTITION BY RANGE (bucket_start);
CREATE TABLE video_stats_default PARTITION OF video_stats DEFAULT;
-- Sliding-window sums scan a time range across all videos.
CREATE INDEX video_stats_bucket_start ON video_stats (bucket_start);

-- All-time counts per video.
CREATE TABLE video_totals (
    video_id     text        PRIMARY KEY,
    total_views  bigint      NOT NULL CHECK (total_views >= 0),
    last_updated timestamptz NOT NULL DEFAULT now()
);

-- The ranking of each window every few minutes. `window` is a reserved word, hence time_window.
CREATE TABLE global_topk_snapshots (
    time_window   text        NOT NULL CHECK (time_window IN ('minute', 'hour', 'day', 'all')),
    snapshot_time timestamptz NOT NULL,
    rank          integer     NOT NULL CHECK (rank >= 1),
    video_id      text        NOT NULL,
    views         bigint      NOT NULL,
    window_start  timestamptz,
    window_end    timestamptz NOT NULL,
    PRIMARY KEY (time_window, snapshot_time, rank)
);

-- What the snapshots cover per partition, so a rebuild knows where the log must replay from.
CREATE TABLE ingest_checkpoints (
    partition      integer     PRIMARY KEY,
    last_entry_id  text        NOT NULL,
    minute_through timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
