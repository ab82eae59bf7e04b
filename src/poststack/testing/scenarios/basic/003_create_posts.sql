-- Description: posts written by users
CREATE TABLE app.posts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body         text NOT NULL DEFAULT '',
    published_at timestamptz
);
CREATE INDEX posts_user_id_idx ON app.posts (user_id);
CREATE INDEX posts_published_idx ON app.posts (published_at) WHERE published_at IS NOT NULL;
