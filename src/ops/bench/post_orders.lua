-- wrk script of `orderflow bench`: every request is POST /orders with an
-- order of one line, its SKU taking 50 values in turn so that inventory's
-- stock stage is spread over its partitions; at the end, one JSON line of
-- the run's figures, which the bench reads (wrk's own summary is for people).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local sent = 0

request = function()
  sent = sent + 1
  local body = string.format(
    '{"customer_id":"wrk","items":[{"sku":"SKU-%04d","quantity":1,"unit_price_cents":1299}]}',
    sent % 50 + 1)
  return wrk.format(nil, "/orders", nil, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
