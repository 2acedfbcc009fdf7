-- Every ranking snapshot taken, one row per window and time, empty ones included (issue 16). A snapshot of an
-- empty window has no rank rows in global_topk_snapshots, so history used to answer the older, non-empty
-- ranking before it; history now finds the latest snapshot here.
--
-- Cost on an existing history: one pass over global_topk_snapshots to fill the table (a row per snapshot, about
-- 1,150 a day), under no lock that blocks the snapshotter's inserts for longer than the pass.
CREATE TABLE ranking_snapshots (
    time_window   text        NOT NULL CHECK (time_window IN ('minute', 'hour', 'day', 'all')),
    snapshot_time timestamptz NOT NULL,
    -- Rank rows written for it: 0 for an empty window.
    videos        integer     NOT NULL CHECK (videos >= 0),
    window_start  timestamptz,
    window_end    timestamptz NOT NULL,
    PRIMARY KEY (time_window, snapshot_time)
);

INSERT INTO ranking_snapshots (time_window, snapshot_time, videos, window_start, window_end)
SELECT time_window, snapshot_time, count(*), min(window_start), max(window_end)
FROM global_topk_snapshots
GROUP BY time_window, snapshot_time;
