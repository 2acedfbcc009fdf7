-- Keeps source records that could not be read in the dead-letter stream, each once: the last offset
-- dead-lettered from each source partition is kept beside the stream (same slot), and a record at or below it
-- is dropped, in the same script. So a consumer that replays from an older committed offset after a crash, or
-- two that briefly own one source partition, keep each malformed record once, as the logs take each valid one
-- once. One call takes all of a batch's malformed records of one source partition.
--
-- KEYS: 1 the dead-letter stream, 2 the last offset dead-lettered per source partition (a hash).
-- ARGV: 1 the source partition (`topic/partition`), 2 how many dead letters the stream keeps (about), 3 '1'
--       when the caller will wait for replicas, then per record in offset order: its offset, the reason, the
--       value (cut by the caller).
-- Returns {how many were kept now (the last ones: the first ones were there already)}, followed when ARGV[3]
-- is '1' by this primary's replication ID, for the caller to wait for its replicas before it commits the
-- offsets (even when nothing was kept: the write that kept them may not be on a replica yet).
--
-- Offsets stay strings (as given) where they are stored: Lua's numbers would print large ones in exponent
-- notation.
local dead, offsets, source = KEYS[1], KEYS[2], ARGV[1]
local last_raw = redis.call('HGET', offsets, source)
local last = last_raw and tonumber(last_raw) or -1
local kept = 0
for i = 4, #ARGV - 2, 3 do
  local offset = tonumber(ARGV[i])
  if offset > last then
    redis.call('XADD', dead, 'MAXLEN', '~', ARGV[2], '*', 'source', source, 'offset', ARGV[i], 'reason',
      ARGV[i + 1], 'value', ARGV[i + 2])
    last, last_raw = offset, ARGV[i]
    kept = kept + 1
  end
end
if kept > 0 then
  redis.call('HSET', offsets, source, last_raw)
end
if ARGV[3] == '1' then
  return {kept, string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')}
end
return {kept}
