#!/bin/sh
# nova-compute with the fake driver. Its node's UUID is derived from its host's name
# (nova.conf's `host`, one per compute host): Nova insists that a compute which already
# has a service record finds its node identity (compute_id) at start, and a new
# container has none of its predecessor's files. The same host name gives the same UUID,
# so the node, its resource provider and its servers stay this compute's.
set -eu
host=$(sed -n 's/^host *= *//p' /etc/nova/nova.conf | head -n 1)
python3 -c 'import sys, uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "nova-compute:" + sys.argv[1]))' "$host" \
  > /var/lib/nova/compute_id
exec nova-compute --config-file /etc/nova/nova.conf
