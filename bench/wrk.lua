-- Chat completions spread over the keys in $KEYS_FILE (one per line), one key per request.
local keys = {}
local file = os.getenv("KEYS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do keys[#keys + 1] = line end
end
if #keys == 0 then keys[1] = "none" end
local body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello to the team."}],"max_completion_tokens":16}'
local i = math.random(1, #keys)
request = function()
  i = i % #keys + 1
  return wrk.format("POST", "/v1/chat/completions",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. keys[i] }, body)
end
