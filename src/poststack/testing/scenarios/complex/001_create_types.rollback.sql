DROP TYPE shop.order_status;
DROP SCHEMA shop;
