DROP TABLE audit.logins;
DROP SCHEMA audit;
