-- Video ids compare byte by byte, as in Redis (issue 4). Under the database's default collation (often a
-- language locale such as en_US.UTF-8), every comparison of a video id went through the C library's locale
-- rules: slower in the primary keys that each snapshot row and total is inserted into, and a different order
-- for ties than the rankings' (views descending, then videoId descending by bytes), so an analyst's
-- `ORDER BY views DESC, video_id DESC` could disagree with the API. The "C" collation is byte order.
-- Cost on an existing history: no row is rewritten, but every index on video_id (the primary keys of every
-- daily partition and of video_totals) is rebuilt under an exclusive lock, so the snapshotter waits for it (it
-- catches up by itself afterwards) and analysts' queries on these tables block meanwhile. Views an analyst
-- created on these columns must be dropped first and created again after.
ALTER TABLE video_stats ALTER COLUMN video_id TYPE text COLLATE "C";
ALTER TABLE video_totals ALTER COLUMN video_id TYPE text COLLATE "C";
ALTER TABLE global_topk_snapshots ALTER COLUMN video_id TYPE text COLLATE "C";
