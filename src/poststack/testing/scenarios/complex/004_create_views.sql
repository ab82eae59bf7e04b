-- Description: open orders, and a materialized summary per status
CREATE VIEW shop.open_orders AS
    SELECT o.id, c.email, o.amount, o.status
    FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id
    WHERE o.status IN ('new', 'paid');

CREATE MATERIALIZED VIEW shop.order_totals AS
    SELECT status, count(*) AS orders, sum(amount) AS amount
    FROM shop.orders GROUP BY status
WITH DATA;
CREATE UNIQUE INDEX order_totals_status_key ON shop.order_totals (status);
