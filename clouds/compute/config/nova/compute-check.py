"""Deep check of a nova-compute (services/nova-compute.yaml `checks:`): this host's
nova-compute service record carries the version of the code in this container and was
updated (or made) within the last minute. A process that runs proves little: a compute whose code
is older than its record (a rollback) restarts in a loop with ServiceTooOld, and one that
cannot reach the conductor never reports. Exit 0 when it serves, 1 (with why) otherwise."""
import datetime
import sys

from nova import config, context, objects
from nova.objects import service

config.parse_args([sys.argv[0], "--config-file", "/etc/nova/nova.conf"], init_rpc=False)
objects.register_all()
host = config.CONF.host
record = objects.Service.get_by_compute_host(context.get_admin_context(), host)
# a record made by this start has no report yet (the first comes after report_interval)
seen = record.updated_at or record.created_at
age = (datetime.datetime.now(datetime.timezone.utc) - seen).total_seconds() if seen else None
if record.version != service.SERVICE_VERSION:
    sys.exit(f"nova-compute on {host}: record at version {record.version}, this code is {service.SERVICE_VERSION}")
if age is None or age > 60:
    sys.exit(f"nova-compute on {host}: no report for {age if age is None else round(age)} s")
print(f"nova-compute on {host}: version {record.version}, reported {age:.0f}s ago")
