-- Keeps a source record that could not be read in the dead-letter stream, once: the last offset dead-lettered
-- from each source partition is kept beside the stream (same slot), and a record at or below it is dropped,
-- in the same script. So a consumer that replays from an older committed offset after a crash, or two that
-- briefly own one source partition, keep each malformed record once, as the logs take each valid one once.
--
-- KEYS: 1 the dead-letter stream, 2 the last offset dead-lettered per source partition (a hash).
-- ARGV: 1 the source partition (`topic/partition`), 2 its offset, 3 the reason, 4 the value (cut by the
--       caller), 5 how many dead letters the stream keeps (about).
-- Returns 1 when kept, 0 when it was already there.
--
-- Offsets stay strings (as given) where they are stored: Lua's numbers would print large ones in exponent
-- notation.
local dead, offsets, source, offset = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local last = redis.call('HGET', offsets, source)
if last and tonumber(offset) <= tonumber(last) then
  return 0
end
redis.call('XADD', dead, 'MAXLEN', '~', ARGV[5], '*', 'source', source, 'offset', offset, 'reason', ARGV[3],
  'value', ARGV[4])
redis.call('HSET', offsets, source, offset)
return 1
