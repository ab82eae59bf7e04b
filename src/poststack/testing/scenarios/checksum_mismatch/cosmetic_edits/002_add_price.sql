-- Description: a price per product
-- Reviewed: prices are in the shop's currency.
ALTER TABLE products
    ADD COLUMN price numeric(10, 2) NOT NULL DEFAULT 0;
