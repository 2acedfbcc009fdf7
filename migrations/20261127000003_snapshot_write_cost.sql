-- Snapshot rate (issue 4). A btree on bucket_start cost about a quarter of each minute row's insert. With one
-- partition per day, a time range already skips whole days; within a day, rows arrive in time order, so a BRIN
-- index (a min and max per block range) skips the rest of the day for almost no upkeep.
DROP INDEX video_stats_bucket_start;
CREATE INDEX video_stats_bucket_start_brin ON video_stats USING brin (bucket_start);

-- Room left on each page lets a total's update stay on its page (a HOT update: no new index entry).
ALTER TABLE video_totals SET (fillfactor = 70);
