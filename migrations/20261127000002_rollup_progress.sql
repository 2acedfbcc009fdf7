-- How far each roll-up of video_stats has gone, so each hourly run starts where the last one stopped.
CREATE TABLE rollup_progress (
    level        text        PRIMARY KEY CHECK (level IN ('hour', 'day')),
    done_through timestamptz NOT NULL
);
