"""The shop: catalog, customers, orders, coupons, checkout, returns and transcripts (SQL)."""
