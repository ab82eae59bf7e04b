DROP TRIGGER users_touch_updated_at ON users;
DROP TRIGGER accounts_touch_updated_at ON accounts;
DROP FUNCTION touch_updated_at();
