-- Once, on the primary (psql -h 10.10.0.10 -p 5000 -U postgres -f create-database.sql):
-- the application's role and database. The schema is created by the first node that starts
-- (migrations are applied under an advisory lock, so two nodes starting together are safe).
CREATE ROLE commandcenter LOGIN PASSWORD 'CHANGE-ME-app';
CREATE DATABASE commandcenter OWNER commandcenter ENCODING 'UTF8' TEMPLATE template0;
