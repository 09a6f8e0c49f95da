#!/bin/sh
# MariaDB for the compute cloud: initialise the data volume on first start, then run the
# server in the foreground (PID 1; SIGTERM shuts it down cleanly). init.sql runs at every
# start and is idempotent: the databases and users of the services exist.
set -eu
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld /var/lib/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
  echo "start.sh: initialising /var/lib/mysql"
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=socket >/dev/null
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --skip-name-resolve \
  --init-file=/etc/mysql/tidegate/init.sql --max-connections=500 --innodb-buffer-pool-size=64M
