-- scripts/bench-cache's traffic: GET /api/home/{id}, 90% of requests for 100 hot user ids (1-100), 10%
-- spread over a million others. Each run draws its own sequence: with a fixed seed the warm-up would put
-- the "cold" ids in the cache before the measured run asks for them.
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  local id
  if math.random() < 0.9 then
    id = math.random(1, 100)
  else
    id = math.random(1000, 1000999)
  end
  return wrk.format("GET", "/api/home/" .. id)
end
