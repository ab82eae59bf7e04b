-- Description: a URL slug per post, unique per author
ALTER TABLE app.posts ADD COLUMN slug text;
UPDATE app.posts SET slug = 'post-' || id;
ALTER TABLE app.posts ALTER COLUMN slug SET NOT NULL;
CREATE UNIQUE INDEX posts_user_slug_key ON app.posts (user_id, slug);
