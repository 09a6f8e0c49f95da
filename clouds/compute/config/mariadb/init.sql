-- The services' databases and users; run by MariaDB at every start (idempotent).
-- A template (services/mariadb.yaml): the passwords are the cloud's secrets, rendered
-- by the controller in memory and put into the container readable by mysql only.
-- Nova has three databases: the API database, cell0 (servers that failed to schedule)
-- and cell1 (everything else); one user for the three.
CREATE DATABASE IF NOT EXISTS keystone;
CREATE USER IF NOT EXISTS 'keystone'@'%' IDENTIFIED BY '${secret:keystone-db}';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%';
CREATE DATABASE IF NOT EXISTS placement;
CREATE USER IF NOT EXISTS 'placement'@'%' IDENTIFIED BY '${secret:placement-db}';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'%';
CREATE DATABASE IF NOT EXISTS glance;
CREATE USER IF NOT EXISTS 'glance'@'%' IDENTIFIED BY '${secret:glance-db}';
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'%';
CREATE DATABASE IF NOT EXISTS neutron;
CREATE USER IF NOT EXISTS 'neutron'@'%' IDENTIFIED BY '${secret:neutron-db}';
GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'%';
CREATE DATABASE IF NOT EXISTS nova_api;
CREATE DATABASE IF NOT EXISTS nova;
CREATE DATABASE IF NOT EXISTS nova_cell0;
CREATE USER IF NOT EXISTS 'nova'@'%' IDENTIFIED BY '${secret:nova-db}';
GRANT ALL PRIVILEGES ON nova_api.* TO 'nova'@'%';
GRANT ALL PRIVILEGES ON nova.* TO 'nova'@'%';
GRANT ALL PRIVILEGES ON nova_cell0.* TO 'nova'@'%';
FLUSH PRIVILEGES;
