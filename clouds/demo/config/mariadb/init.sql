-- The services' databases and users; run by MariaDB at every start (idempotent).
-- A template (services/mariadb.yaml): the passwords are the cloud's secrets, rendered
-- by the controller in memory and put into the container readable by mysql only.
CREATE DATABASE IF NOT EXISTS keystone;
CREATE USER IF NOT EXISTS 'keystone'@'%' IDENTIFIED BY '${secret:keystone-db}';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%';
CREATE DATABASE IF NOT EXISTS placement;
CREATE USER IF NOT EXISTS 'placement'@'%' IDENTIFIED BY '${secret:placement-db}';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'%';
FLUSH PRIVILEGES;
