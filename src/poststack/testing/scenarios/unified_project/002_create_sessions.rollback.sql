DROP FUNCTION expire_sessions();
DROP TABLE sessions;
