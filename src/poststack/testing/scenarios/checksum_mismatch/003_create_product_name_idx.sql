CREATE INDEX products_name_idx ON products (name);
