DROP INDEX accounts_email_key;
ALTER TABLE accounts DROP COLUMN email;
