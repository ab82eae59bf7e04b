-- Description: customers and their orders
CREATE TABLE shop.customers (
    id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE
);
CREATE TABLE shop.orders (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES shop.customers (id),
    status      shop.order_status NOT NULL DEFAULT 'new',
    amount      numeric(12, 2) NOT NULL CHECK (amount >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_status_idx ON shop.orders (customer_id, status);
