#!/usr/bin/env bash
# Writes registry-v3.db: a registry database with a record of every table, as a release of the
# registry writes it. RecordFixtureTests opens it to prove that later releases still load it.
# (registry-v1.db was written by this script's first version, before the CA and intention tables;
# registry-v2.db by its second, before the ACL tables.)
#   usage: make-registry-db.sh path/to/trellis [output.db]
set -euo pipefail
BIN=${1:?usage: make-registry-db.sh path/to/trellis [output.db]}
OUT=${2:-$(dirname "$0")/registry-v3.db}
TOKEN=fixture-management-token
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
API=http://127.0.0.1:18599
cat > "$WORK/config.yaml" <<YAML
services:
  - name: cache
    id: cache-1
    port: 6379
YAML
"$BIN" registry --config "$WORK/config.yaml" --http-addr 127.0.0.1:18599 --data-dir "$WORK/data" --node fixture --node-id 5c9f1f8e-7d2b-4d8a-9a51-0f6f3d1e2a11 \
  --acl-enabled --acl-initial-management-token "$TOKEN" --log-level error > "$WORK/registry.out" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "$API/v1/status/leader" >/dev/null && break; sleep 0.1; done
put() { curl -sf -X PUT -H "X-Consul-Token: $TOKEN" "$API$1" ${2:+-d "$2"} > /dev/null; }

# Catalog: an agent service with every field kept, a proxy, checks of each kind; a second node.
put /v1/agent/service/register '{"Name":"web","ID":"web-1","Tags":["v1","primary"],"Address":"10.0.0.5","Port":8080,
  "Meta":{"version":"1.2.3"},"Weights":{"Passing":3,"Warning":1},"EnableTagOverride":true,
  "TaggedAddresses":{"lan":{"Address":"10.0.0.5","Port":8080},"wan":{"Address":"198.51.100.5","Port":80}},
  "Locality":{"Region":"eu-west","Zone":"a"},
  "Checks":[{"CheckID":"web-ttl","Name":"web ttl","TTL":"30s","Status":"passing","Notes":"heartbeat"},
            {"CheckID":"web-http","Name":"web http","HTTP":"http://127.0.0.1:1/health","Method":"HEAD",
             "Header":{"X-Probe":["1"]},"Interval":"10s","Timeout":"2s","SuccessBeforePassing":2,
             "FailuresBeforeCritical":3,"DeregisterCriticalServiceAfter":"90m"}]}'
put /v1/agent/service/register '{"Kind":"connect-proxy","Name":"web-proxy","ID":"web-proxy-1","Port":21000,
  "Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web-1","LocalServicePort":8080}}'
put /v1/catalog/register '{"Node":"n2","Address":"10.0.0.2","ID":"0d1c6b1a-3f1e-4c55-8f0d-3a2b1c4d5e6f",
  "NodeMeta":{"rack":"r1"},"TaggedAddresses":{"lan":"10.0.0.2"},
  "Service":{"Service":"db","ID":"db-1","SocketPath":"/run/db.sock","Tags":["primary"]},
  "Checks":[{"CheckID":"n2-alive","Name":"node alive","Status":"warning","Output":"slow"}]}'
put /v1/coordinate/update '{"Node":"n2","Coord":{"Vec":[0.1,0,0,0,0,0,0,0],"Error":0.5,"Adjustment":0,"Height":0.0001}}'

# KV: text, binary, every Flags bit, a tombstone, a key locked by a session.
put '/v1/kv/app/config?flags=42' 'mode=blue'
printf '\x00\x01\xfe\xff' | curl -sf -X PUT -H "X-Consul-Token: $TOKEN" --data-binary @- "$API/v1/kv/app/binary" > /dev/null
put '/v1/kv/app/flags?flags=18446744073709551615' 'all bits'
put /v1/kv/app/gone 'deleted below'
curl -sf -X DELETE -H "X-Consul-Token: $TOKEN" "$API/v1/kv/app/gone" > /dev/null
SESSION=$(curl -sf -X PUT -H "X-Consul-Token: $TOKEN" "$API/v1/session/create" -d '{"Name":"leader","TTL":"3600s","LockDelay":"5s","Behavior":"delete",
  "NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"web-ttl"}]}' | sed 's/.*"ID":"\([^"]*\)".*/\1/')
put "/v1/kv/app/leader?acquire=$SESSION" 'me'

# Operator settings and a config entry.
put /v1/operator/autopilot/configuration '{"CleanupDeadServers":false,"MaxTrailingLogs":500}'
put /v1/config '{"Kind":"mesh","Name":"mesh","TransparentProxy":{"MeshDestinationsOnly":true}}'

# Connect: the CA made its root at start; an intention by name and one with an ID.
put '/v1/connect/intentions/exact?source=web&destination=db' '{"Action":"deny","Description":"fixture"}'
curl -sf -X POST -H "X-Consul-Token: $TOKEN" "$API/v1/connect/intentions" -d '{"SourceName":"*","DestinationName":"db","Action":"allow","Meta":{"team":"a"}}' > /dev/null

# ACL: the built-in records and the initial management token were made at start; a policy, a role,
# a token with every kind of link and identity, an auth method and its binding rule.
put /v1/acl/policy '{"Name":"fixture-kv","Description":"fixture","Rules":"key_prefix \"app/\" { policy = \"write\" }","Datacenters":["dc1"]}'
put /v1/acl/role '{"Name":"fixture-role","Policies":[{"Name":"fixture-kv"}],"ServiceIdentities":[{"ServiceName":"db"}]}'
put /v1/acl/token '{"AccessorID":"6a1f1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b","SecretID":"3f2e1d0c-9b8a-4776-8554-433221100fed",
  "Description":"fixture token","Policies":[{"Name":"fixture-kv"}],"Roles":[{"Name":"fixture-role"}],
  "ServiceIdentities":[{"ServiceName":"web","Datacenters":["dc1"]}],"NodeIdentities":[{"NodeName":"n2","Datacenter":"dc1"}],
  "TemplatedPolicies":[{"TemplateName":"builtin/service","TemplateVariables":{"Name":"cache"}}],"ExpirationTTL":"24h"}'
put /v1/acl/auth-method '{"Name":"fixture-jwt","Type":"jwt","Config":{"BoundIssuer":"fixture"}}'
put /v1/acl/binding-rule '{"AuthMethod":"fixture-jwt","BindType":"service","BindName":"web","Selector":"value.iss==\"fixture\""}'

kill -TERM "$PID"; wait "$PID" || true
sqlite3 "$WORK/data/registry.db" 'PRAGMA wal_checkpoint(TRUNCATE);' > /dev/null 2>&1 || true
cp "$WORK/data/registry.db" "$OUT"
echo "wrote $OUT (session $SESSION)"
