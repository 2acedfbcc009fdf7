#!lua flags=no-writes
-- The first leaders of a window on one partition and the window's threshold, read together: every video of
-- the partition counted at or above the threshold is a leader (leaders.lua). The ranking reads use a MULTI for
-- this (a script passes every member through Lua, several times the Redis CPU); this script is for while the
-- partition's slot moves between cluster nodes, when a transaction is aborted by the redirection of its
-- commands but a script, a single command, follows the slot (ASK, TRYAGAIN) like any other.
--
-- KEYS: 1 leader set, 2 leader state; ARGV: 1 how many leaders (highest first), 2 window name
-- Returns {threshold, {video, count, video, count, ...}}.
local complete = redis.call('HGET', KEYS[2], ARGV[2] .. ':complete') or '1'
return {complete, redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'REV', 'WITHSCORES')}
