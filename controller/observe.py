"""Observe: what runs, from the engines' own answers (containers by label), never from a
local cache that could lie. A host that does not answer is reported, not fatal.

Hosts of one cloud may share an engine (several hosts on one machine): a replica is
its host's only, by its `tidegate.host` label. A container without that label (made
by an older tidegate) is seen from every host of its engine, as before."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .desired import (LABEL_CLOUD, LABEL_COMMIT, LABEL_HASH, LABEL_HOST, LABEL_MANAGED, LABEL_PRE_STOP,
                      LABEL_RELEASE, LABEL_REPLICA, LABEL_ROLE, LABEL_SERVICE, Container, Observed)
from .engines.base import Engine, EngineError


def observe(engines: dict[str, Engine], cloud: str) -> tuple[Observed, dict[str, str]]:
    """(observed state, {host: error}) for every host, queried in parallel."""
    selector = {LABEL_MANAGED: "tidegate", LABEL_CLOUD: cloud, LABEL_ROLE: "replica"}

    def one(item):
        host, engine = item
        try:
            return host, engine.list_containers(selector), None
        except EngineError as err:
            return host, [], str(err)

    containers, errors = [], {}
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(engines)))) as pool:
        for host, infos, error in pool.map(one, engines.items()):
            if error is not None:
                errors[host] = error
                continue
            for info in infos:
                labels = info.labels
                if labels.get(LABEL_HOST, host) != host:
                    continue        # another host's replica on a shared engine
                try:
                    replica = int(labels.get(LABEL_REPLICA, ""))
                except ValueError:
                    continue        # labelled by hand, not by us: leave it alone
                service = labels.get(LABEL_SERVICE, "")
                joined = any(service in aliases for _address, aliases in info.networks.values())
                containers.append(Container(host, info.id, info.name, service,
                                            replica, labels.get(LABEL_HASH, ""),
                                            labels.get(LABEL_RELEASE, ""), info.state,
                                            labels.get(LABEL_COMMIT, ""), joined,
                                            LABEL_PRE_STOP in labels))
    return Observed(tuple(sorted(containers, key=lambda c: (c.service, c.replica, c.name))),
                    frozenset(errors)), errors
