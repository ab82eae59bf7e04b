-- Description: a price per product
ALTER TABLE products ADD COLUMN price numeric(12, 4) NOT NULL DEFAULT 0;
