#!/bin/bash
# The container's HEALTHCHECK: GET /healthz on vitalwatch's own listener, exit 0 on 200.
#
# Plain bash (/dev/tcp) instead of curl: the runtime image stays free of an HTTP client
# and the libraries it pulls in (libcurl, libssh2, LDAP, ...), which are attack surface
# and CVE noise for a service that never makes HTTP calls itself. /healthz is liveness:
# it never depends on the broker, so a Kafka outage does not mark the container unhealthy.
#
# The port follows VITALWATCH_HTTP__LISTEN when it is set (as the service does), otherwise
# the image's 0.0.0.0:9464. Bounded: the connection and each read time out after 5 s.
set -euo pipefail

listen=${VITALWATCH_HTTP__LISTEN:-0.0.0.0:9464}
port=${listen##*:}

if ! exec 3<>"/dev/tcp/127.0.0.1/${port}"; then
  echo "healthz: nothing listens on 127.0.0.1:${port}" >&2
  exit 1
fi
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3

status=""
IFS=$' \t\r\n' read -r -t 5 _ status _ <&3 || true
body=""
while IFS= read -r -t 5 line <&3 || [[ -n "${line:-}" ]]; do
  body=${line%$'\r'}
  line=""
done
exec 3<&-

if [[ "$status" == 200 ]]; then
  echo "healthz: ${body:-ok}"
  exit 0
fi
echo "healthz: HTTP ${status:-no answer}: ${body}" >&2
exit 1
