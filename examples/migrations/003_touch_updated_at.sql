-- Description: keep updated_at current with a plpgsql trigger
SET LOCAL lock_timeout = '5s';  -- fail fast rather than queue behind long transactions
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();  -- statement time is what clients expect
    RETURN NEW;
END;
$$;

CREATE TRIGGER accounts_touch_updated_at BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
