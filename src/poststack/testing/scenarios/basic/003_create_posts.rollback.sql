DROP TABLE app.posts;
