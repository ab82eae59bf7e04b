-- Description: the application's schema
CREATE SCHEMA app;
