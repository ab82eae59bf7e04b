DROP INDEX app.posts_user_slug_key;
ALTER TABLE app.posts DROP COLUMN slug;
