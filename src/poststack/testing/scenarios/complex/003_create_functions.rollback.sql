DROP FUNCTION shop.customer_total(integer);
DROP TRIGGER orders_touch_updated_at ON shop.orders;
DROP FUNCTION shop.touch_updated_at();
