-- Per-hour and per-day totals of video_stats, for the exact top K of any past range (issue 29, docs/history-range.md).
--
-- Each table holds, for every period it covers, every video's views in that period as video_stats holds them.
-- What it covers is in period_totals_progress: the hourly table every hour from the day roll-up's progress
-- (older hours are folded into days) up to done_through, the daily table every day before done_through. A
-- period is added once every partition's checkpoint has passed its end (one INSERT ... SELECT, the minute
-- job's last step); views written into a covered period afterwards (late views) are added to its row in the
-- same transaction as to video_stats. So the minute writes do not touch these tables: maintaining them per
-- minute made each minute row cost about seven times as much to write.
--
-- The ranking indexes give each period's videos in the rankings' order (views descending, then video id
-- descending, byte order), which the threshold algorithm reads from the top; the primary keys serve its
-- look-ups of one video's views over a run of periods.
--
-- Cost on an existing history: none here (the tables start empty); the minute job fills them from the oldest
-- history on, a day of it per transaction, spending at most a few seconds per run, and a range answers from
-- video_stats meanwhile.
CREATE TABLE video_stats_hourly (
    video_id   text COLLATE "C" NOT NULL,
    hour_start timestamptz      NOT NULL,
    views      bigint           NOT NULL CHECK (views >= 0),
    PRIMARY KEY (video_id, hour_start)
);
CREATE INDEX video_stats_hourly_ranking ON video_stats_hourly (hour_start, views DESC, video_id DESC);

CREATE TABLE video_stats_daily (
    video_id  text COLLATE "C" NOT NULL,
    day_start timestamptz      NOT NULL,
    views     bigint           NOT NULL CHECK (views >= 0),
    PRIMARY KEY (video_id, day_start)
);
CREATE INDEX video_stats_daily_ranking ON video_stats_daily (day_start, views DESC, video_id DESC);

-- How far each table covers history: the start of the first period not yet added (NULL: none yet).
CREATE TABLE period_totals_progress (
    level        text        PRIMARY KEY CHECK (level IN ('hour', 'day')),
    done_through timestamptz
);
INSERT INTO period_totals_progress (level, done_through) VALUES ('hour', NULL), ('day', NULL);
