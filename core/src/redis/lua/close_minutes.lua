-- Closes a partition's minutes for the snapshotter, atomically: every minute with a bucket in (after,
-- through] gets a frozen copy of its bucket as it is now (sealed blob and open lines, `<video> <count>` lines
-- both), and the partition's snapshot cursor moves to `through`. From then on the apply script sends every view
-- for those minutes to the late stream as well, so what the snapshotter writes for a minute (its frozen copy)
-- and what it adds later (the late stream) never hold the same view. A frozen copy is never replaced: a run
-- that failed before its commit is redone from the same copies.
--
-- KEYS: 1 cursors, 2 minute index, then per minute listed by the caller: its open bucket, its sealed bucket,
--       its frozen copy.
-- ARGV: 1 after (exclusive), 2 through, then the minutes listed, in the index's order.
-- Returns the number of minutes closed, or -1 when the index holds other minutes in the range than those
-- listed (a worker added one since): the caller lists again.
local listed = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], ARGV[2])
if #listed ~= #ARGV - 2 then return -1 end
for k = 1, #listed do
  if listed[k] ~= ARGV[2 + k] then return -1 end
end
for k = 1, #listed do
  local open, sealed, frozen = KEYS[3 * k], KEYS[3 * k + 1], KEYS[3 * k + 2]
  if redis.call('EXISTS', frozen) == 0 then
    redis.call('SET', frozen, (redis.call('GET', sealed) or '') .. (redis.call('GET', open) or ''))
  end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'snapshot') or '-1')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], 'snapshot', ARGV[2]) end
return #listed
