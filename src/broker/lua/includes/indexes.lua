-- Secondary index keys of a job besides its state index: executor and labels.
-- Label index names are length-prefixed so "a=b" + "c" and "a" + "b=c" differ.
local function index_keys(P, spec)
  local keys = {}
  if type(spec.e) == 'string' then keys[#keys + 1] = P .. ':idx:ex:' .. spec.e end
  if type(spec.l) == 'table' then
    for k, v in pairs(spec.l) do
      keys[#keys + 1] = P .. ':idx:lb:' .. #k .. ':' .. k .. '=' .. v
    end
  end
  return keys
end
