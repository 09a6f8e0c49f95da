#!/bin/sh
# Nova's cells, first deploy only (a bootstrap job of nova-conductor; idempotent): cell0
# for servers that never scheduled, cell1 on [database] and the message bus. Then the
# schema of every cell. (`create_cell` fails on a second run: it is asked first.)
set -eu
nova-manage cell_v2 map_cell0
if ! nova-manage cell_v2 list_cells | grep -qw cell1; then
  nova-manage cell_v2 create_cell --name cell1 --verbose
fi
exec nova-manage db sync
