-- The services' databases and users; run by MariaDB at every start (idempotent).
-- Demo passwords: fixed and public on purpose. A real cloud keeps them out of git
-- (or encrypted in it) and mounts them from a secret store.
CREATE DATABASE IF NOT EXISTS keystone;
CREATE USER IF NOT EXISTS 'keystone'@'%' IDENTIFIED BY 'demo-keystone-db';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%';
CREATE DATABASE IF NOT EXISTS placement;
CREATE USER IF NOT EXISTS 'placement'@'%' IDENTIFIED BY 'demo-placement-db';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'%';
FLUSH PRIVILEGES;
