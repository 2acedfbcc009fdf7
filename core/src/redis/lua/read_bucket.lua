-- Reads one slice's counts, its open string and its sealed blob together: seal.lua could otherwise run between
-- two separate reads and move the open lines into the blob, so the minute would be read twice or not at all.
--
-- KEYS: 1 the open string, 2 the sealed blob (or the open string again when the slice is never sealed)
-- ARGV: 1 '1' when KEYS[2] is a sealed blob
-- Returns a flat list video, views, video, views, ...
local sealed = nil
if ARGV[1] == '1' then sealed = KEYS[2] end
local out = {}
for video, n in pairs(bucket_counts(KEYS[1], sealed)) do
  out[#out + 1] = video
  out[#out + 1] = int(n)
end
return out
