-- wrk: POST the pre-built Loki push body in $PUSH_BODY (snappy protobuf) again and again.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-protobuf"
local file = io.open(os.getenv("PUSH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
