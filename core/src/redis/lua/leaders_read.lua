#!lua flags=no-writes
-- The first leaders of a window on one partition and the window's threshold, read together: every video of
-- the partition counted at or above the threshold is a leader (leaders.lua). One script because a trim or a
-- refill between two reads would pair the list with another moment's threshold.
--
-- KEYS: 1 leader set, 2 leader state; ARGV: 1 how many leaders (highest first), 2 window name
-- Returns {threshold, {video, count, video, count, ...}}.
local complete = redis.call('HGET', KEYS[2], ARGV[2] .. ':complete') or '1'
return {complete, redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'REV', 'WITHSCORES')}
