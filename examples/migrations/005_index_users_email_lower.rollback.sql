-- poststack:no-transaction
DROP INDEX CONCURRENTLY users_email_lower_idx;
