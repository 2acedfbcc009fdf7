-- Retires the oldest live slice of one sliding window of a partition, exactly once.
-- The cursor (newest slice already subtracted) and the subtraction move together in one script, and the
-- apply script never adds to a slice at or behind the cursor, so every window equals the sum of its live slices.
--
-- KEYS: 1 cursors, 2 window, 3 slice index, 4 bucket of the slice in ARGV[3] (any key of the partition if none)
-- ARGV: 1 window name, 2 target (retire every slice <= target), 3 expected slice ('' if unknown),
--       4 what to do with the bucket afterwards: 'del', or a TTL in seconds ('0': keep)
--       5 '1' to drop the slice from the index (the last window that uses it)
-- Returns {0, ''} when the window is retired up to the target, {1, slice} when the caller must call again with
-- that slice's bucket, {2, slice} after subtracting one slice.
local name, target = ARGV[1], tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], name) or '-1')
if cur >= target then return {0, ''} end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. cur, target, 'LIMIT', 0, 1)
if #nxt == 0 then
  redis.call('HSET', KEYS[1], name, target)
  return {0, ''}
end
if nxt[1] ~= ARGV[3] then return {1, nxt[1]} end

local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
for j = 1, #members, 2 do
  local left = tonumber(redis.call('ZINCRBY', KEYS[2], '-' .. members[j + 1], members[j]))
  if left <= 0 then redis.call('ZREM', KEYS[2], members[j]) end
end
redis.call('HSET', KEYS[1], name, nxt[1])
if ARGV[4] == 'del' then
  redis.call('DEL', KEYS[4])
elseif tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
if ARGV[5] == '1' then redis.call('ZREM', KEYS[3], nxt[1]) end
return {2, nxt[1]}
