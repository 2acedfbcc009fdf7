-- Appends one batch to the log: one entry per partition it touches, whose one field holds the partition's
-- `<video id> <count>` lines (see core/src/lines.rs). On one node the script stores the batch whole or not at
-- all.
-- A script rather than MULTI/EXEC because the client drops a timed-out single command instead of sending it
-- after a reconnect; a timed-out transaction could otherwise be written later, after the caller answered 503.
--
-- A script that reaches Redis late (Redis was frozen, or slow, while the caller's command timed out and it
-- answered 503) must write nothing: ARGV[1] is the caller's deadline on Redis's clock, checked first.
--
-- With an `Idempotency-Key` (ARGV[4] > 0), each partition's entry is written together with the key's record
-- on that partition (the SHA-1 of its lines, kept ARGV[4] ms): a partition that already holds the record is
-- skipped, so a batch sent again is stored once, and a record per partition keeps every step on one
-- partition's keys. The same key with other lines is refused before anything is written.
--
-- KEYS: the partitions' logs, then (with a key) the key's record on each of them, in the same order.
-- ARGV: 1 deadline (ms, Redis clock), 2 entry id ('*' or '<ms>-*'), 3 the entries' field name, 4 the key's
-- retention in ms (0: no key), then per partition its lines.
-- Returns the entries written (0: every partition already had this batch), -1 past the deadline, or -2 when
-- the key was used for another batch.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then
  return -1
end
local n = #ARGV - 4
local keyed = tonumber(ARGV[4]) > 0
local fingerprints, stored = {}, {}
if keyed then
  for k = 1, n do
    fingerprints[k] = redis.sha1hex(ARGV[4 + k])
    local seen = redis.call('GET', KEYS[n + k])
    if seen then
      if seen ~= fingerprints[k] then
        return -2
      end
      stored[k] = true
    end
  end
end
local written = 0
for k = 1, n do
  if not stored[k] then
    redis.call('XADD', KEYS[k], ARGV[2], ARGV[3], ARGV[4 + k])
    if keyed then
      redis.call('SET', KEYS[n + k], fingerprints[k], 'PX', ARGV[4])
    end
    written = written + 1
  end
end
return written
