DROP MATERIALIZED VIEW shop.order_totals;
DROP VIEW shop.open_orders;
