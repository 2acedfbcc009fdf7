-- Retires the oldest live slice of one sliding window of a partition, exactly once.
-- The cursor (newest slice already subtracted) and the subtraction move together in one script, and the
-- apply script never adds to a slice at or behind the cursor, so every window equals the sum of its live slices.
--
-- KEYS: 1 cursors, 2 leader state, 3 window hash, 4 leader set, 5 slice index,
--       6 open bucket of the slice in ARGV[3] (any key of the partition if none), 7 its sealed bucket (or 6),
--       8 the late stream, 9 the minute's frozen copy (or 6)
-- ARGV: 1 window name, 2 target (retire every slice <= target), 3 expected slice ('' if unknown),
--       4 what to do with the bucket afterwards: 'del', or a TTL in seconds ('0': keep)
--       5 '1' to drop the slice from the index (the last window that uses it), 6 '1' when KEYS[7] is a sealed
--       bucket, 7-9 leader caps (min, keep, max), 10 '1' to hand a minute the snapshotter has not closed yet
--       to the late stream before its bucket goes (the day window: history gets its views from there)
-- Returns {0, ''} when the window is retired up to the target, {1, slice} when the caller must call again with
-- that slice's buckets, {2, slice} after subtracting one slice, {3, ''} when a refill of the leader set must
-- run first (fill.lua), then this call again.
local name, target = ARGV[1], tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], name) or '-1')
if cur >= target then return {0, ''} end
local L = leaders_open(KEYS[2], name, KEYS[3], KEYS[4],
  {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])})
if L.fill then return {3, ''} end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. cur, target, 'LIMIT', 0, 1)
if #nxt == 0 then
  redis.call('HSET', KEYS[1], name, target)
  return {0, ''}
end
if nxt[1] ~= ARGV[3] then return {1, nxt[1]} end

local sealed = nil
if ARGV[6] == '1' then sealed = KEYS[7] end
local counts = bucket_counts(KEYS[6], sealed)
-- Subtracting may leave too few leaders above the threshold for an exact top K: refill first.
local slice = leaders_slice(L, counts)
if not leaders_hold_after(L, slice) then
  leaders_start_fill(L)
  return {3, ''}
end
leaders_subtract_all(L, slice)
leaders_trim(L)
redis.call('HSET', KEYS[1], name, nxt[1])
local keep_index = false
if ARGV[10] == '1' then
  -- No snapshot cursor: no snapshotter has closed a minute of this partition (none runs, or Redis was just
  -- rebuilt without checkpoints): nothing is handed over, as nothing would take it.
  local snapshot = redis.call('HGET', KEYS[1], 'snapshot')
  if snapshot and tonumber(nxt[1]) > tonumber(snapshot) then
    local lines = redis.call('GET', KEYS[6]) or ''
    if sealed then lines = (redis.call('GET', sealed) or '') .. lines end
    if lines ~= '' then
      redis.call('XADD', KEYS[8], '*', 'minute', nxt[1], '#lines', lines)
    end
  elseif snapshot and redis.call('EXISTS', KEYS[9]) == 1 then
    -- Closed and frozen, not yet written: the minute job must find it in the index again.
    keep_index = true
  end
end
if ARGV[4] == 'del' then
  redis.call('DEL', KEYS[6], KEYS[7])
elseif tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[6], ARGV[4])
  redis.call('EXPIRE', KEYS[7], ARGV[4])
end
if ARGV[5] == '1' and not keep_index then redis.call('ZREM', KEYS[5], nxt[1]) end
return {2, nxt[1]}
